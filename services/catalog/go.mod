module github.com/slipway/slipway/services/catalog

go 1.26.8

require (
	github.com/slipway/slipway/pkg v0.0.0
	github.com/slipway/slipway/schemas v0.0.0
)

replace (
	github.com/slipway/slipway/pkg => ../../pkg
	github.com/slipway/slipway/schemas => ../../schemas
)
