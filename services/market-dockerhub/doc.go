// Package marketdockerhub is Slipway's marketplace of container images,
// OpenNebula's `onemarket` for Docker Hub and for any OCI registry.
//
// A marketplace lists apps, one per repository: Docker Hub's official
// images through Hub's API (the default marketplace "DockerHub", ID 0), or
// a registry's repositories and tags through /v2/_catalog and
// /v2/<repo>/tags/list. The lists are kept in a JetStream KV bucket and
// refreshed on a schedule, unless monitoring is switched off for that
// marketplace.
//
// The service consumes its commands (slipway.cmd.market-dockerhub.*):
// marketplace management, refresh, app-import (which has the catalog
// create an image from a docker:// URL, waits for its ID, and sends the
// launcher a VM template whose disk is that image), and
// resolve, the catalog's docker-import step that pins a docker:// URL to a
// manifest digest. It answers queries on slipway.api.market-dockerhub.*.
package marketdockerhub
