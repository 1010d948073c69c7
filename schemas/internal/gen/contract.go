package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// MetaKey is the member of a message schema that places it on the bus: its
// kind, its owner and its subject pattern, and for a command the events that
// answer it, for an event what its last subject token names.
const MetaKey = "x-slipway"

// contract is a message's x-slipway metadata.
type contract struct {
	Kind    string   `json:"kind"`               // command, event, query or reply
	Owner   string   `json:"owner"`              // the service that consumes it, publishes it or answers it
	Subject string   `json:"subject"`            // its subject pattern: {prefix}; {sender} for a command or query, {id} for an event
	Answers []string `json:"answers,omitempty"`  // a command's answering events (bus.Call waits for them)
	IDParam string   `json:"id_param,omitempty"` // an event's {id}: a parameter of asyncapi.yaml
	Senders []string `json:"senders,omitempty"`  // who may send a command or ask a query (see Senders)
	Access  string   `json:"access,omitempty"`   // what a user needs on the object a command names (see accessLevels)
}

// accessLevels are what x-slipway "access" may say a user needs on the
// object a command names, OpenNebula's levels (package acl).
var accessLevels = []string{"use", "manage", "admin"}

// The principals a sender list may name besides a service: any authenticated
// user, or the administrators (OpenNebula's oneadmin group). Package identity
// turns the lists into each principal's NATS permissions.
const (
	SenderUsers  = "users"
	SenderAdmins = "admins"
)

// kindNames are the x-slipway kinds, by directory.
var kindNames = map[string]string{"cmd": "command", "evt": "event", "qry": "query", "rpl": "reply"}

// derived is the metadata a message's path dictates, keeping what only the
// schema can say (answers, id_param, senders) from have.
func derived(f *schemaFile, have contract) contract {
	c := contract{Kind: kindNames[f.kind], Owner: f.service}
	switch f.kind {
	case "cmd":
		c.Subject = "{prefix}.cmd." + f.service + "." + f.name + ".{sender}"
		c.Answers = have.Answers
		c.Senders = sendersOr(have.Senders)
		c.Access = have.Access
	case "evt":
		c.Subject = "{prefix}.evt." + f.service + "." + f.name + ".{id}"
		c.IDParam = have.IDParam
		if c.IDParam == "" {
			c.IDParam = defaultIDParam(f.name)
		}
	case "qry":
		c.Subject = "{prefix}.api." + f.service + "." + f.name + ".{sender}"
		c.Senders = sendersOr(have.Senders)
	case "rpl":
		c.Subject = "{inbox}" // the asker's reply inbox
	}
	return c
}

// sendersOr keeps the senders a command or query declares; a new one starts
// as the administrators' alone, the least it can grant, until its schema
// says more.
func sendersOr(have []string) []string {
	if len(have) == 0 {
		return []string{SenderAdmins}
	}
	return have
}

// defaultIDParam is what a new event's {id} names: a failure may come before
// any record exists (cmd-<stream seq>).
func defaultIDParam(event string) string {
	if strings.Contains(event, "failed") {
		return "failedID"
	}
	return "id"
}

// readContract decodes a schema's x-slipway member; ok is false when it has
// none.
func readContract(root *object) (c contract, ok bool, err error) {
	v, ok := root.get(MetaKey)
	if !ok {
		return c, false, nil
	}
	m, isObj := v.(*object)
	if !isObj {
		return c, true, fmt.Errorf("%s is not an object", MetaKey)
	}
	for _, k := range m.keys {
		switch k {
		case "kind", "owner", "subject", "id_param", "access":
			if _, isStr := m.vals[k].(string); !isStr {
				return c, true, fmt.Errorf("%s.%s is not a string", MetaKey, k)
			}
		case "answers", "senders":
			if arr, isArr := m.vals[k].([]any); !isArr || len(m.strings(k)) != len(arr) {
				return c, true, fmt.Errorf("%s.%s is not a list of names", MetaKey, k)
			}
		default:
			return c, true, fmt.Errorf("%s has an unknown member %q", MetaKey, k)
		}
	}
	c = contract{Kind: m.str("kind"), Owner: m.str("owner"), Subject: m.str("subject"),
		Answers: m.strings("answers"), IDParam: m.str("id_param"), Senders: m.strings("senders"), Access: m.str("access")}
	return c, true, nil
}

