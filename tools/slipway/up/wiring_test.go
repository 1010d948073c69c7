package up

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/servicemain"
)

// funcName is the full name of a package-level function.
func funcName(f any) string {
	return runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
}

// mainWires reads a service binary's main.go and returns the function it
// hands servicemain.Main, as "<import path>.<name>".
func mainWires(t *testing.T, path string) (wire string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]string{}
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		name := filepath.Base(p)
		if im.Name != nil {
			name = im.Name.Name
		}
		imports[name] = p
	}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		if fn, ok := call.Fun.(*ast.SelectorExpr); !ok || fn.Sel.Name != "Main" || imports[identName(fn.X)] != "github.com/slipway/slipway/pkg/servicemain" {
			return true
		}
		if sel, ok := call.Args[1].(*ast.SelectorExpr); ok {
			wire = imports[identName(sel.X)] + "." + sel.Sel.Name
		}
		return false
	})
	if wire == "" {
		t.Fatalf("%s: no servicemain.Main(name, pkg.Wire) call", path)
	}
	return wire
}

func identName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// Every service binary and `up` wire a service with the same function,
// so they read the same variables: each services/<name>/cmd/<name> main
// hands servicemain.Main the Wire that `up` lists under that name.
func TestUpWiresEveryServiceAsItsBinaryDoes(t *testing.T) {
	mains, err := filepath.Glob("../../../services/*/cmd/*/main.go")
	if err != nil {
		t.Fatal(err)
	}
	wired := map[string]string{}
	for _, s := range services {
		wired[s.name] = funcName(s.wire)
	}
	seen := 0
	for _, m := range mains {
		svc := filepath.Base(filepath.Dir(m))
		if filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(m)))) != svc {
			continue // a helper binary (a guest init), not the service
		}
		seen++
		want := mainWires(t, m)
		if got, ok := wired[svc]; !ok {
			t.Errorf("`up` does not run %s (its binary: %s)", svc, m)
		} else if got != want {
			t.Errorf("%s: `up` wires it with %s, its binary with %s", svc, got, want)
		}
	}
	if seen != len(services) {
		t.Errorf("%d service binaries, %d services in `up`", seen, len(services))
	}
}

// A variable of a service's own that is wrong fails its wiring with its
// name, in its binary (no stack) and in `up` (a stack) alike: the stack
// replaces defaults, never what the environment says.
func TestWireRefusesABadVariableWithAndWithoutAStack(t *testing.T) {
	bad := map[string]string{ // one variable of each service's own
		"catalog":          "SLIPWAY_CATALOG_CONVERT_DEADLINE",
		"converter":        "SLIPWAY_CONVERTER_CONCURRENCY",
		"market-dockerhub": "SLIPWAY_MARKET_REFRESH",
		"market-lxc":       "SLIPWAY_MARKET_LXC_ENDPOINT",
		"builder":          "SLIPWAY_BUILDER_CONCURRENCY",
		"crypto-luks":      "SLIPWAY_LUKS_ITER_TIME",
		"kernel-registry":  "SLIPWAY_KERNEL_MAX_DELIVER",
		"launcher":         "SLIPWAY_LAUNCHER_SHUTDOWN_TIMEOUT",
	}
	if len(bad) != len(services) {
		t.Fatalf("%d variables for %d services", len(bad), len(services))
	}
	stack := servicemain.Stack{DataDir: t.TempDir(), User: "someone"}
	for _, s := range services {
		v, ok := bad[s.name]
		if !ok {
			t.Errorf("no variable to break for %s", s.name)
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			t.Setenv(v, "not-a-value")
			for _, st := range []servicemain.Stack{{}, stack} {
				svc, err := s.wire(servicemain.Deps{Stack: st})
				if err == nil || !strings.Contains(err.Error(), v) {
					t.Errorf("stack %+v: Wire = %v, %v; want an error naming %s", st, svc, err, v)
				}
			}
		})
	}
}
