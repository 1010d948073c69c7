package s3iam

import (
	"fmt"
	"slices"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/schemas"
)

// Layout is where Slipway keeps blobs: the buckets every service derives
// its locations from (blob.Locations) and the datastore bucket of files
// and kernels (kernel-registry and the launcher use it by name).
type Layout struct {
	blob.Locations
	FilesBucket string
}

// DefaultLayout is the layout of a default deployment.
func DefaultLayout() Layout {
	return Layout{Locations: blob.DefaultLocations(), FilesBucket: blob.DefaultFilesBucket}
}

// LayoutFromEnv reads the variables of blob.LocationsFromEnv.
func LayoutFromEnv() (Layout, error) {
	loc, err := blob.LocationsFromEnv()
	if err != nil {
		return Layout{}, err
	}
	return Layout{Locations: loc, FilesBucket: loc.DatastoreBuckets[1]}, nil
}

// Buckets are the buckets provisioning creates: the upload bucket, the
// datastores, the files bucket and the marketplace buckets. Other import
// buckets are the operator's own.
func (l Layout) Buckets() []string {
	var out []string
	for _, b := range slices.Concat([]string{l.UploadBucket}, l.DatastoreBuckets, []string{l.FilesBucket}, l.MarketBuckets) {
		if b != "" && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}

// Key prefixes (one segment each) the policies name.
const (
	segImages        = "images"          // datastores: images/<id>/<saga>/…
	segUploads       = "uploads"         // upload bucket: the CLI's staged files, uploads/<user>/…
	segKernels       = "kernels"         // upload bucket: kernel uploads kernels/<user>/…; files bucket: kernels/<id>/vmlinux
	segKernelStaging = "kernel-registry" // upload bucket: what kernel-registry stages for the catalog
	segVMs           = "vms"             // upload bucket: the launcher's saved disks
	segBuilds        = "builds"          // upload bucket: the builder's carried disks
	segOVA           = "ova"             // upload bucket: the converter's staged OVA disks
)

// policyBuilder collects statements; the first error sticks.
type policyBuilder struct {
	objects []Statement
	buckets []string
	created bool // allowCreated was called: list the created datastores' buckets too
	// createBuckets lets the service create the created datastores'
	// buckets (the catalog, at datastore-create) and remove them
	// (datastore-delete, of an empty bucket it made).
	createBuckets bool
	err           error
}

// allow grants actions on the objects of buckets under segments.
func (p *policyBuilder) allow(actions []string, buckets []string, segments ...string) {
	var res []Resource
	for _, b := range buckets {
		r, err := ObjectsARN(b, segments...)
		if err != nil && p.err == nil {
			p.err = err
		}
		res = append(res, r)
		if !slices.Contains(p.buckets, b) {
			p.buckets = append(p.buckets, b)
		}
	}
	if len(res) > 0 {
		p.objects = append(p.objects, Statement{Effect: "Allow", Action: actions, Resource: res})
	}
}

// allowCreated grants actions on the objects under segments of the
// buckets of created datastores (blob.DatastoreBucketPrefix*): a new
// datastore needs no new policy.
func (p *policyBuilder) allowCreated(actions []string, segments ...string) {
	r, err := PrefixedObjectsARN(blob.DatastoreBucketPrefix, segments...)
	if err != nil && p.err == nil {
		p.err = err
	}
	p.created = true
	p.objects = append(p.objects, Statement{Effect: "Allow", Action: actions, Resource: []Resource{r}})
}

// policy is the collected statements plus listing the buckets they name.
func (p *policyBuilder) policy() (Policy, error) {
	if p.err != nil {
		return Policy{}, p.err
	}
	var res []Resource
	for _, b := range p.buckets {
		r, err := BucketARN(b)
		if err != nil {
			return Policy{}, err
		}
		res = append(res, r)
	}
	if p.created {
		r, err := BucketsARN(blob.DatastoreBucketPrefix)
		if err != nil {
			return Policy{}, err
		}
		res = append(res, r)
	}
	st := append([]Statement{{Effect: "Allow", Action: ActBucket, Resource: res}}, p.objects...)
	if p.createBuckets {
		r, err := BucketsARN(blob.DatastoreBucketPrefix)
		if err != nil {
			return Policy{}, err
		}
		st = append(st, Statement{Effect: "Allow", Action: ActCreateBucket, Resource: []Resource{r}})
	}
	return Allow(st...), nil
}

func join(sets ...[]string) []string { return slices.Concat(sets...) }

// ServicePolicy is the least the service needs of S3, from how it uses
// package blob; ok is false for a service that never touches S3.
//
// Every service that uses the datastores' image blobs has the same rights
// in the buckets of created datastores (slipway-ds-*, allowCreated), and the
// catalog may create those buckets (datastore-create).
//
//   - catalog: image blobs in the datastores (stat, copy in, delete);
//     staged objects in the upload bucket (copy out of, delete); writes
//     under uploads/ and kernels/ only so that the upload credentials it
//     issues to users (AssumeRole, which cannot exceed its parent) and the
//     part URLs it presigns for the web console's uploads work.
//   - converter: reads the upload and import buckets, writes and deletes
//     (its own failed attempt) image blobs, stages an OVA's disks under
//     ova/ in the upload bucket.
//   - builder: writes image blobs and builds/ in the upload bucket;
//     reads the upload and import buckets (a rootfs tarball's url).
//   - crypto-luks: reads and rewrites image blobs.
//   - kernel-registry: reads and deletes kernel uploads, stages its files
//     under kernel-registry/, reads image blobs (examine), keeps kernels/
//     in the files bucket.
//   - launcher: reads image blobs and kernels, stages vms/.
//   - market-lxc: reads image blobs (app-create publishes an image the
//     sender may use, checked against the catalog's record first), writes
//     and deletes in the marketplace buckets (MAD s3), whose layout
//     package published derives.
func ServicePolicy(service string, l Layout) (p Policy, ok bool, err error) {
	up := []string{l.UploadBucket}
	ds := l.DatastoreBuckets
	files := []string{l.FilesBucket}
	var b policyBuilder
	switch service {
	case schemas.ServiceCatalog:
		b.allow(join(ActRead, ActWrite, ActDelete), ds, segImages)
		b.allowCreated(join(ActRead, ActWrite, ActDelete), segImages)
		b.createBuckets = true
		b.allow(join(ActRead, ActDelete), up)
		b.allow(ActWrite, up, segUploads)
		b.allow(ActWrite, up, segKernels)
	case schemas.ServiceConverter:
		b.allow(ActRead, join(up, l.ImportBuckets))
		b.allow(join(ActRead, ActWrite, ActDelete), ds, segImages)
		b.allow(join(ActRead, ActWrite, ActDelete), up, segOVA)
		b.allowCreated(join(ActRead, ActWrite, ActDelete), segImages)
	case schemas.ServiceBuilder:
		b.allow(ActRead, join(up, l.ImportBuckets))
		b.allow(join(ActRead, ActWrite, ActDelete), ds, segImages)
		b.allowCreated(join(ActRead, ActWrite, ActDelete), segImages)
		b.allow(join(ActRead, ActWrite, ActDelete), up, segBuilds)
	case schemas.ServiceCryptoLUKS:
		b.allow(join(ActRead, ActWrite, ActDelete), ds, segImages)
		b.allowCreated(join(ActRead, ActWrite, ActDelete), segImages)
	case schemas.ServiceKernelRegistry:
		b.allow(join(ActRead, ActDelete), up, segKernels)
		b.allow(join(ActRead, ActWrite, ActDelete), up, segKernelStaging)
		b.allow(ActRead, ds, segImages)
		b.allowCreated(ActRead, segImages)
		b.allow(join(ActRead, ActWrite, ActDelete), files, segKernels)
	case schemas.ServiceLauncher:
		b.allow(ActRead, ds, segImages)
		b.allowCreated(ActRead, segImages)
		b.allow(ActRead, files, segKernels)
		b.allow(join(ActRead, ActWrite, ActDelete), up, segVMs)
	case schemas.ServiceMarketLxc:
		b.allow(ActRead, ds, segImages)
		b.allowCreated(ActRead, segImages)
		b.allow(join(ActRead, ActWrite, ActDelete), l.MarketBuckets)
	case schemas.ServiceMarketDockerhub:
		return Policy{}, false, nil
	default:
		return Policy{}, false, fmt.Errorf("s3iam: no S3 policy for service %q", service)
	}
	p, err = b.policy()
	return p, err == nil, err
}

// UserName is the MinIO user (and canned policy) of a service.
func UserName(service string) string { return "slipway-" + service }
