package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// The markers around the generated subject table of a service README.
const (
	ReadmeBegin = "<!-- subjects:begin -->"
	ReadmeEnd   = "<!-- subjects:end -->"
)

// owners lists the services that own messages, sorted.
func (g *generator) owners() []string {
	var out []string
	for _, f := range g.reg {
		if !slices.Contains(out, f.service) {
			out = append(out, f.service)
		}
	}
	slices.Sort(out)
	return out
}

// readmeTable is the generated part of service's README: every command it
// consumes, event it publishes and query it answers, from the schemas.
func (g *generator) readmeTable(service string) string {
	var b strings.Builder
	b.WriteString("Generated from `schemas/` (`make generate`); the default prefix is `slipway`.\n\n")
	b.WriteString("| kind | subject | payload | who may send | a user needs | about |\n|---|---|---|---|---|---|\n")
	for _, f := range g.reg {
		if f.service != service || f.kind == "rpl" {
			continue
		}
		payload := "`" + g.regType[f] + "`"
		switch f.kind {
		case "cmd":
			if len(f.meta.Answers) > 0 {
				payload += " → `" + strings.Join(f.meta.Answers, "` or `") + "`"
			}
		case "qry":
			if r, ok := g.byID[IDBase+"rpl/"+f.message()+".json"]; ok {
				payload += " → `" + g.regType[r] + "`"
			}
		}
		subject := strings.ReplaceAll(f.meta.Subject, "{prefix}", "slipway")
		subject = strings.ReplaceAll(subject, "{id}", "<"+f.meta.IDParam+">")
		subject = strings.ReplaceAll(subject, "{sender}", "<sender>")
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s | %s |\n", f.meta.Kind, subject, payload, strings.Join(f.meta.Senders, ", "), f.meta.Access, cell(f.root.str("description")))
	}
	return b.String()
}

// cell makes text fit one Markdown table cell.
func cell(text string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(text), " "), "|", `\|`)
}

// Readme returns readme with the text between its subject markers replaced by
// service's generated table. It fails when the markers are missing.
func (g *generator) Readme(service string, readme []byte) ([]byte, error) {
	before, rest, ok := bytes.Cut(readme, []byte(ReadmeBegin))
	_, after, ok2 := bytes.Cut(rest, []byte(ReadmeEnd))
	if !ok || !ok2 {
		return nil, fmt.Errorf("services/%s/README.md: no %s … %s section for the generated subject table", service, ReadmeBegin, ReadmeEnd)
	}
	var out bytes.Buffer
	out.Write(before)
	out.WriteString(ReadmeBegin + "\n")
	out.WriteString(g.readmeTable(service))
	out.WriteString(ReadmeEnd)
	out.Write(after)
	return out.Bytes(), nil
}

// readmes returns every owner's README (read from services, a tree of
// <service>/README.md) with its table regenerated, by service.
func (g *generator) readmes(services fs.FS) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, s := range g.owners() {
		old, err := fs.ReadFile(services, s+"/README.md")
		if err != nil {
			return nil, err
		}
		if out[s], err = g.Readme(s, old); err != nil {
			return nil, err
		}
	}
	return out, nil
}
