// Command gen generates schemas/types_gen.go from the JSON Schemas: one Go type per
// message, named string types for enums, and a registry from each schema to its
// type. Run it from the schemas directory (go generate does): `go run ./internal/gen`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// OutputFile is the generated file, relative to the schema directory.
const OutputFile = "types_gen.go"

func main() {
	dir := flag.String("dir", ".", "schema directory (holds defs.json, cmd/, evt/, qry/, rpl/)")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if err := runErrors(dir); err != nil {
		return err
	}
	src, err := Generate(os.DirFS(dir))
	if err != nil {
		return err
	}
	out := filepath.Join(dir, OutputFile)
	if old, err := os.ReadFile(out); err == nil && bytes.Equal(old, src) {
		return nil // leave the mtime alone so builds stay cached
	}
	return os.WriteFile(out, src, 0o644)
}
