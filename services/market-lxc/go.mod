module github.com/slipway/slipway/services/market-lxc

go 1.26.8

require (
	github.com/minio/minio-go/v7 v7.4.1
	github.com/slipway/slipway/pkg v0.0.0
)

replace (
	github.com/slipway/slipway/pkg => ../../pkg
	github.com/slipway/slipway/schemas => ../../schemas
)
