package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// schemaDoc is a schema file decoded loosely, for checking conventions.
type schemaDoc struct {
	Schema      string `json:"$schema"`
	ID          string `json:"$id"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Ref         string `json:"$ref"`
	Type        string `json:"type"`
	Items       *struct {
		Ref string `json:"$ref"`
	} `json:"items"`
	AddlProps *bool `json:"additionalProperties"`
	Examples  []json.RawMessage
}

func loadDoc(t *testing.T, m Message) schemaDoc {
	t.Helper()
	var d schemaDoc
	if err := json.Unmarshal(m.Schema, &d); err != nil {
		t.Fatalf("%s: %v", m.ID(), err)
	}
	return d
}

func TestEverySchemaCompiles(t *testing.T) {
	all, err := compiled()
	if err != nil {
		t.Fatal(err)
	}
	msgs := Messages()
	if len(all) != len(msgs) {
		t.Errorf("%d compiled message schemas, %d registered messages", len(all), len(msgs))
	}
	for _, m := range msgs {
		if all[m.ID()] == nil {
			t.Errorf("%s is registered but not compiled", m.ID())
		}
	}
}

func TestEveryContractMessageExists(t *testing.T) {
	want := map[string]string{
		"cmd catalog.image-create":        "ImageCreate",
		"cmd catalog.image-delete":        "ImageRef",
		"cmd catalog.image-enable":        "ImageRef",
		"cmd catalog.image-disable":       "ImageRef",
		"cmd catalog.image-persistent":    "ImageRef",
		"cmd catalog.image-nonpersistent": "ImageRef",
		"cmd catalog.image-rename":        "ImageRename",
		"cmd catalog.image-update":        "ImageUpdate",
		"cmd converter.import":            "ConverterImport",
		"cmd converter.create-blank":      "ConverterCreateBlank",
		"cmd converter.ova-unpack":        "ConverterOvaUnpack",
		"evt catalog.image-created":       "Image",
		"evt catalog.state-changed":       "StateChanged",
		"evt catalog.image-progress":      "ImageProgress",
		"evt catalog.image-updated":       "Image",
		"evt catalog.image-deleted":       "ImageDeleted",
		"evt catalog.failed":              "Failure",
		"evt converter.progress":          "Progress",
		"evt converter.converted":         "ConverterConverted",
		"evt converter.failed":            "Failure",
		"evt converter.ova-unpacked":      "ConverterOvaUnpacked",
		"cmd builder.build":               "BuilderBuild",
		"evt builder.progress":            "Progress",
		"evt builder.built":               "BuilderBuilt",
		"evt builder.failed":              "Failure",
		"cmd market-dockerhub.resolve":    "MarketDockerhubResolve",
		"evt market-dockerhub.resolved":   "MarketDockerhubResolved",
		"evt market-dockerhub.failed":     "Failure",

		// Issue #4: the catalog's image locks and LUKS images.
		"cmd catalog.image-use":           "ImageUse",
		"cmd catalog.image-release":       "ImageRelease",
		"cmd catalog.image-encrypt":       "ImageEncrypt",
		"cmd catalog.image-clone":         "ImageClone",
		"cmd catalog.image-lock":          "ImageLockRequest",
		"cmd catalog.image-unlock":        "ImageRef",
		"cmd catalog.image-slot-add":      "ImageSlotAdd",
		"cmd catalog.image-slot-remove":   "ImageSlotRemove",
		"cmd catalog.image-slot-rotate":   "ImageSlotRotate",
		"evt catalog.image-slots-changed": "ImageSlotsChanged",
		"evt catalog.image-used":          "ImageUsed",
		"evt catalog.image-released":      "ImageReleased",
		"cmd crypto-luks.encrypt":         "CryptoLuksEncrypt",
		"cmd crypto-luks.create":          "CryptoLuksCreate",
		"cmd crypto-luks.secret-delete":   "CryptoLuksSecretDelete",
		"evt crypto-luks.encrypted":       "CryptoLuksEncrypted",
		"evt crypto-luks.failed":          "Failure",
		"cmd crypto-luks.slot-add":        "CryptoLuksSlotAdd",
		"cmd crypto-luks.slot-remove":     "CryptoLuksSlotRemove",
		"cmd crypto-luks.rotate":          "CryptoLuksRotate",
		"cmd crypto-luks.rotate-kek":      "CryptoLuksRotateKEK",
		"evt crypto-luks.progress":        "Progress",
		"evt crypto-luks.slots-changed":   "CryptoLuksSlotsChanged",
		"evt crypto-luks.kek-rotated":     "CryptoLuksKEKRotated",
		// Issue #4: kernel-registry.
		"cmd kernel-registry.add":      "KernelRegistryAdd",
		"evt kernel-registry.added":    "Kernel",
		"evt kernel-registry.examined": "Kernel",
		"evt kernel-registry.failed":   "Failure",
		"evt kernel-registry.progress": "Progress",
		// Issue #4: the launcher's templates and VMs.
		"cmd launcher.template-create":  "LauncherTemplateCreate",
		"cmd launcher.template-update":  "LauncherTemplateUpdate",
		"cmd launcher.template-delete":  "LauncherTemplateDelete",
		"cmd launcher.instantiate":      "LauncherInstantiate",
		"cmd launcher.terminate":        "VMAction",
		"cmd launcher.poweroff":         "VMAction",
		"cmd launcher.resume":           "LauncherResume",
		"cmd launcher.disk-snapshot":    "LauncherDiskSnapshot",
		"cmd launcher.disk-save-as":     "LauncherDiskSaveAs",
		"evt launcher.template-created": "VMTemplate",
		"evt launcher.template-updated": "VMTemplate",
		"evt launcher.template-deleted": "LauncherTemplateDeleted",
		"evt launcher.vm-created":       "LauncherVMCreated",
		"evt launcher.vm-state-changed": "LauncherVMStateChanged",
		"evt launcher.disk-saved":       "LauncherDiskSaved",
		"evt launcher.disk-snapshotted": "LauncherDiskSnapshotted",
		"evt launcher.failed":           "Failure",
		// Issue #15: snapshots of images and VM disks.
		"cmd catalog.image-snapshot-revert":  "ImageSnapshotRevert",
		"cmd catalog.image-snapshot-delete":  "ImageSnapshotDelete",
		"cmd catalog.image-snapshot-flatten": "ImageSnapshotFlatten",
		"evt catalog.image-snapshot-changed": "ImageSnapshotChanged",
		"cmd converter.snapshot":             "ConverterSnapshot",
		"cmd launcher.disk-snapshot-revert":  "LauncherDiskSnapshotRevert",
		"cmd launcher.disk-snapshot-delete":  "LauncherDiskSnapshotDelete",
		"evt launcher.disk-snapshot-changed": "LauncherDiskSnapshotChanged",
		"cmd catalog.image-copy-lock":        "ImageCopyLock",
		"evt catalog.image-copy-locked":      "ImageCopyLocked",
		// Queries: every endpoint a service serves has a request and a reply.
		"qry catalog.list":              "CatalogListRequest",
		"rpl catalog.list":              "CatalogListReply",
		"qry catalog.show":              "CatalogShowRequest",
		"rpl catalog.show":              "Image",
		"qry catalog.datastores":        "CatalogDatastoresRequest",
		"qry catalog.datastore-show":    "CatalogDatastoreShowRequest",
		"rpl catalog.datastore-show":    "CatalogDatastore",
		"cmd catalog.datastore-create":  "DatastoreCreate",
		"cmd catalog.datastore-delete":  "DatastoreDelete",
		"evt catalog.datastore-created": "DatastoreCreated",
		"evt catalog.datastore-deleted": "DatastoreDeleted",
		"evt catalog.datastore-updated": "DatastoreUpdated",
		"cmd catalog.datastore-chmod":   "DatastoreChmod",
		"cmd catalog.datastore-chown":   "DatastoreChown",
		"rpl catalog.datastores":        "CatalogDatastoresReply",
		"qry converter.jobs":            "ConverterJobsRequest",
		"rpl converter.jobs":            "ConverterJobsReply",
		"qry converter.formats":         "ConverterFormatsRequest",
		"rpl converter.formats":         "ConverterFormatsReply",
		"qry builder.jobs":              "BuilderJobsRequest",
		"rpl builder.jobs":              "BuilderJobsReply",
		"qry crypto-luks.secret":        "CryptoLuksSecretRequest",
		"rpl crypto-luks.secret":        "CryptoLuksSecretReply",
		"qry crypto-luks.secrets":       "CryptoLuksSecretsRequest",
		"rpl crypto-luks.secrets":       "CryptoLuksSecretsReply",
		"qry crypto-luks.slots":         "CryptoLuksSlotsRequest",
		"rpl crypto-luks.slots":         "LuksSecret",
		"qry crypto-luks.jobs":          "CryptoLuksJobsRequest",
		"rpl crypto-luks.jobs":          "CryptoLuksJobsReply",
		"qry kernel-registry.list":      "KernelRegistryListRequest",
		"rpl kernel-registry.list":      "KernelRegistryListReply",
		"qry kernel-registry.show":      "KernelRegistryShowRequest",
		"qry kernel-registry.jobs":      "KernelRegistryJobsRequest",
		"rpl kernel-registry.jobs":      "KernelRegistryJobsReply",
		"rpl kernel-registry.show":      "Kernel",
		"qry launcher.templates":        "LauncherTemplatesRequest",
		"rpl launcher.templates":        "LauncherTemplatesReply",
		"qry launcher.template":         "LauncherTemplateRequest",
		"rpl launcher.template":         "VMTemplate",
		"qry launcher.vms":              "LauncherVMsRequest",
		"rpl launcher.vms":              "LauncherVMsReply",
		"qry launcher.vm":               "LauncherVMRequest",
		"rpl launcher.vm":               "VM",
		"qry launcher.console":          "LauncherConsoleRequest",
		"rpl launcher.console":          "LauncherConsoleReply",
		"qry launcher.firecracker":      "LauncherFirecrackerRequest",
		"rpl launcher.firecracker":      "LauncherFirecrackerReply",
		"cmd catalog.user-create":       "UserCreate",
		"cmd catalog.user-credentials":  "UserCredentials",
		"cmd catalog.user-delete":       "UserDelete",
		"cmd catalog.group-create":      "GroupCreate",
		"cmd catalog.group-delete":      "GroupDelete",
		"cmd catalog.group-add-user":    "GroupAddUser",
		"cmd catalog.group-del-user":    "GroupDelUser",
		"cmd catalog.image-chmod":       "ImageChmod",
		"cmd catalog.image-chown":       "ImageChown",
		"cmd catalog.image-chgrp":       "ImageChgrp",
		"cmd launcher.template-chmod":   "LauncherTemplateChmod",
		"cmd launcher.template-chown":   "LauncherTemplateChown",
		"cmd launcher.template-chgrp":   "LauncherTemplateChgrp",
		"evt catalog.user-created":      "UserCreated",
		"evt catalog.user-deleted":      "UserDeleted",
		"evt catalog.user-updated":      "UserUpdated",
		"evt catalog.group-created":     "GroupCreated",
		"evt catalog.group-deleted":     "GroupDeleted",
		"cmd catalog.user-quota":        "UserQuota",
		"cmd catalog.group-quota":       "GroupQuota",
		"evt catalog.group-updated":     "GroupUpdated",
		"qry catalog.users":             "CatalogUsersRequest",
		"rpl catalog.users":             "CatalogUsersReply",
		"qry catalog.user":              "CatalogUserRequest",
		"rpl catalog.user":              "User",
		"qry catalog.groups":            "CatalogGroupsRequest",
		"qry catalog.blob-url":          "CatalogBlobURLRequest",
		"rpl catalog.blob-url":          "CatalogBlobURLReply",
		"qry catalog.blob-creds":        "CatalogBlobCredsRequest",
		"rpl catalog.blob-creds":        "S3TemporaryCredentials",
		"qry catalog.upload-creds":      "CatalogUploadCredsRequest",
		"rpl catalog.upload-creds":      "S3TemporaryCredentials",
		// The web console's presigned multipart uploads.
		"qry catalog.upload-start":    "CatalogUploadStartRequest",
		"rpl catalog.upload-start":    "CatalogUploadStartReply",
		"qry catalog.upload-parts":    "UploadRef",
		"rpl catalog.upload-parts":    "CatalogUploadPartsReply",
		"qry catalog.upload-presign":  "CatalogUploadPresignRequest",
		"rpl catalog.upload-presign":  "CatalogUploadPresignReply",
		"qry catalog.upload-complete": "CatalogUploadCompleteRequest",
		"rpl catalog.upload-complete": "CatalogUploadCompleteReply",
		"qry catalog.upload-abort":    "UploadRef",
		"rpl catalog.upload-abort":    "UploadRef",
		"rpl catalog.groups":          "CatalogGroupsReply",
		// market-lxc publishes into private marketplaces.
		"cmd market-lxc.app-create":  "MarketAppCreate",
		"evt market-lxc.app-created": "MarketAppCreated",
		"cmd market-lxc.app-delete":  "MarketAppDelete",
		"evt market-lxc.app-deleted": "MarketAppDeleted",
	}
	// The marketplace services share one contract: the same messages with
	// the same types (market-dockerhub adds resolve, market-lxc app-create
	// and app-delete).
	for _, svc := range []string{"market-dockerhub", "market-lxc"} {
		for msg, typ := range map[string]string{
			"cmd refresh": "MarketRefresh", "cmd market-create": "MarketCreate", "cmd market-update": "MarketUpdate",
			"cmd market-delete": "MarketDelete", "cmd market-chmod": "MarketChmod", "cmd app-import": "MarketAppImport",
			"evt market-created": "Market", "evt market-updated": "Market", "evt market-deleted": "MarketDeleted",
			"evt apps-refreshed": "MarketAppsRefreshed", "evt app-imported": "MarketAppImported", "evt failed": "Failure",
			"qry list": "MarketListRequest", "rpl list": "MarketListReply", "qry show": "MarketShowRequest", "rpl show": "Market",
			"qry apps": "MarketAppsRequest", "rpl apps": "MarketAppsReply", "qry app-show": "MarketAppShowRequest", "rpl app-show": "MarketApp",
		} {
			kind, name, _ := strings.Cut(msg, " ")
			want[kind+" "+svc+"."+name] = typ
		}
	}
	got := map[string]string{}
	for _, m := range Messages() {
		got[m.Kind+" "+m.Service+"."+m.Name] = m.Type.Name()
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("messages:\n got %v\nwant %v", got, want)
	}
}

func TestSchemaConventions(t *testing.T) {
	for _, m := range Messages() {
		d := loadDoc(t, m)
		if d.Schema != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema is %q", m.ID(), d.Schema)
		}
		if d.ID != m.ID() {
			t.Errorf("%s: $id is %q", m.ID(), d.ID)
		}
		if d.Title != m.Type.Name() || m.Title != d.Title {
			t.Errorf("%s: title %q, Go type %s", m.ID(), d.Title, m.Type.Name())
		}
		if d.Description == "" {
			t.Errorf("%s: no description", m.ID())
		}
		if len(d.Examples) == 0 {
			t.Errorf("%s: no examples", m.ID())
		}
		// A payload with its own properties must be closed; one that is a $ref
		// inherits the closed shape of its definition (the generator checks both);
		// an array (a list query's reply) holds items of a definition.
		switch {
		case d.Type == "array":
			if d.Items == nil || d.Items.Ref == "" || d.AddlProps != nil {
				t.Errorf("%s: an array payload's items must be a $ref to a definition", m.ID())
			}
			if m.Kind != KindReply {
				t.Errorf("%s: only a query reply may be an array", m.ID())
			}
		case d.Ref == "" && (d.AddlProps == nil || *d.AddlProps):
			t.Errorf("%s: additionalProperties must be false", m.ID())
		}
		if d.Ref != "" && d.AddlProps != nil {
			t.Errorf("%s: additionalProperties next to $ref rejects every property", m.ID())
		}
	}
}

// TestExamples checks that every example validates, decodes into its Go type with
// no field left over, and encodes back to the same JSON.
func TestExamples(t *testing.T) {
	for _, m := range Messages() {
		for i, ex := range loadDoc(t, m).Examples {
			if err := Validate(m.Kind, m.Service, m.Name, ex); err != nil {
				t.Errorf("%s example %d: %v", m.ID(), i, err)
				continue
			}
			v := reflect.New(m.Type)
			dec := json.NewDecoder(bytes.NewReader(ex))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v.Interface()); err != nil {
				t.Errorf("%s example %d into %s: %v", m.ID(), i, m.Type, err)
				continue
			}
			if err := ValidateValue(m.Kind, m.Service, m.Name, v.Interface()); err != nil {
				t.Errorf("%s example %d after a Go round trip: %v", m.ID(), i, err)
			}
			again, _ := json.Marshal(v.Interface())
			if !sameJSON(t, ex, again) {
				t.Errorf("%s example %d changed in a Go round trip:\n was %s\n now %s", m.ID(), i, compact(ex), again)
			}
		}
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(va, vb)
}

func compact(b []byte) string {
	var buf bytes.Buffer
	_ = json.Compact(&buf, b)
	return buf.String()
}

func TestInvalidPayloadsNameTheField(t *testing.T) {
	const (
		okDest = `"dest":"s3://slipway-default/images/1/disk.qcow2"`
		sha    = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"
	)
	tests := []struct {
		kind, service, name, payload, want string
	}{
		{"cmd", "catalog", "image-create", `{"name":"x","size_mib":0}`, "catalog.image-create: /size_mib: must be >= 1"},
		{"cmd", "catalog", "image-create", `{"name":"x","size_mib":16777217}`, "/size_mib: must be <= 16777216"},
		{"cmd", "catalog", "image-create", `{"name":"x"}`, "/path is required, or /size_mib is required"},
		{"cmd", "catalog", "image-create", `{"size_mib":1}`, "/name: is required"},
		{"cmd", "catalog", "image-create", `{"name":"","size_mib":1}`, "/name: must not be empty"},
		{"cmd", "catalog", "image-create", `{"name":"a\u0007b","size_mib":1}`, "/name: \"a\\u0007b\" does not match"},
		{"cmd", "catalog", "image-create", `{"name":"` + strings.Repeat("n", 129) + `","size_mib":1}`, "/name: must be at most 128"},
		{"cmd", "catalog", "image-create", `{"name":"x","size_mib":1,"type":"FLOPPY"}`, `/type: is "FLOPPY", must be one of "OS"`},
		{"cmd", "catalog", "image-create", `{"name":"x","path":"ftp://host/disk"}`, "/path: \"ftp://host/disk\" does not match"},
		{"cmd", "catalog", "image-create", `{"name":"x","path":"s3://b/k","checksum":"md5:abc"}`, "/checksum:"},
		{"cmd", "catalog", "image-create", `{"name":"x","size_mib":1,"fs":"ntfs"}`, "/fs: is \"ntfs\""},
		{"cmd", "catalog", "image-create", `{"name":"x","size_mib":1,"compression":"gzip"}`, "/compression:"},
		{"cmd", "catalog", "image-create", `{"name":"x","size_mib":1,"sizemib":1}`, "/sizemib: is not allowed"},
		{"cmd", "catalog", "image-create", `{"name":"x","size_mib":1,"attributes":{"k":1}}`, "/attributes/k: must be string, not number"},
		{"cmd", "catalog", "image-create", `{"name":"x","size_mib":1.5}`, "/size_mib: must be integer"},
		{"cmd", "catalog", "image-delete", `{"id":-1}`, "catalog.image-delete: /id: must be >= 0"},
		{"cmd", "catalog", "image-delete", `{}`, "/id: is required"},
		{"cmd", "catalog", "image-enable", `{"id":"7"}`, "/id: must be integer, not string"},
		{"cmd", "catalog", "image-rename", `{"id":1}`, "/name: is required"},
		{"cmd", "catalog", "image-update", `{"id":1,"attributes":{"k":"v"},"replace":"yes"}`, "/replace: must be boolean"},
		{"cmd", "converter", "import", `{"image_id":1,"source":"s3://b/k","dest":"http://x/y"}`, "/dest:"},
		{"cmd", "converter", "import", `{"image_id":1,"source":"s3://b/k",` + okDest + `,"max_virtual_size":0}`, "/max_virtual_size: must be >= 1"},
		{"cmd", "converter", "create-blank", `{"image_id":1,"size_mib":1,"format":"vmdk",` + okDest + `}`, `/format: is "vmdk", must be one of "raw", "qcow2"`},
		{"evt", "catalog", "state-changed", `{"id":1,"from":"LOCKED","to":"ERROR"}`, "/error: is required"},
		{"evt", "catalog", "state-changed", `{"id":1,"to":"INIT"}`, "/to: is \"INIT\""},
		{"evt", "catalog", "image-created", `{"id":1,"name":"a","datastore":"default","type":"OS","persistent":false,"state":"READY","rvms":0,"created_at":"yesterday","updated_at":"2025-01-01T00:00:00Z"}`, "/created_at: \"yesterday\" is not a valid date-time"},
		{"evt", "catalog", "image-updated", `{"id":1,"name":"a","datastore":"default","type":"OS","persistent":false,"state":"READY","rvms":0,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","sha256":"ABC"}`, "/sha256:"},
		{"evt", "catalog", "failed", `{"command":"slipway.cmd.catalog.image-create","error":""}`, "/error: must not be empty"},
		{"evt", "converter", "progress", `{"image_id":1,"phase":"fetch\u001b[2J","bytes_done":0,"bytes_total":0}`, "/phase:"},
		{"evt", "catalog", "image-progress", `{"id":1,"step":"Convert","phase":"fetch","bytes_done":0,"bytes_total":0}`, "/step:"},
		{"evt", "converter", "converted", `{"image_id":1,` + okDest + `,"format":"qcow2","virtual_size":1,"size":-1,"sha256":"` + sha + `"}`, "/size: must be >= 0"},
		{"evt", "converter", "failed", `{"image_id":1,"phase":"fetch","error":"x"}`, "/retryable: is required"},
		// Query requests and replies.
		{"qry", "catalog", "show", `{}`, "catalog.show: one of these must hold: /id is required, or /name is required"},
		{"qry", "catalog", "show", `{"id":"7"}`, "catalog.show: /id: must be integer, not string"},
		{"qry", "catalog", "show", `{"id":1,"name":"a"}`, "catalog.show: give only one of /id, /name"},
		{"qry", "catalog", "list", `{"state":"HAPPY"}`, `/state: is "HAPPY"`},
		{"qry", "catalog", "datastores", `{"all":true}`, "/all: is not allowed"},
		{"qry", "crypto-luks", "secret", `{"secret":"0b8e7c9a-3f1d-4c2e-9a6b-5d4e3f2a1b0c","public_key":"AAAA"}`, "/public_key: \"AAAA\" does not match"},
		{"qry", "launcher", "vm", `{}`, "launcher.vm: /id: is required"},
		{"rpl", "catalog", "show", `{"id":"7","name":"a","datastore":"default","type":"OS","persistent":false,"state":"READY","rvms":0,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}`, "catalog.show: /id: must be integer, not string"},
		{"rpl", "catalog", "show", `{"id":7,"name":"a","datastore":"default","type":"OS","persistent":false,"state":"READY","rvms":0,"source":"/etc/passwd","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}`, "/source: \"/etc/passwd\" does not match"},
		{"rpl", "catalog", "list", `null`, "catalog.list: must be array, not null"},
		{"rpl", "crypto-luks", "secret", `{"secret":"0b8e7c9a-3f1d-4c2e-9a6b-5d4e3f2a1b0c","image_id":8,"slot":9,"sealed":"AAAA"}`, "/slot: must be <= 7"},
		{"rpl", "launcher", "firecracker", `{"config":{"boot-source":{"kernel_image_path":"vmlinux"},"drives":[],"machine-config":{"vcpu_count":1,"mem_size_mib":512,"smt":false}},"valid":true,"problems":[],"bootable":false}`, "/config/boot-source/kernel_image_path:"},
	}
	for _, tc := range tests {
		err := Validate(tc.kind, tc.service, tc.name, []byte(tc.payload))
		if err == nil {
			t.Errorf("%s.%s accepted %s", tc.service, tc.name, tc.payload)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v does not match ErrInvalid", tc.payload, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s.%s %s:\n got %q\nwant it to contain %q", tc.service, tc.name, tc.payload, err, tc.want)
		}
	}
}

