module github.com/slipway/slipway/services/builder

go 1.26.8
