package marketdockerhub

import "github.com/slipway/slipway/schemas"

// Command verbs the service consumes.
const (
	CmdRefresh      = schemas.CommandMarketDockerhubRefresh
	CmdMarketCreate = schemas.CommandMarketDockerhubMarketCreate
	CmdMarketUpdate = schemas.CommandMarketDockerhubMarketUpdate
	CmdMarketDelete = schemas.CommandMarketDockerhubMarketDelete
	CmdResolve      = schemas.CommandMarketDockerhubResolve
	CmdAppImport    = schemas.CommandMarketDockerhubAppImport
)

// Verbs lists the commands the service consumes.
func Verbs() []string {
	return []string{CmdRefresh, CmdMarketCreate, CmdMarketUpdate, CmdMarketDelete, CmdResolve, CmdAppImport}
}

// Events the service publishes, on <prefix>.evt.market-dockerhub.<event>.<id>.
const (
	// EvtResolved and EvtFailed answer resolve; <id> is the image ID.
	// EvtFailed also refuses any other command; <id> is then
	// "cmd-<stream sequence>".
	EvtResolved = schemas.EventMarketDockerhubResolved
	EvtFailed   = schemas.EventMarketDockerhubFailed
	// The market events' <id> is the marketplace ID.
	EvtMarketCreated = schemas.EventMarketDockerhubMarketCreated
	EvtMarketUpdated = schemas.EventMarketDockerhubMarketUpdated
	EvtMarketDeleted = schemas.EventMarketDockerhubMarketDeleted
	EvtAppsRefreshed = schemas.EventMarketDockerhubAppsRefreshed
	EvtAppImported   = schemas.EventMarketDockerhubAppImported
)

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