func TestValidationErrorListsProblems(t *testing.T) {
	err := Validate("cmd", "catalog", "image-create", []byte(`{"a":1,"b":2,"c":3,"d":4,"name":"x","size_mib":1}`))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %T %v, want *ValidationError", err, err)
	}
	if len(ve.Problems) != 4 || ve.Problems[0].Path != "/a" {
		t.Errorf("problems: %+v", ve.Problems)
	}
	if !strings.HasSuffix(err.Error(), "(and 1 more)") {
		t.Errorf("error %q does not say how many problems were left out", err)
	}
}

func TestUnknownAndMalformed(t *testing.T) {
	err := Validate("cmd", "catalog", "image-explode", []byte(`{}`))
	if !errors.Is(err, ErrUnknownMessage) || !strings.Contains(err.Error(), "catalog.image-explode") {
		t.Errorf("unknown message: %v", err)
	}
	err = Validate("evt", "catalog", "image-create", []byte(`{}`)) // a command, not an event
	if !errors.Is(err, ErrUnknownMessage) {
		t.Errorf("wrong kind: %v", err)
	}
	for _, bad := range []string{``, `{"name":`, `{"name":"x"} trailing`, `nul`} {
		err := Validate("cmd", "catalog", "image-create", []byte(bad))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "malformed JSON: ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestValidateValue(t *testing.T) {
	ok := ImageCreate{Name: "blank", Type: ImageTypeDatablock, SizeMiB: 10, FS: FilesystemExt4}
	if err := ValidateValue("cmd", "catalog", "image-create", ok); err != nil {
		t.Errorf("valid ImageCreate: %v", err)
	}
	// A zero required enum is sent as "" and must be caught before publishing.
	err := ValidateValue("evt", "catalog", "state-changed", StateChanged{ID: 1})
	if err == nil || !strings.Contains(err.Error(), "/to: is \"\"") {
		t.Errorf("zero state: %v", err)
	}
	// So is a zero phase of a progress event.
	one := int64(1)
	err = ValidateValue("evt", "converter", "progress", Progress{ImageID: &one})
	if err == nil || !strings.Contains(err.Error(), "/phase: \"\" does not match") {
		t.Errorf("zero phase: %v", err)
	}
	id := int64(0)
	if err := ValidateValue("evt", "catalog", "failed", Failure{Code: CodeConflict, ImageID: &id, Command: "slipway.cmd.catalog.image-delete", Error: "no"}); err != nil {
		t.Errorf("failed event for image 0: %v", err)
	}
	data, _ := json.Marshal(Failure{Code: CodeInternal, ImageID: &id, Command: "c", Error: "e"})
	if !strings.Contains(string(data), `"image_id":0`) {
		t.Errorf("image ID 0 was dropped: %s", data)
	}
	if err := ValidateValue("cmd", "catalog", "image-create", func() {}); err == nil || !strings.Contains(err.Error(), "marshal") {
		t.Errorf("unmarshalable value: %v", err)
	}
}

func TestConcurrentValidate(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			errs <- Validate("cmd", "catalog", "image-rename", []byte(`{"id":1,"name":"n"}`))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestIDs(t *testing.T) {
	id := ID("cmd", "catalog", "image-create")
	if id != "https://slipway.dev/schemas/cmd/catalog.image-create.json" {
		t.Errorf("ID = %s", id)
	}
	for _, m := range Messages() {
		k, s, n, err := ParseID(m.ID())
		if err != nil || k != m.Kind || s != m.Service || n != m.Name {
			t.Errorf("ParseID(%s) = %s %s %s %v", m.ID(), k, s, n, err)
		}
	}
	for _, bad := range []string{"", "https://slipway.dev/schemas/defs.json", "https://slipway.dev/schemas/api/catalog.list.json", "https://example.com/cmd/a.b.json"} {
		if _, _, _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted it", bad)
		}
	}
	if _, ok := Lookup("evt", "converter", "progress"); !ok {
		t.Error("Lookup(evt converter progress) failed")
	}
	if _, ok := Lookup("evt", "converter", "nope"); ok {
		t.Error("Lookup found a message that does not exist")
	}
	for _, k := range []string{KindQuery, KindReply} {
		id := ID(k, "catalog", "show")
		if kind, svc, name, err := ParseID(id); err != nil || kind != k || svc != "catalog" || name != "show" {
			t.Errorf("ParseID(%s) = %s %s %s %v", id, kind, svc, name, err)
		}
	}
}

func TestLookupQuery(t *testing.T) {
	q, err := LookupQuery("catalog", "show")
	if err != nil || q.Request.Kind != KindQuery || q.Reply.Kind != KindReply ||
		q.Request.Type != reflect.TypeFor[CatalogShowRequest]() || q.Reply.Type != reflect.TypeFor[Image]() {
		t.Fatalf("LookupQuery(catalog, show) = %+v, %v", q, err)
	}
	_, err = LookupQuery("catalog", "image-show")
	if !errors.Is(err, ErrUnknownMessage) || !strings.Contains(err.Error(), "catalog.image-show") ||
		!strings.Contains(err.Error(), "qry/catalog.image-show.json") {
		t.Errorf("unknown query: %v", err)
	}
	// A command is not a query.
	if _, err := LookupQuery("catalog", "image-create"); !errors.Is(err, ErrUnknownMessage) {
		t.Errorf("a command looked up as a query: %v", err)
	}
	seen := map[string]bool{}
	for _, q := range Queries() {
		seen[q.Service+"."+q.Endpoint] = true
		if q.Reply.Schema == nil || q.Request.Schema == nil {
			t.Errorf("query %s.%s lacks a schema", q.Service, q.Endpoint)
		}
	}
	for _, want := range []string{"catalog.list", "catalog.show", "crypto-luks.secret", "launcher.firecracker", "market-dockerhub.app-show"} {
		if !seen[want] {
			t.Errorf("Queries() lacks %s", want)
		}
	}
}

func TestFSHoldsTheTree(t *testing.T) {
	files := map[string]bool{}
	err := fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files[p] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"asyncapi.yaml", "defs.json", "errors.json", "cmd/catalog.image-create.json", "evt/converter.failed.json",
		"qry/catalog.show.json", "rpl/catalog.show.json"} {
		if !files[want] {
			t.Errorf("FS() lacks %s (has %v)", want, files)
		}
	}
	if len(files) != len(Messages())+3 {
		t.Errorf("FS() has %d files, want the %d message schemas + defs.json + errors.json + asyncapi.yaml", len(files), len(Messages()))
	}
}

