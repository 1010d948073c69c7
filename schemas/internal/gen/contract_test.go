package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// servicesDir holds the services whose READMEs carry generated tables.
const servicesDir = "../../../services"

// paintedEvent is an event schema without x-slipway metadata.
const paintedEvent = `{
  "$id": "https://slipway.dev/schemas/evt/thing.painted.json",
  "title": "ThingPainted",
  "description": "Painted.",
  "type": "object",
  "additionalProperties": false,
  "properties": {}
}`

// fixTree writes the x-slipway metadata of every message in tree.
func fixTree(t *testing.T, tree fstest.MapFS) {
	t.Helper()
	if _, err := Fix(tree, func(path string, data []byte) error {
		tree[path] = &fstest.MapFile{Data: data}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestGeneratedFilesAreCurrent fails, naming the file, when types_gen.go,
// asyncapi.yaml or a service README's subject table differs from what the
// schemas generate.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	out, err := Outputs(schemaDir, servicesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{OutputFile, AsyncAPIFile, "catalog/README.md", "launcher/README.md"} {
		found := false
		for path := range out {
			found = found || strings.HasSuffix(path, want)
		}
		if !found {
			t.Errorf("the generator does not write %s", want)
		}
	}
	for path, want := range out {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make generate (or go run ./internal/gen in schemas/)", path)
		}
	}
}

// TestEveryMessageDeclaresItsContract checks the real tree: every message
// schema has x-slipway metadata that agrees with its path.
func TestEveryMessageDeclaresItsContract(t *testing.T) {
	g, err := parse(os.DirFS(schemaDir))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, f := range g.reg {
		if !f.hasMeta {
			t.Errorf("%s: no %s", f.path, MetaKey)
		}
		kinds[f.meta.Kind]++
	}
	for _, k := range []string{"command", "event", "query", "reply"} {
		if kinds[k] == 0 {
			t.Errorf("no message of kind %s", k)
		}
	}
	if kinds["query"] != kinds["reply"] {
		t.Errorf("%d queries, %d replies", kinds["query"], kinds["reply"])
	}
}

func TestContractMetadataMustMatchThePath(t *testing.T) {
	meta := `  "x-slipway": {"kind": "command", "owner": "thing", "subject": "{prefix}.cmd.thing.paint.{sender}", "senders": ["users"]},` + "\n"
	for _, tc := range []struct{ name, to, want string }{
		{"missing", "", "cmd/thing.paint.json: x-slipway is missing"},
		{"wrong kind", strings.Replace(meta, `"command"`, `"event"`, 1), `x-slipway.kind is "event", want "command"`},
		{"wrong owner", strings.Replace(meta, `"owner": "thing"`, `"owner": "other"`, 1), `x-slipway.owner is "other", want "thing"`},
		{"wrong subject", strings.Replace(meta, "cmd.thing.paint.{sender}", "cmd.thing.draw", 1), `want "{prefix}.cmd.thing.paint.{sender}"`},
		{"unknown answer", strings.Replace(meta, `{sender}",`, `{sender}", "answers": ["painted"],`, 1), `there is no evt/thing.painted.json`},
		{"unknown member", strings.Replace(meta, `{sender}",`, `{sender}", "color": "red",`, 1), `unknown member "color"`},
		{"id_param on a command", strings.Replace(meta, `{sender}",`, `{sender}", "id_param": "id",`, 1), `x-slipway.id_param is "id", want ""`},
		{"no senders", strings.Replace(meta, `, "senders": ["users"]`, ``, 1), `x-slipway.senders is missing`},
		{"unknown sender", strings.Replace(meta, `["users"]`, `["users", "janitor"]`, 1), `x-slipway.senders names "janitor": neither`},
		{"sender twice", strings.Replace(meta, `["users"]`, `["users", "users"]`, 1), `x-slipway.senders names "users" twice`},
		{"unknown access", strings.Replace(meta, `["users"]`, `["users"], "access": "own"`, 1), `x-slipway.access "own": a command's level`},
	} {
		tree := validTree()
		tree["cmd/thing.paint.json"].Data = []byte(strings.Replace(string(tree["cmd/thing.paint.json"].Data), meta, tc.to, 1))
		_, err := Generate(tree)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "cmd/thing.paint.json") {
			t.Errorf("%s: err = %v, want it to name the file and say %q", tc.name, err, tc.want)
		}
	}
	// An event's {id} names one of asyncapi.yaml's parameters.
	tree := validTree()
	tree["evt/thing.painted.json"] = &fstest.MapFile{Data: []byte(strings.Replace(paintedEvent, `thing.painted.json",`,
		`thing.painted.json",`+"\n"+`  "x-slipway": {"kind": "event", "owner": "thing", "subject": "{prefix}.evt.thing.painted.{id}", "id_param": "colour"},`, 1))}
	if _, err := Generate(tree); err == nil || !strings.Contains(err.Error(), `evt/thing.painted.json: x-slipway.id_param "colour" is none of`) {
		t.Errorf("unknown id_param: err = %v", err)
	}
}

