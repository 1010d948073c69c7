package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/format"
	"io/fs"
	"regexp"
	"strings"
)

// The error-code catalogue, in the style of nats-server's errors.json: one
// file lists every code, and the Go constants, the lookup and the docs table
// are generated from it.
const (
	// ErrorsFile is the catalogue, relative to the schema directory.
	ErrorsFile = "errors.json"
	// ErrorsOutput is the generated Go file.
	ErrorsOutput = "errors_gen.go"
	// ErrorsDoc is the generated table for people.
	ErrorsDoc = "errors.md"
)

// errorCode is one entry of the catalogue: a const branch of
// $defs/ErrorCode's oneOf.
type errorCode struct {
	Code        string `json:"const"`
	Description string `json:"description"`
	Retryable   *bool  `json:"x-retryable"`
	GoName      string `json:"x-go-name"` // when goName would spell it badly
}

var codeRe = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// readErrorCodes reads and checks the catalogue.
func readErrorCodes(fsys fs.FS) ([]errorCode, error) {
	data, err := fs.ReadFile(fsys, ErrorsFile)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Defs struct {
			ErrorCode struct {
				Type  string      `json:"type"`
				OneOf []errorCode `json:"oneOf"`
			} `json:"ErrorCode"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", ErrorsFile, err)
	}
	codes := doc.Defs.ErrorCode.OneOf
	if doc.Defs.ErrorCode.Type != "string" || len(codes) == 0 {
		return nil, fmt.Errorf("%s: $defs/ErrorCode must be a string with a oneOf of const codes", ErrorsFile)
	}
	seen := map[string]bool{}
	for i, c := range codes {
		switch {
		case !codeRe.MatchString(c.Code):
			return nil, fmt.Errorf("%s: code %d %q: want lower-case words joined by '-'", ErrorsFile, i, c.Code)
		case seen[c.Code]:
			return nil, fmt.Errorf("%s: code %q listed twice", ErrorsFile, c.Code)
		case c.Description == "" || c.Retryable == nil:
			return nil, fmt.Errorf("%s: code %q needs a description and x-retryable", ErrorsFile, c.Code)
		case c.GoName != "" && !identRe.MatchString(c.GoName):
			return nil, fmt.Errorf("%s: code %q: x-go-name %q is not an exported Go name", ErrorsFile, c.Code, c.GoName)
		}
		seen[c.Code] = true
		if c.GoName == "" {
			codes[i].GoName = goName(c.Code)
		}
	}
	return codes, nil
}

// GenerateErrors returns the gofmt-ed errors_gen.go and the errors.md table
// of the catalogue in fsys.
func GenerateErrors(fsys fs.FS) (goSrc, doc []byte, err error) {
	codes, err := readErrorCodes(fsys)
	if err != nil {
		return nil, nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n\npackage schemas\n\n", Header)
	b.WriteString("// Error codes, from errors.json: the code of every failed event.\nconst (\n")
	for _, c := range codes {
		writeComment(&b, "\t", "Code"+c.GoName+": "+c.Description)
		fmt.Fprintf(&b, "\tCode%s = %q\n", c.GoName, c.Code)
	}
	b.WriteString(")\n\n// errorCodes is the catalogue in file order.\nvar errorCodes = []ErrorCode{\n")
	for _, c := range codes {
		fmt.Fprintf(&b, "\t{Code: Code%s, Retryable: %t, Description: %q},\n", c.GoName, *c.Retryable, c.Description)
	}
	b.WriteString("}\n")
	goSrc, err = format.Source(b.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("gofmt generated code: %w\n%s", err, b.Bytes())
	}
	return goSrc, errorsDoc(codes), nil
}

func errorsDoc(codes []errorCode) []byte {
	var b bytes.Buffer
	b.WriteString("<!-- Generated from errors.json by schemas/internal/gen. DO NOT EDIT. -->\n\n")
	b.WriteString("# Error codes\n\n")
	b.WriteString("Every failed event (`slipway.evt.<service>.failed.<id>`, payload `Failure` in `defs.json`)\n")
	b.WriteString("carries one of these codes. Programs match the code, never the message. *Retryable* is the\n")
	b.WriteString("code's nature; the event's own `retryable` says whether this failure may pass on a retry.\n\n")
	b.WriteString("| code | Go | retryable | meaning |\n|---|---|---|---|\n")
	for _, c := range codes {
		fmt.Fprintf(&b, "| `%s` | `schemas.Code%s` | %s | %s |\n", c.Code, c.GoName, yesNo(*c.Retryable),
			strings.ReplaceAll(c.Description, "|", `\|`))
	}
	return b.Bytes()
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}
