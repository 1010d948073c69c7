package marketdockerhub

// The payloads below are the service's messages until the schemas module
// has them all; their JSON names follow docs/containers.md.

// Command verbs the service consumes.
const (
	CmdRefresh      = "refresh"
	CmdMarketCreate = "market-create"
	CmdMarketUpdate = "market-update"
	CmdMarketDelete = "market-delete"
	CmdResolve      = "resolve"
	CmdAppImport    = "app-import"
)

// Verbs lists the commands the service consumes.
func Verbs() []string {
	return []string{CmdRefresh, CmdMarketCreate, CmdMarketUpdate, CmdMarketDelete, CmdResolve, CmdAppImport}
}

// Events the service publishes, on <prefix>.evt.market-dockerhub.<event>.<id>.
const (
	// EvtResolved and EvtFailed answer resolve; <id> is the image ID.
	EvtResolved = "resolved"
	EvtFailed   = "failed"
	// The market events' <id> is the marketplace ID.
	EvtMarketCreated = "market-created"
	EvtMarketUpdated = "market-updated"
	EvtMarketDeleted = "market-deleted"
	EvtAppsRefreshed = "apps-refreshed"
	EvtAppImported   = "app-imported"
	// EvtCommandFailed refuses a command other than resolve; <id> is
	// "cmd-<stream sequence>".
	EvtCommandFailed = "command-failed"
)

// MADs (marketplace drivers).
const (
	MADDockerHub = "dockerhub" // Docker Hub's official images, through Hub's API
	MADRegistry  = "registry"  // any OCI registry, through /v2/_catalog
)

// Market is a marketplace record (KV key "market.<id>").
type Market struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	MAD  string `json:"mad"`
	Zone int    `json:"zone"`
	// Endpoint is the base URL of Hub's API (MAD dockerhub).
	Endpoint string `json:"endpoint,omitempty"`
	// Registry is host[:port] of the registry (MAD registry).
	Registry string `json:"registry,omitempty"`
	// Insecure allows plain HTTP and unverified TLS to the registry.
	Insecure bool `json:"insecure,omitempty"`
	// Monitoring enables the scheduled refresh.
	Monitoring bool `json:"monitoring"`
	// TotalMB and FreeMB are onemarket's SIZE and AVAIL: a public
	// marketplace has no capacity, so both are 0 (AVAIL shown "-").
	TotalMB int64 `json:"total_mb"`
	FreeMB  int64 `json:"free_mb"`
	// Apps is the number of apps, filled in by queries.
	Apps        int    `json:"apps"`
	RefreshedAt string `json:"refreshed_at,omitempty"`
	// Error is the last refresh's error, "" after a good one.
	Error     string `json:"error,omitempty"`
	CreatedAt string `json:"created_at"`
}

// App is one repository of a marketplace (KV key "app.<market>.<name>").
type App struct {
	ID          int64    `json:"id"`
	MarketID    int64    `json:"market_id"`
	Name        string   `json:"name"` // repository, e.g. "nginx" or "team/app"
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	// Stars and Pulls are Hub's star_count and pull_count (0 elsewhere).
	Stars int64 `json:"stars,omitempty"`
	Pulls int64 `json:"pulls,omitempty"`
	// Size is the compressed bytes of the default tag, 0 when unknown.
	Size int64 `json:"size,omitempty"`
	// Source is the docker:// URL of the repository, without options.
	Source      string `json:"source"`
	LastUpdated string `json:"last_updated,omitempty"`
	// RegTime is when the app was first listed.
	RegTime string `json:"regtime"`
	// Template is the VM template of the last import (app-show only).
	Template string `json:"template,omitempty"`
}

// DefaultTag is the tag an app's VERSION shows: "latest" when the
// repository has it, else its first tag.
func (a App) DefaultTag() string {
	for _, t := range a.Tags {
		if t == "latest" {
			return t
		}
	}
	if len(a.Tags) > 0 {
		return a.Tags[0]
	}
	return "latest"
}

