package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func TestErrorsGeneratedAreCurrent(t *testing.T) {
	goSrc, doc, err := GenerateErrors(os.DirFS(schemaDir))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{ErrorsOutput: goSrc, ErrorsDoc: doc} {
		got, err := os.ReadFile(filepath.Join(schemaDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make gen (or go generate ./... in schemas/)", name)
		}
	}
	for _, want := range []string{`CodeImageLocked = "image-locked"`, `CodeTLSCertificate = "tls-certificate"`,
		`{Code: CodeHostNotFound, Retryable: false,`} {
		if !bytes.Contains(goSrc, []byte(want)) {
			t.Errorf("generated code lacks %q", want)
		}
	}
	if !bytes.Contains(doc, []byte("| `image-locked` | `schemas.CodeImageLocked` | yes |")) {
		t.Errorf("the table lacks image-locked:\n%s", doc)
	}
}

func TestErrorsRejectsABadCatalogue(t *testing.T) {
	for name, tc := range map[string]struct{ codes, want string }{
		"duplicate":      {`{"const": "a", "description": "d", "x-retryable": true}, {"const": "a", "description": "d", "x-retryable": true}`, "listed twice"},
		"no retryable":   {`{"const": "a", "description": "d"}`, "x-retryable"},
		"bad code":       {`{"const": "Not_A_Code", "description": "d", "x-retryable": true}`, "lower-case"},
		"bad x-go-name":  {`{"const": "a", "description": "d", "x-retryable": true, "x-go-name": "lower"}`, "x-go-name"},
		"no description": {`{"const": "a", "x-retryable": false}`, "description"},
	} {
		fsys := fstest.MapFS{ErrorsFile: {Data: []byte(`{"$defs": {"ErrorCode": {"type": "string", "oneOf": [` + tc.codes + `]}}}`)}}
		if _, _, err := GenerateErrors(fsys); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
