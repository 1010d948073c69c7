module github.com/slipway/slipway/services/kernel-registry

go 1.26.8
