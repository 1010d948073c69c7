module github.com/slipway/slipway/services/launcher

go 1.26.8
