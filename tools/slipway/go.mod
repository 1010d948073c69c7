module github.com/slipway/slipway/tools/slipway

go 1.26.8

require (
	github.com/slipway/slipway/pkg v0.0.0
	github.com/slipway/slipway/schemas v0.0.0
	github.com/slipway/slipway/services/catalog v0.0.0
	github.com/slipway/slipway/services/converter v0.0.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/term v0.47.0 // indirect
)

replace (
	github.com/slipway/slipway/pkg => ../../pkg
	github.com/slipway/slipway/schemas => ../../schemas
	github.com/slipway/slipway/services/catalog => ../../services/catalog
	github.com/slipway/slipway/services/converter => ../../services/converter
)
