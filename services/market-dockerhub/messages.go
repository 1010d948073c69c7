package marketdockerhub

import "github.com/slipway/slipway/schemas"

// The service consumes every command of its contract
// (schemas/cmd/market-dockerhub.*.json) and publishes its events on
// <prefix>.evt.market-dockerhub.<event>.<id>: resolved and failed answer
// resolve, <id> the image ID (failed also refuses any other command, <id>
// then "cmd-<stream sequence>"); the market events' <id> is the
// marketplace ID.

// MADs (marketplace drivers).
const (
	MADDockerHub = schemas.MarketMADDockerhub // Docker Hub's official images, through Hub's API
	MADRegistry  = schemas.MarketMADRegistry  // any OCI registry, through /v2/_catalog
)

// The service's records and messages are the schemas module's generated
// types (schemas/defs.json, schemas/cmd|evt/market-dockerhub.*.json); the
// names below keep the package's own vocabulary.
type (
	// Market is a marketplace record (KV key "market.<id>"), the payload
	// of market-created and market-updated.
	Market = schemas.Market
	// App is one repository of a marketplace (KV key "app.<market>.<name>").
	App = schemas.MarketApp

	Refresh      = schemas.MarketDockerhubRefresh
	MarketCreate = schemas.MarketDockerhubMarketCreate
	MarketUpdate = schemas.MarketDockerhubMarketUpdate
	MarketChmod  = schemas.MarketDockerhubMarketChmod
	MarketDelete = schemas.MarketDockerhubMarketDelete
	AppImport    = schemas.MarketDockerhubAppImport
	Resolve      = schemas.MarketDockerhubResolve

	Resolved      = schemas.MarketDockerhubResolved
	Failed        = schemas.Failure
	AppImported   = schemas.MarketDockerhubAppImported
	AppsRefreshed = schemas.MarketDockerhubAppsRefreshed
	MarketDeleted = schemas.MarketDockerhubMarketDeleted

	// TemplateCreate is the launcher's command (slipway.cmd.launcher.template-create).
	TemplateCreate = schemas.LauncherTemplateCreate
)
