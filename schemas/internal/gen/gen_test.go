package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// schemaDir is the module root, where the schemas and types_gen.go live.
const schemaDir = "../.."

func TestGeneratedCodeIsCurrent(t *testing.T) {
	want, err := Generate(os.DirFS(schemaDir))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(schemaDir, OutputFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run make gen (or go generate ./... in schemas/)", OutputFile)
	}
	if !bytes.HasPrefix(got, []byte(Header+"\n")) {
		t.Errorf("%s does not start with %q", OutputFile, Header)
	}
}

func TestRunWritesFile(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, validTree())
	if err := run(dir, "", false); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, OutputFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"type Color string",
		`ColorDarkRed Color = "DARK_RED"`,
		"type ThingPaint struct",
		"\tThingID int64 `json:\"thing_id\"`",
		"\tColor Color `json:\"color,omitempty\"`",
		"\tLabels map[string]string `json:\"labels,omitempty\"`",
		"\tTags []string `json:\"tags,omitempty\"`",
		"\tRef *int64 `json:\"ref,omitempty\"`",
		"// Which thing to paint.",
		`{kind: "cmd", service: "thing", name: "paint", file: "cmd/thing.paint.json", typ: reflect.TypeFor[ThingPaint](), senders: []string{"users"}}`,
		`ServiceThing = "thing"`,
		`CommandThingPaint = "paint"`,
	} {
		if !strings.Contains(string(src), want) {
			t.Errorf("generated code lacks %q:\n%s", want, src)
		}
	}
	// Fields follow schema order, not alphabetical order.
	if strings.Index(string(src), "ThingID") > strings.Index(string(src), "Color Color") {
		t.Error("fields are not in schema property order")
	}
}

func TestGenerateRejectsShapesItCannotType(t *testing.T) {
	tests := []struct{ name, from, to, want string }{
		{"open object", `"additionalProperties": false,`, ``, "additionalProperties must be false"},
		{"inline enum", `"$ref": "../defs.json#/$defs/Color"`, `"type": "string", "enum": ["a"]`, "inline enum"},
		{"shape-changing anyOf", `"anyOf": [{"required": ["color"]}]`, `"anyOf": [{"properties": {"x": {}}}]`, "may only use required"},
		{"unknown required", `"required": ["thing_id"]`, `"required": ["thingid"]`, `required property "thingid"`},
		{"bad title", `"title": "ThingPaint"`, `"title": "thing paint"`, "not an exported Go type name"},
		{"wrong $id", `cmd/thing.paint.json"`, `cmd/other.json"`, "$id is"},
		{"dangling $ref", `#/$defs/Color"`, `#/$defs/Colour"`, "has no $defs/Colour"},
		{"nested inline object", `"labels": {"type": "object", "additionalProperties": {"type": "string"}}`, `"labels": {"type": "object", "properties": {}}`, "inline object"},
	}
	for _, tc := range tests {
		tree := validTree()
		paint := string(tree["cmd/thing.paint.json"].Data)
		if !strings.Contains(paint, tc.from) {
			t.Fatalf("%s: fixture lacks %q", tc.name, tc.from)
		}
		tree["cmd/thing.paint.json"].Data = []byte(strings.Replace(paint, tc.from, tc.to, 1))
		_, err := Generate(tree)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}

func TestGenerateQueries(t *testing.T) {
	tree := validTree()
	tree["defs.json"].Data = []byte(strings.Replace(string(tree["defs.json"].Data), `"ThingID": {`,
		`"Thing": {"title": "Thing", "description": "A thing.", "type": "object", "additionalProperties": false, "required": ["id"], "properties": {"id": {"$ref": "#/$defs/ThingID"}}},
    "ThingID": {`, 1))
	tree["qry/thing.list.json"] = &fstest.MapFile{Data: []byte(`{
  "$id": "https://slipway.dev/schemas/qry/thing.list.json",
  "title": "ThingListRequest",
  "description": "List things.",
  "type": "object",
  "additionalProperties": false,
  "properties": {}
}`)}
	tree["rpl/thing.list.json"] = &fstest.MapFile{Data: []byte(`{
  "$id": "https://slipway.dev/schemas/rpl/thing.list.json",
  "title": "ThingListReply",
  "description": "The things.",
  "type": "array",
  "items": {"$ref": "../defs.json#/$defs/Thing"}
}`)}
	tree["rpl/thing.show.json"] = &fstest.MapFile{Data: []byte(`{
  "$id": "https://slipway.dev/schemas/rpl/thing.show.json",
  "title": "Thing",
  "description": "The thing.",
  "$ref": "../defs.json#/$defs/Thing"
}`)}
	fixTree(t, tree)
	src, err := Generate(tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"type ThingListRequest struct {\n}",
		"// ThingListReply is the payload of the reply to query thing.list",
		"type ThingListReply []Thing\n",
		"It is the payload of the reply to query thing.show.",
		`{kind: "qry", service: "thing", name: "list", file: "qry/thing.list.json", typ: reflect.TypeFor[ThingListRequest](), senders: []string{"admins"}}`,
		`{kind: "rpl", service: "thing", name: "list", file: "rpl/thing.list.json", typ: reflect.TypeFor[ThingListReply]()}`,
		`{kind: "rpl", service: "thing", name: "show", file: "rpl/thing.show.json", typ: reflect.TypeFor[Thing]()}`,
	} {
		if !strings.Contains(string(src), want) {
			t.Errorf("generated code lacks %q:\n%s", want, src)
		}
	}
	// Only a reply may be an array.
	asCmd := validTree()
	asCmd["cmd/thing.list.json"] = &fstest.MapFile{Data: []byte(strings.ReplaceAll(string(tree["rpl/thing.list.json"].Data), "rpl/", "cmd/"))}
	asCmd["defs.json"] = tree["defs.json"]
	fixTree(t, asCmd)
	if _, err := Generate(asCmd); err == nil || !strings.Contains(err.Error(), "only a query reply may be an array") {
		t.Errorf("array command: err = %v", err)
	}
	// An array payload needs items, and takes no object keywords.
	for from, wantErr := range map[string]string{
		`"items": {"$ref": "../defs.json#/$defs/Thing"}`: "array without items",
		`"type": "array",`: "an array payload cannot have properties",
	} {
		bad := validTree()
		bad["rpl/thing.list.json"] = &fstest.MapFile{Data: tree["rpl/thing.list.json"].Data}
		data := string(bad["rpl/thing.list.json"].Data)
		switch {
		case strings.HasPrefix(from, `"items"`):
			data = strings.Replace(data, `,
  "items": {"$ref": "../defs.json#/$defs/Thing"}`, "", 1)
		default:
			data = strings.Replace(data, from, from+` "properties": {},`, 1)
		}
		bad["rpl/thing.list.json"].Data = []byte(strings.Replace(data, "#/$defs/Thing", "#/$defs/Color", 1))
		if _, err := Generate(bad); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err = %v, want %q", wantErr, err, wantErr)
		}
	}
}

