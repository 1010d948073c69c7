package schemas

import (
	"slices"
	"testing"
)

func TestJetStreamNames(t *testing.T) {
	for _, c := range []struct{ prefix, name, want string }{
		{"slipway", "catalog_images", "slipway_catalog_images"},
		{"it-1.x", "launcher_vms", "it-1_x_launcher_vms"},
	} {
		if got := BucketName(c.prefix, c.name); got != c.want {
			t.Errorf("BucketName(%q, %q) = %q, want %q", c.prefix, c.name, got, c.want)
		}
	}
	if got := CommandStream("it-1.x"); got != "IT_1_X_CMD" {
		t.Errorf("CommandStream: %s", got)
	}
	if got := BucketStream(BucketName("slipway", BucketLauncherVMs)); got != "KV_slipway_launcher_vms" {
		t.Errorf("BucketStream: %s", got)
	}
}

// TestJetStreamUseNamesServices: every entry of the table is a service of
// the contract, and no bucket or event consumer has two owners, but for
// the shared buckets, which have exactly the owners sharedBuckets names.
func TestJetStreamUseNamesServices(t *testing.T) {
	seen := map[string]string{}
	for service, use := range jetStreamUse {
		if !IsService(service) {
			t.Errorf("%s keeps JetStream resources but is no service", service)
		}
		for _, name := range append(use.Buckets, use.EventConsumers...) {
			if owners, ok := sharedBuckets[name]; ok {
				if !slices.Contains(owners, service) {
					t.Errorf("%s keeps shared bucket %s, which is only %v's", service, name, owners)
				}
				continue
			}
			if other, ok := seen[name]; ok {
				t.Errorf("%s is both %s's and %s's", name, other, service)
			}
			seen[name] = service
		}
	}
	for name, owners := range sharedBuckets {
		for _, o := range owners {
			if !slices.Contains(jetStreamUse[o].Buckets, name) {
				t.Errorf("shared bucket %s is %s's, whose table entry does not have it", name, o)
			}
		}
	}
}
