package marketdockerhub

import (
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
)

// The service consumes every command of its contract
// (schemas/cmd/market-dockerhub.*.json): the marketplace commands of the
// shared contract, run by package market, and resolve, its own, answered
// by resolved.<image_id> or failed.<image_id>.

// MADs (marketplace drivers) of the service.
const (
	MADDockerHub = schemas.MarketMADDockerhub // Docker Hub's official images, through Hub's API
	MADRegistry  = schemas.MarketMADRegistry  // any OCI registry, through /v2/_catalog
)

// The service's records and messages are the schemas module's generated
// types; the names below keep the package's own vocabulary.
type (
	// Market is a marketplace record.
	Market = market.Market
	// App is one repository of a marketplace.
	App = market.App

	Refresh      = schemas.MarketRefresh
	MarketCreate = schemas.MarketCreate
	MarketUpdate = schemas.MarketUpdate
	MarketChmod  = schemas.MarketChmod
	MarketDelete = schemas.MarketDelete
	AppImport    = schemas.MarketAppImport
	Resolve      = schemas.MarketDockerhubResolve

	Resolved      = schemas.MarketDockerhubResolved
	Failed        = schemas.Failure
	AppImported   = schemas.MarketAppImported
	AppsRefreshed = schemas.MarketAppsRefreshed
	MarketDeleted = schemas.MarketDeleted
)
