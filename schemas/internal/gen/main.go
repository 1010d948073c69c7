// Command gen generates, from the JSON Schemas and their x-slipway metadata,
// everything that repeats the contract: schemas/types_gen.go (one Go type per
// message, named string types for enums, the contract's names, subject
// builders and call descriptors, a registry from each schema to its type),
// schemas/asyncapi.yaml, and the subject table of each service's README.
// Run it from the schemas directory (go generate and `make generate` do):
// `go run ./internal/gen`; `-fix` first writes every message's x-slipway
// metadata from its file name.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// OutputFile is the generated Go file, relative to the schema directory.
const OutputFile = "types_gen.go"

func main() {
	dir := flag.String("dir", ".", "schema directory (holds defs.json, cmd/, evt/, qry/, rpl/)")
	services := flag.String("services", "../services", "directory of the services whose README.md get the subject tables (empty: none)")
	fix := flag.Bool("fix", false, "first rewrite each message schema's x-slipway metadata from its path")
	flag.Parse()
	if err := run(*dir, *services, *fix); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir, services string, fix bool) error {
	if fix {
		changed, err := Fix(os.DirFS(dir), func(path string, data []byte) error {
			return os.WriteFile(filepath.Join(dir, path), data, 0o644)
		})
		if err != nil {
			return err
		}
		for _, c := range changed {
			fmt.Fprintln(os.Stderr, "gen: fixed", c)
		}
	}
	out, err := Outputs(dir, services)
	if err != nil {
		return err
	}
	for path, src := range out {
		if err := writeIfChanged(path, src); err != nil {
			return err
		}
	}
	return nil
}

// Outputs generates every file from the schemas in dir, by path:
// types_gen.go, asyncapi.yaml and, unless services is empty, each owner
// service's services/<service>/README.md.
func Outputs(dir, services string) (map[string][]byte, error) {
	g, err := parse(os.DirFS(dir))
	if err != nil {
		return nil, err
	}
	src, err := g.goSource()
	if err != nil {
		return nil, err
	}
	doc, err := g.asyncAPI()
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{filepath.Join(dir, OutputFile): src, filepath.Join(dir, AsyncAPIFile): doc}
	codes, table, err := GenerateErrors(os.DirFS(dir))
	switch {
	case err == nil:
		out[filepath.Join(dir, ErrorsOutput)], out[filepath.Join(dir, ErrorsDoc)] = codes, table
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if services == "" {
		return out, nil
	}
	readmes, err := g.readmes(os.DirFS(services))
	if err != nil {
		return nil, err
	}
	for s, data := range readmes {
		out[filepath.Join(services, s, "README.md")] = data
	}
	return out, nil
}

// writeIfChanged leaves an unchanged file alone, so builds stay cached.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(path, data, 0o644)
}
