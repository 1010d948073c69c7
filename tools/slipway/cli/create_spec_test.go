package cli

import (
	"strings"
	"testing"

	"github.com/slipway/slipway/schemas"
)

func changedSet(names ...string) func(string) bool {
	return func(n string) bool {
		for _, x := range names {
			if x == n {
				return true
			}
		}
		return false
	}
}

func TestBuildCreateFlagsOverrideTemplate(t *testing.T) {
	tmpl := map[string]string{
		"NAME": "from-template", "PATH": "https://example.test/a.img", "DESCRIPTION": "tmpl desc",
		"TYPE": "cdrom", "PERSISTENT": "YES", "DEV_PREFIX": "hd", "TARGET": "hda", "FORMAT": "QCOW2",
		"LUKS_SECRET": "abc", "OS_FLAVOUR": "alpine",
	}
	f := createFlags{name: "from-flag", datastore: "default", devPrefix: "vd", typ: "OS",
		attrs: []string{"os_flavour=debian", "extra=1"}}
	c, err := buildCreate(tmpl, f, changedSet("name", "prefix", "type"))
	if err != nil {
		t.Fatal(err)
	}
	want := schemas.ImageCreate{
		Name: "from-flag", Datastore: "default", Description: "tmpl desc", Type: "OS",
		Persistent: true, DevPrefix: "vd", Target: "hda", Path: "https://example.test/a.img",
		Format:     "qcow2",
		Attributes: map[string]string{"LUKS_SECRET": "abc", "OS_FLAVOUR": "debian", "EXTRA": "1"},
	}
	if c.Name != want.Name || c.Datastore != want.Datastore || c.Description != want.Description ||
		c.Type != want.Type || c.Persistent != want.Persistent || c.DevPrefix != want.DevPrefix ||
		c.Target != want.Target || c.Path != want.Path || c.Format != want.Format {
		t.Errorf("merged = %+v\nwant     %+v", c, want)
	}
	if len(c.Attributes) != len(want.Attributes) {
		t.Errorf("attributes = %v, want %v", c.Attributes, want.Attributes)
	}
	for k, v := range want.Attributes {
		if c.Attributes[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, c.Attributes[k], v)
		}
	}
}

