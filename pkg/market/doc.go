// Package market is the core of Slipway's marketplace services
// (market-dockerhub, market-lxc): OpenNebula's onemarket and onemarketapp
// written once. A service supplies a Driver per MAD (how to list a
// marketplace's apps upstream, how to check its configuration, what an
// import of an app asks the catalog for); the core does everything else:
//
//   - the state: marketplaces, apps and the VM templates of imports in the
//     service's KV bucket; marketplace and app IDs from counters shared by
//     every marketplace service (bucket <prefix>_market_ids, which also
//     keeps marketplace names unique across them), so IDs are global as
//     OpenNebula's: pre-registered marketplaces have their seed IDs (0 to
//     3), created ones start at 100 as OpenNebula's MarketPlacePool does;
//   - the commands (market-create, market-update, market-delete,
//     market-chmod, refresh, app-import) and queries (list, show, apps,
//     app-show) of the shared contract (schemas MarketCreate, …), checked
//     against their schemas and, for users, OpenNebula's permissions
//     (package acl) in one place;
//   - the refresh schedule and OpenNebula's refresh rules: an app is
//     updated when its version, checksums or source change, dropped after
//     three listings in a row without it but never because a listing came
//     back empty or failed; a failed listing is recorded on the
//     marketplace and in apps-refreshed; app IDs are stable;
//   - the import: the catalog's image-create through bus.Call (the answer
//     remembered per import command), then the launcher's template-create.
//
// The style is go-containerregistry's "partial": a Driver implements the
// three required methods; optional interfaces (Templater: the app's own
// VM template; Composer: an app made of other apps, each imported as an
// image the template names) let it take over more, and the core fills in
// the rest.
package market