func TestGoName(t *testing.T) {
	for in, want := range map[string]string{
		"image_id": "ImageID", "size_mib": "SizeMiB", "sha256": "SHA256", "OS": "OS",
		"LOCKED_USED_PERS": "LockedUsedPers", "qcow2": "Qcow2", "create-blank": "CreateBlank",
		"vhdx": "VHDX", "dev_prefix": "DevPrefix", "rvms": "RVMs",
	} {
		if got := goName(in); got != want {
			t.Errorf("goName(%q) = %q, want %q", in, got, want)
		}
	}
}

func validTree() fstest.MapFS {
	return fstest.MapFS{
		"defs.json": {Data: []byte(`{
  "$id": "https://slipway.dev/schemas/defs.json",
  "$defs": {
    "Color": {"description": "A colour.", "type": "string", "enum": ["red", "DARK_RED"]},
    "ThingID": {"description": "Thing ID.", "type": "integer", "minimum": 0}
  }
}`)},
		"cmd/thing.paint.json": {Data: []byte(`{
  "$id": "https://slipway.dev/schemas/cmd/thing.paint.json",
  "x-slipway": {"kind": "command", "owner": "thing", "subject": "{prefix}.cmd.thing.paint.{sender}", "senders": ["users"]},
  "title": "ThingPaint",
  "description": "Paint a thing.",
  "type": "object",
  "additionalProperties": false,
  "required": ["thing_id"],
  "anyOf": [{"required": ["color"]}],
  "properties": {
    "thing_id": {"$ref": "../defs.json#/$defs/ThingID", "description": "Which thing to paint."},
    "color": {"$ref": "../defs.json#/$defs/Color"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "tags": {"type": "array", "items": {"type": "string"}},
    "ref": {"type": "integer", "x-go-pointer": true}
  }
}`)},
	}
}

func writeTree(t *testing.T, dir string, tree fstest.MapFS) {
	t.Helper()
	for name, f := range tree {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
