package cli

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// servicesPrefix is the import path of every service module.
const servicesPrefix = "github.com/slipway/slipway/services/"

// TestCLIImportsNoService: the CLI depends on the contract (schemas) and
// pkg only. No Go file of the slipway tool — test files and files of every
// build tag included — imports a service package, except `slipway up`'s
// wiring (tools/slipway/up), the one place that starts services. The
// names and types the CLI needs are schemas' (generated from the schema
// files, or schemas/names.go).
func TestCLIImportsNoService(t *testing.T) {
	root := ".." // tools/slipway
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "up", "testdata":
				if path != root {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if strings.HasPrefix(p, servicesPrefix) {
				t.Errorf("%s imports %s: the CLI may use schemas and pkg only (take the name or type from schemas, or move the helper to pkg)", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk found the CLI's own files (this one among them).
	if checked < 10 {
		t.Fatalf("checked only %d Go files under %s", checked, root)
	}
}