// Refresh asks for a marketplace's apps to be listed again.
type Refresh struct {
	MarketID int64 `json:"market_id"`
}

// MarketCreate adds a registry marketplace. Monitoring defaults to on.
type MarketCreate struct {
	Name       string `json:"name"`
	Registry   string `json:"registry"`
	Insecure   bool   `json:"insecure,omitempty"`
	Monitoring *bool  `json:"monitoring,omitempty"`
}

// MarketUpdate changes the fields it carries.
type MarketUpdate struct {
	ID         int64   `json:"id"`
	Name       *string `json:"name,omitempty"`
	Endpoint   *string `json:"endpoint,omitempty"`
	Registry   *string `json:"registry,omitempty"`
	Insecure   *bool   `json:"insecure,omitempty"`
	Monitoring *bool   `json:"monitoring,omitempty"`
}

// MarketDelete removes a marketplace and its apps.
type MarketDelete struct {
	ID int64 `json:"id"`
}

// Resolve is the catalog's docker-import step: pin url for image_id.
type Resolve struct {
	ImageID int64  `json:"image_id"`
	URL     string `json:"url"`
}

// Resolved answers Resolve.
type Resolved struct {
	ImageID   int64  `json:"image_id"`
	Reference string `json:"reference"` // repo@sha256:…
	Digest    string `json:"digest"`
	Platform  string `json:"platform"`
	Kind      string `json:"kind"` // container | disk
	Size      int64  `json:"size"` // bytes of layers
}

// Failed says why Resolve could not be answered.
type Failed struct {
	ImageID int64  `json:"image_id"`
	Error   string `json:"error"`
}

// CommandFailed refuses a command other than resolve.
type CommandFailed struct {
	Command string `json:"command"`
	Error   string `json:"error"`
}

// AppImport imports one app: a catalog image from its docker:// URL and a
// VM template for it.
type AppImport struct {
	MarketID   int64  `json:"market_id"`
	App        string `json:"app"`
	Tag        string `json:"tag,omitempty"`
	Name       string `json:"name"`
	SizeMiB    int64  `json:"size_mib,omitempty"`
	Filesystem string `json:"filesystem,omitempty"`
	Format     string `json:"format,omitempty"`
	Datastore  string `json:"datastore,omitempty"`
}

// AppImported says an import was sent to the catalog and the launcher.
type AppImported struct {
	MarketID int64  `json:"market_id"`
	App      string `json:"app"`
	Name     string `json:"name"`
	URL      string `json:"url"`
	Template string `json:"template"`
}

// AppsRefreshed reports one refresh of a marketplace.
type AppsRefreshed struct {
	MarketID int64  `json:"market_id"`
	Apps     int    `json:"apps"`
	Added    int    `json:"added"`
	Removed  int    `json:"removed"`
	Error    string `json:"error,omitempty"`
}

// MarketDeleted reports a removed marketplace.
type MarketDeleted struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// TemplateCreate is the launcher's command (slipway.cmd.launcher.template-create).
type TemplateCreate struct {
	Name     string `json:"name"`
	Template string `json:"template"`
}

// Query endpoints, on <prefix>.api.market-dockerhub.<endpoint>.
const (
	QueryList    = "list"
	QueryShow    = "show"
	QueryApps    = "apps"
	QueryAppShow = "app-show"
)

// ShowRequest names a marketplace by ID or by name.
type ShowRequest struct {
	ID   *int64 `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// AppsRequest lists the apps of one marketplace (all when MarketID is
// nil) whose name or description contains Filter.
type AppsRequest struct {
	MarketID *int64 `json:"market_id,omitempty"`
	Filter   string `json:"filter,omitempty"`
}

// AppShowRequest names an app by ID, or by name within a marketplace (any
// marketplace when MarketID is nil, as long as one app has that name).
type AppShowRequest struct {
	ID       *int64 `json:"id,omitempty"`
	MarketID *int64 `json:"market_id,omitempty"`
	Name     string `json:"name,omitempty"`
}