func TestPeekObjectID(t *testing.T) {
	for in, want := range map[string]int64{`{"id": 7}`: 7, `{"id": 0, "name": "x"}`: 0} {
		if got, ok := PeekObjectID([]byte(in)); !ok || got != want {
			t.Errorf("PeekObjectID(%s) = %d, %v", in, got, ok)
		}
	}
	for _, in := range []string{`{}`, `{"id": -1}`, `{"id": "7"}`, `{"image_id": 7}`, `[7]`, `not json`, `{"id": null}`} {
		if got, ok := PeekObjectID([]byte(in)); ok {
			t.Errorf("PeekObjectID(%s) = %d, want none", in, got)
		}
	}
}

func TestAccessOfMatchesTheSchemas(t *testing.T) {
	for _, m := range Messages() {
		if m.Kind == KindCommand && AccessOf(m.Service, m.Name) != m.Access {
			t.Errorf("AccessOf(%s, %s) = %q, the schema says %q", m.Service, m.Name, AccessOf(m.Service, m.Name), m.Access)
		}
	}
	if AccessOf(ServiceCatalog, CommandCatalogImageDelete) != "manage" || AccessOf(ServiceCatalog, "image-explode") != "" {
		t.Error("AccessOf: image-delete needs manage, an unknown command nothing")
	}
}
