module github.com/slipway/slipway/services/market-dockerhub

go 1.26.8
