package catalog

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// layers puts each of the catalog's files in a layer, lowest first. A file
// may use what files of its own layer or of lower layers declare; a use of
// something declared in a higher layer is a back-reference. The README
// ("Layers") says what each layer is for.
var layers = []struct {
	name  string
	files []string
}{
	{"state and store", []string{"doc.go", "catalog.go", "state.go", "store.go", "dedup.go", "datastore.go",
		"config.go", "env.go", "events.go"}},
	{"workflow core", []string{"workflow.go", "progress.go", "failures.go", "access.go"}},
	{"new-image phases", []string{"newimage.go", "quota.go"}},
	{"saga declarations", []string{"importsaga.go", "dockersaga.go", "rootfssaga.go", "ovasaga.go", "luks.go", "slots.go", "clone.go", "snapshotsaga.go"}},
	{"command handlers", []string{"commands.go", "create.go", "use.go", "queries.go", "accounts.go", "revocation.go", "quotacmd.go", "permissions.go", "s3access.go", "datastorecmd.go", "lock.go", "stuck.go", "copylock.go", "browserupload.go", "stagedsweep.go"}},
	{"service wiring", []string{"service.go", "wire.go"}},
}

// maxBackReferences is the bound the layering must stay under.
const maxBackReferences = 6

// TestLayers counts the references between the catalog's files (an
// identifier resolving to a package-level func, type, var, const or
// method declared in another file; each pair of files and name counted
// once) and fails when lower layers use higher ones too often.
func TestLayers(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	layerOf := map[string]int{}
	for i, l := range layers {
		for _, f := range l.files {
			layerOf[f] = i
		}
	}
	files := map[string]*ast.File{}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		if _, ok := layerOf[n]; !ok {
			t.Errorf("%s is in no layer: add it to layers in layers_test.go and to the README", n)
			continue
		}
		src, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, n, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		files[n] = f
	}
	for f := range layerOf {
		if _, ok := files[f]; !ok {
			t.Errorf("layers lists %s, which does not exist", f)
		}
	}
	decl := declarations(files)
	type ref struct{ from, to, name string }
	seen := map[ref]bool{}
	var refs, back []ref
	for n, f := range files {
		imports := map[string]bool{}
		for _, im := range f.Imports {
			p := strings.Trim(im.Path.Value, `"`)
			name := p[strings.LastIndex(p, "/")+1:]
			if im.Name != nil {
				name = im.Name.Name
			}
			imports[name] = true
		}
		add := func(name string) {
			to, ok := decl[name]
			if !ok || to == n {
				return
			}
			r := ref{n, to, strings.TrimPrefix(name, ".")}
			if seen[r] {
				return
			}
			seen[r] = true
			refs = append(refs, r)
			if layerOf[n] < layerOf[to] {
				back = append(back, r)
			}
		}
		var visit func(node ast.Node) bool
		visit = func(node ast.Node) bool {
			switch x := node.(type) {
			case *ast.Ident:
				// The parser resolves names declared in the same file
				// (locals, parameters, this file's declarations); what
				// it leaves unresolved is another file's, a universe
				// name or an import.
				if x.Obj == nil {
					add(x.Name)
				}
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && id.Obj == nil && imports[id.Name] {
					return false // pkg.Name: another package's
				}
				// v.method: methods are resolved by name.
				add("." + x.Sel.Name)
				ast.Inspect(x.X, visit)
				return false
			}
			return true
		}
		ast.Inspect(f, visit)
	}
	sort.Slice(back, func(i, j int) bool {
		if back[i].from != back[j].from {
			return back[i].from < back[j].from
		}
		return back[i].name < back[j].name
	})
	pairs, backPairs := map[[2]string]bool{}, map[[2]string]bool{}
	for _, r := range refs {
		pairs[[2]string{r.from, r.to}] = true
	}
	for _, r := range back {
		backPairs[[2]string{r.from, r.to}] = true
	}
	t.Logf("%d references (file and name) between files, %d from a lower layer back up to a higher one; "+
		"%d pairs of files, %d of them upwards", len(refs), len(back), len(pairs), len(backPairs))
	for _, r := range back {
		t.Logf("  %s (%s) -> %s (%s): %s", r.from, layers[layerOf[r.from]].name, r.to, layers[layerOf[r.to]].name, r.name)
	}
	if len(back) >= maxBackReferences {
		t.Errorf("%d back-references, want fewer than %d", len(back), maxBackReferences)
	}
}

// declarations maps each package-level name to the file declaring it:
// funcs, types, vars and consts by name, methods by "." + name (method
// names are unique enough in one package; a clash is reported).
func declarations(files map[string]*ast.File) map[string]string {
	decl := map[string]string{}
	for n, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv != nil {
					decl["."+d.Name.Name] = n
				} else {
					decl[d.Name.Name] = n
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						decl[s.Name.Name] = n
					case *ast.ValueSpec:
						for _, id := range s.Names {
							decl[id.Name] = n
						}
					}
				}
			}
		}
	}
	return decl
}