func TestBuildCreatePersistentFlagBeatsTemplate(t *testing.T) {
	tmpl := map[string]string{"NAME": "x", "SIZE": "64", "PERSISTENT": "yes", "TYPE": "DATABLOCK", "FS": "EXT4"}
	c, err := buildCreate(tmpl, createFlags{datastore: "default", persistent: false}, changedSet("persistent"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Persistent || c.SizeMiB != 64 || c.FS != "ext4" || c.Type != "DATABLOCK" {
		t.Errorf("got %+v", c)
	}
}

func TestBuildCreateFileTypesGoToFilesDatastore(t *testing.T) {
	c, err := buildCreate(nil, createFlags{name: "k", typ: "KERNEL", path: "s3://b/k", datastore: "default"}, changedSet("name", "type", "path"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Datastore != "files" {
		t.Errorf("KERNEL datastore = %q, want files", c.Datastore)
	}
	c, _ = buildCreate(nil, createFlags{name: "k", typ: "KERNEL", path: "s3://b/k", datastore: "default"}, changedSet("name", "type", "path", "datastore"))
	if c.Datastore != "default" {
		t.Errorf("explicit --datastore overridden: %q", c.Datastore)
	}
}

func TestBuildCreateRefusals(t *testing.T) {
	cases := []struct {
		name string
		tmpl map[string]string
		f    createFlags
		want string
	}{
		{"no name", nil, createFlags{path: "x.img"}, "a name is required"},
		{"no data", nil, createFlags{name: "a"}, "give --path"},
		{"path and size", nil, createFlags{name: "a", path: "x", sizeMiB: 5}, "not both"},
		{"bad type", nil, createFlags{name: "a", sizeMiB: 1, typ: "FLOPPY"}, `type "FLOPPY"`},
		{"bad format", nil, createFlags{name: "a", path: "x", format: "qed"}, `format "qed"`},
		{"bad compression", nil, createFlags{name: "a", path: "x", compression: "lz4"}, "--compression"},
		{"bad checksum", nil, createFlags{name: "a", path: "x", checksums: []string{"md5:abc"}}, `--checksum: checksum "md5:abc": want "md5:<32 hex digits>"`},
		{"unknown algorithm", nil, createFlags{name: "a", path: "x", checksums: []string{"crc:abc"}}, "want md5:<32>, sha256:<64> or sha512:<128 hex digits>"},
		{"two sha256", nil, createFlags{name: "a", path: "x", checksums: []string{"sha256:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("b", 64)}}, "two sha256 checksums given"},
		{"rootfs without path", nil, createFlags{name: "a", rootfs: true, sizeMiB: 64}, "--rootfs needs --path"},
		{"ftp scheme", nil, createFlags{name: "a", path: "ftp://host/x.img"}, `scheme "ftp" is not supported`},
		{"s3 without key", nil, createFlags{name: "a", path: "s3://bucket"}, "want s3://bucket/key"},
		{"bad template size", map[string]string{"NAME": "a", "SIZE": "big"}, createFlags{}, "template SIZE"},
		{"bad template persistent", map[string]string{"NAME": "a", "PATH": "x", "PERSISTENT": "maybe"}, createFlags{}, "PERSISTENT"},
		{"bad attr", nil, createFlags{name: "a", path: "x", attrs: []string{"novalue"}}, "want KEY=VALUE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := buildCreate(c.tmpl, c.f, func(string) bool { return false })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestChecksumNormalized(t *testing.T) {
	hex := strings.Repeat("AB", 32)
	c, err := buildCreate(nil, createFlags{name: "a", path: "x", checksums: []string{"SHA256:" + hex, "md5:" + hex[:32]}}, func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Checksums) != 2 || c.Checksums[0] != "sha256:"+strings.ToLower(hex) || c.Checksums[1] != "md5:"+strings.ToLower(hex[:32]) ||
		checksumSHA256(c) != c.Checksums[0] {
		t.Errorf("checksums = %q", c.Checksums)
	}
}

// TestBuildCreateRootfs: --rootfs takes a path and a filesystem size
// together, with its filesystem.
func TestBuildCreateRootfs(t *testing.T) {
	c, err := buildCreate(nil, createFlags{name: "deb", path: "https://h/rootfs.tar.xz", rootfs: true, sizeMiB: 2048, fs: "EXT4", format: "qcow2"},
		func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if !c.Rootfs || c.SizeMiB != 2048 || c.FS != "ext4" || c.Format != "qcow2" || c.Path != "https://h/rootfs.tar.xz" {
		t.Errorf("got %+v", c)
	}
}

// TestBuildCreateOVA: --ova is the path of an OVA; a path ending in .ova
// is detected as one; an OVA goes with neither --rootfs nor --size.
func TestBuildCreateOVA(t *testing.T) {
	never := func(string) bool { return false }
	for _, f := range []createFlags{{name: "web", ova: "./web.ova"}, {name: "web", path: "./web.ova"}, {name: "web", path: "https://h/x/WEB.OVA"},
		{name: "web", ova: "s3://b/k", path: "s3://b/k"}, {name: "web", path: "https://h/x/web.ovf?sig=1"}, {name: "web", path: "s3://b/dir/web.ovf"}} {
		c, err := buildCreate(nil, f, never)
		if err != nil || !c.Ova || c.Path == "" {
			t.Errorf("%+v: got %+v, %v", f, c, err)
		}
	}
	if c, err := buildCreate(nil, createFlags{name: "x", path: "./disk.vmdk"}, never); err != nil || c.Ova {
		t.Errorf("a .vmdk path was taken for an OVA: %+v %v", c, err)
	}
	for _, tc := range []struct {
		f    createFlags
		want string
	}{
		{createFlags{name: "a", ova: "a.ova", path: "b.ova"}, "give --ova or --path, not both"},
		{createFlags{name: "a", ova: "a.ova", sizeMiB: 64}, "does not go with --rootfs, --size"},
		{createFlags{name: "a", ova: "a.ova", rootfs: true}, "does not go with --rootfs"},
		{createFlags{name: "a", path: "./web.ovf"}, "a local .ovf: pack it with its files as an OVA"},
	} {
		if _, err := buildCreate(nil, tc.f, never); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.f, err, tc.want)
		}
	}
}

func TestClassifyPath(t *testing.T) {
	cases := map[string]pathKind{
		"-": pathStdin, "disk.qcow2": pathLocal, "./a:b.img": pathLocal, "/tmp/x": pathLocal,
		"http://h/x": pathURL, "HTTPS://h/x": pathURL, "s3://bucket/key/x": pathURL,
		"docker://alpine": pathURL, "docker://127.0.0.1:5000/team/app?tag=1&size=512&format=qcow2": pathURL,
	}
	for p, want := range cases {
		got, err := classifyPath(p)
		if err != nil || got != want {
			t.Errorf("classifyPath(%q) = %v, %v; want %v", p, got, err, want)
		}
	}
	for _, p := range []string{"file:///etc/passwd", "docker://", "docker://alpine?filesystem=btrfs", "docker://alpine?size=0", "https://", "s3:///key"} {
		if _, err := classifyPath(p); err == nil {
			t.Errorf("classifyPath(%q) accepted", p)
		}
	}
}
