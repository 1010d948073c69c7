module github.com/slipway/slipway/integration

go 1.26.8

require (
	github.com/slipway/slipway/pkg v0.0.0
	github.com/slipway/slipway/schemas v0.0.0
	github.com/slipway/slipway/services/catalog v0.0.0
	github.com/slipway/slipway/services/converter v0.0.0
	github.com/slipway/slipway/tools/slipway v0.0.0
)

require (
	github.com/compose-spec/compose-go/v2 v2.16.2 // indirect
	github.com/distribution/reference v0.5.0 // indirect
	github.com/docker/go-connections v0.4.0 // indirect
	github.com/docker/go-units v0.5.0 // indirect
	github.com/go-viper/mapstructure/v2 v2.4.0 // indirect
	github.com/mattn/go-shellwords v1.0.12 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3 // indirect
	github.com/sirupsen/logrus v1.10.1 // indirect
	github.com/xhit/go-str2duration/v2 v2.1.0 // indirect
	go.yaml.in/yaml/v4 v4.0.0-rc.4 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

replace (
	github.com/slipway/slipway/pkg => ../pkg
	github.com/slipway/slipway/schemas => ../schemas
	github.com/slipway/slipway/services/catalog => ../services/catalog
	github.com/slipway/slipway/services/converter => ../services/converter
	github.com/slipway/slipway/tools/slipway => ../tools/slipway
)
