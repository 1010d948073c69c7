package render

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestHumanSize(t *testing.T) {
	const K, M, G = 1024, 1024 * 1024, 1024 * 1024 * 1024
	cases := []struct {
		in   int64
		want string
	}{
		{0, "0M"},
		{-5, "0M"},
		{512, "0.5K"},
		{512 * K, "512K"},
		{1024 * K, "1024K"},
		{1025 * K, "1M"},
		{10 * M, "10M"},
		{200 * M, "200M"},
		{512 * M, "512M"},
		{1 * G, "1024M"},
		{G + G/2, "1.5G"},
		{2 * G, "2G"},
		{2*G + 1, "2G"},
		{2200 * M, "2.1G"},
		{3 * 1024 * G, "3T"},
	}
	for _, c := range cases {
		if got := HumanSize(c.in); got != c.want {
			t.Errorf("HumanSize(%d) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestShortState(t *testing.T) {
	cases := map[string]string{
		"READY": "rdy", "USED": "used", "USED_PERS": "used", "DISABLED": "disa",
		"LOCKED": "lock", "LOCKED_USED": "lock", "LOCKED_USED_PERS": "lock",
		"ERROR": "err", "CLONE": "clon", "DELETE": "dele", "SOMETHING_NEW": "something_new",
	}
	for in, want := range cases {
		if got := ShortState(in); got != want {
			t.Errorf("ShortState(%q) = %q, want %q", in, got, want)
		}
	}
	types := map[string]string{"OS": "OS", "CDROM": "CD", "DATABLOCK": "DB", "KERNEL": "KL", "RAMDISK": "RD", "CONTEXT": "CX"}
	for in, want := range types {
		if got := ShortType(in); got != want {
			t.Errorf("ShortType(%q) = %q, want %q", in, got, want)
		}
	}
}

func sample() []Image {
	return []Image{
		{ID: 0, User: "oneadmin", Group: "oneadmin", Name: "ttylinux", Datastore: "default",
			Size: 200 << 20, Type: "OS", State: "READY"},
		{ID: 12, User: "alice", Group: "users", Name: "data disk", Datastore: "default",
			Size: 2 << 30, Type: "DATABLOCK", Persistent: true, State: "USED_PERS", RVMs: 1},
	}
}

func TestList(t *testing.T) {
	var b bytes.Buffer
	if err := List(&b, sample()); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID USER     GROUP    NAME      DATASTORE SIZE TYPE PER STAT RVMS\n" +
		" 0 oneadmin oneadmin ttylinux  default   200M OS    No rdy     0\n" +
		"12 alice    users    data disk default     2G DB   Yes used    1\n"
	if b.String() != want {
		t.Errorf("list:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestListEmptyHasHeader(t *testing.T) {
	var b bytes.Buffer
	if err := List(&b, nil); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "ID USER GROUP NAME DATASTORE SIZE TYPE PER STAT RVMS\n" {
		t.Errorf("empty list = %q", got)
	}
}

func TestShow(t *testing.T) {
	img := Image{
		ID: 3, Name: "ubuntu", User: "oneadmin", Group: "oneadmin", Permissions: "640", Datastore: "default",
		Type: "OS", State: "ERROR", Format: "qcow2", Size: 10 << 30,
		Source: "s3://slipway-default/images/3/disk.qcow2", Origin: "https://example.test/u.img",
		SHA256: "abc", Error: `fetch: 404 "not found"`, DevPrefix: "vd",
		Description: "Ubuntu \"noble\"", Attributes: map[string]string{"LUKS_SECRET": "s1", "A": `x\y`},
		CreatedAt: "2025-03-28T11:06:15.123Z",
	}
	var b bytes.Buffer
	if err := Show(&b, img, time.UTC); err != nil {
		t.Fatal(err)
	}
	want := `IMAGE 3 INFORMATION
ID             : 3
NAME           : ubuntu
USER           : oneadmin
GROUP          : oneadmin
LOCK           : None
DATASTORE      : default
TYPE           : OS
REGISTER TIME  : 03/28 11:06:15
PERSISTENT     : No
SOURCE         : s3://slipway-default/images/3/disk.qcow2
PATH           : https://example.test/u.img
FORMAT         : qcow2
SIZE           : 10G
STATE          : err
RUNNING_VMS    : 0
SHA256         : abc
ERROR          : fetch: 404 "not found"

PERMISSIONS
OWNER          : um-
GROUP          : u--
OTHER          : ---

IMAGE TEMPLATE
A="x\\y"
DESCRIPTION="Ubuntu \"noble\""
DEV_PREFIX="vd"
LUKS_SECRET="s1"
`
	if b.String() != want {
		t.Errorf("show:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestShowNamesTheVMs(t *testing.T) {
	img := Image{ID: 4, Name: "db", Type: "OS", State: "USED", RVMs: 2, VMs: []int64{5, 12}}
	var b bytes.Buffer
	if err := Show(&b, img, time.UTC); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "STATE          : used\nRUNNING_VMS    : 2\nVMS            : 5,12\n") {
		t.Errorf("show:\n%s", b.String())
	}
}

func TestJSONHasContractKeys(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, []Image{{ID: 1}}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range strings.Fields("id name user group datastore type state persistent format size sha256 source error rvms") {
		if _, ok := got[0][k]; !ok {
			t.Errorf("--json lacks key %q: %s", k, b.String())
		}
	}
}

func TestProgress(t *testing.T) {
	p := Progress{Phase: "convert", Done: 45, Total: 100, Rate: 120.5e6}
	if got, want := Bar(p, 20), "convert  [#########...........]  45%  120.5 MB/s"; got != want {
		t.Errorf("Bar = %q, want %q", got, want)
	}
	if got, want := Line(Progress{Phase: "fetch", Done: 3 << 20}), "fetch 3M"; got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
	if got := (Progress{Done: 200, Total: 100}).Percent(); got != 100 {
		t.Errorf("Percent over total = %d, want 100", got)
	}
}

func TestJSONListWritesAnEmptyArrayNotNull(t *testing.T) {
	for _, tc := range []struct {
		list []int
		want string
	}{{nil, "[]\n"}, {[]int{}, "[]\n"}, {[]int{1, 2}, "[\n  1,\n  2\n]\n"}} {
		var sb strings.Builder
		if err := JSONList(&sb, tc.list); err != nil {
			t.Fatal(err)
		}
		if sb.String() != tc.want {
			t.Errorf("JSONList(%#v) = %q, want %q", tc.list, sb.String(), tc.want)
		}
	}
}