func TestFixDerivesMetadataFromThePath(t *testing.T) {
	tree := validTree()
	paint := tree["cmd/thing.paint.json"]
	paint.Data = []byte(strings.Replace(string(paint.Data), `"subject": "{prefix}.cmd.thing.paint.{sender}", "senders": ["users"]}`, `"subject": "stale", "answers": ["painted"]}`, 1))
	tree["evt/thing.painted.json"] = &fstest.MapFile{Data: []byte(paintedEvent)}
	tree["evt/thing.paint-failed.json"] = &fstest.MapFile{Data: []byte(strings.NewReplacer("painted", "paint-failed", "ThingPainted", "ThingPaintFailed").Replace(string(tree["evt/thing.painted.json"].Data)))}
	fixTree(t, tree)
	for path, want := range map[string]string{
		"cmd/thing.paint.json":        `  "x-slipway": {"kind": "command", "owner": "thing", "subject": "{prefix}.cmd.thing.paint.{sender}", "answers": ["painted"], "senders": ["admins"]},`,
		"evt/thing.painted.json":      `  "x-slipway": {"kind": "event", "owner": "thing", "subject": "{prefix}.evt.thing.painted.{id}", "id_param": "id"},`,
		"evt/thing.paint-failed.json": `  "x-slipway": {"kind": "event", "owner": "thing", "subject": "{prefix}.evt.thing.paint-failed.{id}", "id_param": "failedID"},`,
	} {
		lines := strings.Split(string(tree[path].Data), "\n")
		if len(lines) < 3 || lines[2] != want {
			t.Errorf("%s after -fix:\n%s\nwant its third line %s", path, tree[path].Data, want)
		}
	}
	src, err := Generate(tree)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), `= Cmd[ThingPaint]{Service: ServiceThing, Verb: CommandThingPaint, Answers: []string{EventThingPainted}}`) {
		t.Errorf("no call descriptor for thing.paint:\n%s", src)
	}
	again := validTree()
	for p, f := range tree {
		again[p] = &fstest.MapFile{Data: f.Data}
	}
	changed, err := Fix(again, func(string, []byte) error { return nil })
	if err != nil || len(changed) != 0 {
		t.Errorf("a second -fix changed %v (%v), want nothing", changed, err)
	}
}

func TestReadmeSection(t *testing.T) {
	tree := validTree()
	g, err := parse(tree)
	if err != nil {
		t.Fatal(err)
	}
	old := "# thing\n\n## Subjects\n\n" + ReadmeBegin + "\nstale\n" + ReadmeEnd + "\n\nProse stays.\n"
	got, err := g.Readme("thing", []byte(old))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# thing\n\n## Subjects\n\n" + ReadmeBegin + "\n",
		"| command | `slipway.cmd.thing.paint.<sender>` | `ThingPaint` | users |  | Paint a thing. |\n" + ReadmeEnd + "\n\nProse stays.\n",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("README:\n%s\nlacks %q", got, want)
		}
	}
	if strings.Contains(string(got), "stale") {
		t.Errorf("the old table survived:\n%s", got)
	}
	if _, err := g.Readme("thing", []byte("# thing\n")); err == nil || !strings.Contains(err.Error(), ReadmeBegin) {
		t.Errorf("README without markers: err = %v", err)
	}
}

func TestRunWritesEveryOutput(t *testing.T) {
	dir, services := t.TempDir(), t.TempDir()
	writeTree(t, dir, validTree())
	writeTree(t, services, fstest.MapFS{"thing/README.md": {Data: []byte(ReadmeBegin + ReadmeEnd + "\n")}})
	if err := run(dir, services, false); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(dir, AsyncAPIFile))
	if err != nil || !strings.Contains(string(doc), "address: slipway.cmd.thing.paint.{sender}\n") {
		t.Errorf("asyncapi.yaml: %v\n%s", err, doc)
	}
	readme, err := os.ReadFile(filepath.Join(services, "thing", "README.md"))
	if err != nil || !strings.Contains(string(readme), "`slipway.cmd.thing.paint.<sender>`") {
		t.Errorf("README.md: %v\n%s", err, readme)
	}
}
