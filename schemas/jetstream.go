package schemas

import (
	"slices"
	"strings"
)

// What each service keeps in JetStream besides its command consumer: its
// key-value buckets and its durable consumers of events. The services
// name their buckets and consumers with these constants, and package
// identity grants each service the JetStream API of exactly these and no
// other, so a bucket a service opens without being listed here is refused
// by the server.

// Key-value buckets, without the installation's prefix (BucketName
// adds it: "slipway_catalog_images"). A bucket belongs to the service
// named first; that service creates it at start.
const (
	BucketCatalogImages         = "catalog_images"
	BucketCatalogMeta           = "catalog_meta"
	BucketCatalogSagas          = "catalog_sagas"
	BucketCatalogDedup          = "catalog_dedup"
	BucketCatalogAccounts       = "catalog_accounts"
	BucketCryptoLUKSSecrets     = "crypto-luks_secrets"
	BucketCryptoLUKSImages      = "crypto-luks_images"
	BucketKernelRegistryKernels = "kernel-registry_kernels"
	BucketKernelRegistryAdded   = "kernel-registry_added"
	BucketLauncherTemplates     = "launcher_templates"
	BucketLauncherVMs           = "launcher_vms"
	BucketLauncherDedup         = "launcher_dedup"
	BucketMarketDockerhub       = "market_dockerhub"
	BucketMarketDockerhubDedup  = "market_dockerhub_dedup"
	BucketMarketLxc             = "market_lxc"
	BucketMarketLxcDedup        = "market_lxc_dedup"
	// BucketMarketIDs is shared by the marketplace services: the counters
	// of marketplace and app IDs, global across them, and the index of
	// marketplace names, unique across them.
	BucketMarketIDs = "market_ids"
)

// Durable names of the consumers of events.
const (
	// ConsumerCatalogEvents: the events the catalog's flows wait for.
	ConsumerCatalogEvents = ServiceCatalog
	// ConsumerKernelRegistryImages: the catalog's image events, which
	// register and forget kernels.
	ConsumerKernelRegistryImages = ServiceKernelRegistry + "-catalog"
)

// JetStreamUse is what one service keeps in JetStream.
type JetStreamUse struct {
	// Buckets are its key-value buckets (Bucket* constants).
	Buckets []string
	// EventConsumers are the durable names of its consumers on the event
	// stream.
	EventConsumers []string
	// SetsUp says the service creates the command, event and dead-letter
	// streams and forwards dead letters, as OpenNebula's core keeps the
	// pools: the catalog.
	SetsUp bool
}

// jetStreamUse is the table: one entry per service that keeps anything
// besides its command consumer.
var jetStreamUse = map[string]JetStreamUse{
	ServiceCatalog: {
		Buckets:        []string{BucketCatalogImages, BucketCatalogMeta, BucketCatalogSagas, BucketCatalogDedup, BucketCatalogAccounts},
		EventConsumers: []string{ConsumerCatalogEvents},
		SetsUp:         true,
	},
	ServiceCryptoLUKS:      {Buckets: []string{BucketCryptoLUKSSecrets, BucketCryptoLUKSImages}},
	ServiceKernelRegistry:  {Buckets: []string{BucketKernelRegistryKernels, BucketKernelRegistryAdded}, EventConsumers: []string{ConsumerKernelRegistryImages}},
	ServiceLauncher:        {Buckets: []string{BucketLauncherTemplates, BucketLauncherVMs, BucketLauncherDedup}},
	ServiceMarketDockerhub: {Buckets: []string{BucketMarketDockerhub, BucketMarketDockerhubDedup, BucketMarketIDs}},
	ServiceMarketLxc:       {Buckets: []string{BucketMarketLxc, BucketMarketLxcDedup, BucketMarketIDs}},
}

// sharedBuckets are the buckets more than one service keeps, with every
// service that does: the test of the table allows no other.
var sharedBuckets = map[string][]string{
	BucketMarketIDs: {ServiceMarketDockerhub, ServiceMarketLxc},
}

// JetStreamOf is what service keeps in JetStream (nothing for a service
// that only consumes its commands, or no service at all).
func JetStreamOf(service string) JetStreamUse {
	u := jetStreamUse[service]
	return JetStreamUse{Buckets: slices.Clone(u.Buckets), EventConsumers: slices.Clone(u.EventConsumers), SetsUp: u.SetsUp}
}

// ConsumesCommands reports whether service owns a command, and so has a
// durable consumer on the command stream named after itself.
func ConsumesCommands(service string) bool {
	for _, r := range registry {
		if r.kind == KindCommand && r.service == service {
			return true
		}
	}
	return false
}

// StreamPrefix is the stream name prefix of an installation: its subject
// prefix upper-cased, every character other than a letter or digit turned
// to '_'.
func StreamPrefix(prefix string) string {
	var sb strings.Builder
	for _, r := range strings.ToUpper(prefix) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	return sb.String()
}

// CommandStream, EventStream and DeadLetterStream name the three streams
// of the installation with subject prefix prefix.
func CommandStream(prefix string) string    { return StreamPrefix(prefix) + "_CMD" }
func EventStream(prefix string) string      { return StreamPrefix(prefix) + "_EVT" }
func DeadLetterStream(prefix string) string { return StreamPrefix(prefix) + "_DLQ" }

// BucketName names a service's KV bucket: "slipway" + "catalog_images"
// gives "slipway_catalog_images". Every character of the prefix other than
// a letter, digit or '-' becomes '_'; another prefix gives other buckets,
// so two installations can share a server.
func BucketName(prefix, name string) string {
	var sb strings.Builder
	for _, r := range prefix {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '-' {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	return sb.String() + "_" + name
}

// BucketStream is the stream that holds the KV bucket named bucket (a
// BucketName): JetStream's own naming.
func BucketStream(bucket string) string { return "KV_" + bucket }