// checkContracts checks every message's metadata against its path and the
// rest of the tree, naming each file that is wrong.
func (g *generator) checkContracts(msgFiles []*schemaFile) error {
	var problems []string
	var services []string
	for _, f := range msgFiles {
		if !slices.Contains(services, f.service) {
			services = append(services, f.service)
		}
	}
	slices.Sort(services)
	for _, f := range msgFiles {
		if err := g.checkContract(f, services); err != nil {
			problems = append(problems, f.path+": "+err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s metadata (run `go run ./internal/gen -fix` in schemas/ to derive it from the file names):\n\t%s",
			MetaKey, strings.Join(problems, "\n\t"))
	}
	return nil
}

func (g *generator) checkContract(f *schemaFile, services []string) error {
	if f.metaErr != nil {
		return f.metaErr
	}
	if !f.hasMeta {
		return fmt.Errorf("%s is missing", MetaKey)
	}
	c, want := f.meta, derived(f, f.meta)
	for _, p := range []struct{ what, got, want string }{
		{"kind", c.Kind, want.Kind}, {"owner", c.Owner, want.Owner},
		{"subject", c.Subject, want.Subject}, {"id_param", c.IDParam, want.IDParam},
	} {
		if p.got != p.want {
			return fmt.Errorf("%s.%s is %q, want %q", MetaKey, p.what, p.got, p.want)
		}
	}
	for _, a := range c.Answers {
		if _, ok := g.byID[IDBase+"evt/"+f.service+"."+a+".json"]; !ok {
			return fmt.Errorf("%s.answers names %q, but there is no evt/%s.%s.json", MetaKey, a, f.service, a)
		}
	}
	if err := checkSenders(f, services); err != nil {
		return err
	}
	if c.Access != "" && (f.kind != "cmd" || !slices.Contains(accessLevels, c.Access)) {
		return fmt.Errorf("%s.access %q: a command's level, one of %s", MetaKey, c.Access, strings.Join(accessLevels, ", "))
	}
	if f.kind == "evt" {
		if _, ok := idParams[c.IDParam]; !ok {
			return fmt.Errorf("%s.id_param %q is none of %s", MetaKey, c.IDParam, strings.Join(sortedKeys(idParams), ", "))
		}
	}
	return nil
}

// checkSenders checks that a command or a query names who may send it, each
// sender once, and that every sender is users, admins or one of services.
func checkSenders(f *schemaFile, services []string) error {
	senders := f.meta.Senders
	if f.kind != "cmd" && f.kind != "qry" {
		if len(senders) > 0 {
			return fmt.Errorf("%s.senders is for commands and queries, not a %s", MetaKey, kindNames[f.kind])
		}
		return nil
	}
	if len(senders) == 0 {
		return fmt.Errorf("%s.senders is missing: say who may send it (%q, %q or service names)", MetaKey, SenderUsers, SenderAdmins)
	}
	for i, s := range senders {
		if slices.Contains(senders[:i], s) {
			return fmt.Errorf("%s.senders names %q twice", MetaKey, s)
		}
		if s != SenderUsers && s != SenderAdmins && !slices.Contains(services, s) {
			return fmt.Errorf("%s.senders names %q: neither %q, %q nor a service (%s)", MetaKey, s, SenderUsers, SenderAdmins, strings.Join(services, ", "))
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// metaLine is the one line the metadata takes in a schema file.
func metaLine(c contract) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	line := bytes.TrimSpace(b.Bytes())
	// One space after each separator, as the schema files are written.
	line = bytes.ReplaceAll(line, []byte(`":`), []byte(`": `))
	line = bytes.ReplaceAll(line, []byte(`","`), []byte(`", "`))
	line = bytes.ReplaceAll(line, []byte(`],"`), []byte(`], "`))
	return append([]byte(`  "`+MetaKey+`": `), append(line, ',')...), nil
}

// Fix rewrites the x-slipway line of every message schema in dir from its
// path, keeping the answers and id_param it already declares, and returns
// the files it changed. The line goes right after "$id".
func Fix(fsys fs.FS, write func(path string, data []byte) error) ([]string, error) {
	var changed []string
	for _, pattern := range []string{"cmd/*.json", "evt/*.json", "qry/*.json", "rpl/*.json"} {
		names, err := fs.Glob(fsys, pattern)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			data, err := fs.ReadFile(fsys, name)
			if err != nil {
				return nil, err
			}
			out, err := fixFile(fsys, name)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if bytes.Equal(out, data) {
				continue
			}
			if err := write(name, out); err != nil {
				return nil, err
			}
			changed = append(changed, name)
		}
	}
	return changed, nil
}

func fixFile(fsys fs.FS, name string) ([]byte, error) {
	f, err := readSchema(fsys, name)
	if err != nil {
		return nil, err
	}
	if f.metaErr != nil {
		return nil, f.metaErr
	}
	line, err := metaLine(derived(f, f.meta))
	if err != nil {
		return nil, err
	}
	data, _ := fs.ReadFile(fsys, name)
	lines := bytes.SplitAfter(data, []byte("\n"))
	var out [][]byte
	placed, removed := false, false
	for _, l := range lines {
		if bytes.HasPrefix(l, []byte(`  "`+MetaKey+`":`)) {
			removed = true
			continue
		}
		out = append(out, l)
		if !placed && bytes.HasPrefix(l, []byte(`  "$id":`)) {
			out = append(out, append(slices.Clone(line), '\n'))
			placed = true
		}
	}
	if !placed {
		return nil, fmt.Errorf(`no line starts with '  "$id":' to put %s after`, MetaKey)
	}
	if f.hasMeta && !removed {
		return nil, fmt.Errorf(`%s spans several lines: write it on one line starting '  "%[1]s":'`, MetaKey)
	}
	return bytes.Join(out, nil), nil
}

// emitDescriptors declares a typed descriptor per message (schemas/contract.go
// defines the types): a command's payload and answering events
// (CmdCatalogImageCreate), an event's payload (EvtCatalogImageCreated), a
// query's request and reply (QryCatalogShow). Their methods build subjects.
func (g *generator) emitDescriptors(b *bytes.Buffer) {
	consts := map[string]string{"cmd": "Command", "evt": "Event", "qry": "Query"}
	b.WriteString("// Descriptors: each message's service, name and Go types; their methods build its subjects.\nvar (\n")
	for _, f := range g.reg {
		prefix, ok := consts[f.kind]
		if !ok {
			continue
		}
		svc, name := "Service"+goName(f.service), prefix+goName(f.service)+goName(f.name)
		desc := strings.ToUpper(f.kind[:1]) + f.kind[1:] + goName(f.service) + goName(f.name)
		switch f.kind {
		case "cmd":
			answers := "nil"
			if len(f.meta.Answers) > 0 {
				var names []string
				for _, a := range f.meta.Answers {
					names = append(names, "Event"+goName(f.service)+goName(a))
				}
				answers = "[]string{" + strings.Join(names, ", ") + "}"
			}
			fmt.Fprintf(b, "\t%s = Cmd[%s]{Service: %s, Verb: %s, Answers: %s}\n", desc, g.regType[f], svc, name, answers)
		case "evt":
			fmt.Fprintf(b, "\t%s = Evt[%s]{Service: %s, Name: %s}\n", desc, g.regType[f], svc, name)
		case "qry":
			reply := g.regType[g.byID[IDBase+"rpl/"+f.message()+".json"]]
			fmt.Fprintf(b, "\t%s = Qry[%s, %s]{Service: %s, Endpoint: %s}\n", desc, g.regType[f], reply, svc, name)
		}
	}
	b.WriteString(")\n\n")
}
