module github.com/slipway/slipway/services/market-lxc

go 1.26.8
