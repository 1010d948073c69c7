module github.com/slipway/slipway/services/crypto-luks

go 1.26.8
