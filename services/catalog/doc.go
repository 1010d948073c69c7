// Package catalog is Slipway's image registry, with OpenNebula `oneimage`
// semantics: small integer image IDs allocated from 0 and never reused,
// datastores, image types, and a strict life cycle of states (see
// State.CanTransition and Allow).
//
// The catalog consumes its commands (slipway.cmd.catalog.*), answers
// queries (slipway.api.catalog.{list,show,datastores}), publishes an event
// for every change (slipway.evt.catalog.*), and orchestrates the import
// saga: an image is LOCKED while the converter fetches, inspects and
// converts its data, then READY once the catalog has checked the stored
// blob, or ERROR with a message when anything failed or took too long.
// The LUKS sagas (encrypt, luks-create) work the same way with
// crypto-luks, and a LUKS image's key slots change in saga slots while the
// image is LOCKED. Every saga is a declared flow of phases run by one
// workflow core (workflow.go), which names no kind. VMs take and release images with image-use and
// image-release (USED, USED_PERS, RVMS); a persistent image's changes are
// copied over its blob when its VM releases it. Administrators create
// datastores beside the configured default and files (datastore-create,
// datastore.go and datastorecmd.go), each a bucket with a capacity that
// image-create respects and permission bits that say who may use it.
//
// All state lives in JetStream KV buckets written with revision
// compare-and-set, so several replicas of the service can run side by side
// and a redelivered message never acts twice.
package catalog
