package schemas

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// files holds the schema tree exactly as it is in the repository.
//
//go:embed defs.json errors.json cmd/*.json evt/*.json qry/*.json rpl/*.json asyncapi.yaml
var files embed.FS

// IDBase is the URL every schema $id starts with.
const IDBase = "https://slipway.dev/schemas/"

// Kinds of message. A query has two: its request (KindQuery) and its
// reply (KindReply), both named <service>.<endpoint>.
const (
	KindCommand = "cmd"
	KindEvent   = "evt"
	KindQuery   = "qry"
	KindReply   = "rpl"
)

// validKind reports whether kind is one of the four kinds.
func validKind(kind string) bool {
	switch kind {
	case KindCommand, KindEvent, KindQuery, KindReply:
		return true
	}
	return false
}

// registered is one entry of the generated registry.
type registered struct {
	kind, service, name, file string
	typ                       reflect.Type
	senders                   []string
	access                    string
}

// Message describes one command, event, query request or query reply schema
// and the Go type generated for it.
type Message struct {
	Kind    string // "cmd", "evt", "qry" or "rpl"
	Service string // e.g. "catalog"
	Name    string // e.g. "image-create"; a query's endpoint, e.g. "show"
	Title   string // the schema title: the Go type's name
	Schema  []byte // the schema document
	Type    reflect.Type
	// Senders says who may send a command or ask a query: SenderUsers (any
	// authenticated user), SenderAdmins (the oneadmin group) or service
	// names. Package identity grants exactly these; empty for events and
	// replies, which only their owner publishes.
	Senders []string
	// Access is what a user needs on the object a command names: "use",
	// "manage" or "admin" (OpenNebula's levels, package acl); "" for a
	// command that names none, and for services, which the schemas'
	// senders already bound.
	Access string
}

// The principals a Senders list names besides services.
const (
	SenderUsers  = "users"
	SenderAdmins = "admins"
)

// ID returns the $id of the message's schema.
func (m Message) ID() string { return ID(m.Kind, m.Service, m.Name) }

// FS returns the embedded schema tree: defs.json, errors.json, cmd/*.json, evt/*.json,
// qry/*.json, rpl/*.json and asyncapi.yaml.
func FS() fs.FS { return files }

// ID returns the schema $id (and ce-dataschema value) of a message, e.g.
// https://slipway.dev/schemas/cmd/catalog.image-create.json, or of a query's
// request or reply (https://slipway.dev/schemas/rpl/catalog.show.json). It
// does not check that the message exists.
func ID(kind, service, name string) string {
	return IDBase + kind + "/" + service + "." + name + ".json"
}

// ParseID splits a schema $id made by [ID] back into kind, service and name.
func ParseID(id string) (kind, service, name string, err error) {
	rest, ok := strings.CutPrefix(id, IDBase)
	if ok {
		rest, ok = strings.CutSuffix(rest, ".json")
	}
	if ok {
		kind, rest, ok = strings.Cut(rest, "/")
	}
	if ok {
		service, name, ok = strings.Cut(rest, ".")
	}
	if !ok || !validKind(kind) || service == "" || name == "" {
		return "", "", "", fmt.Errorf("schema id %q: want %s<cmd|evt|qry|rpl>/<service>.<name>.json", id, IDBase)
	}
	return kind, service, name, nil
}

// Messages lists every message schema with its Go type: commands, events,
// query requests, then query replies.
func Messages() []Message {
	out := make([]Message, 0, len(registry))
	for _, r := range registry {
		out = append(out, r.message())
	}
	return out
}

// Services lists every service that owns a message, sorted: the names no
// user may take.
func Services() []string { return slices.Clone(services()) }

// IsService reports whether name is a service of the contract: a sender
// trusted with what the server lets it send, and no user's name. Every
// command's check asks it, so the list is made once.
func IsService(name string) bool {
	_, ok := slices.BinarySearch(services(), name)
	return ok
}

var services = sync.OnceValue(func() []string {
	var out []string
	for _, r := range registry {
		if !slices.Contains(out, r.service) {
			out = append(out, r.service)
		}
	}
	slices.Sort(out)
	return out
})

// Lookup returns one message's description.
func Lookup(kind, service, name string) (Message, bool) {
	r := known()[[3]string{kind, service, name}]
	if r == nil {
		return Message{}, false
	}
	return r.message(), true
}

// Query is one query endpoint: the schemas of its request and of its reply.
type Query struct {
	Service, Endpoint string
	Request, Reply    Message
}

// LookupQuery returns the request and reply schemas of service's endpoint. It
// fails, matching [ErrUnknownMessage], unless both exist.
func LookupQuery(service, endpoint string) (Query, error) {
	q := Query{Service: service, Endpoint: endpoint}
	var okReq, okRep bool
	q.Request, okReq = Lookup(KindQuery, service, endpoint)
	q.Reply, okRep = Lookup(KindReply, service, endpoint)
	switch {
	case !okReq && !okRep:
		return q, fmt.Errorf("%w: query %s.%s has no request schema (qry/%[2]s.%[3]s.json) and no reply schema (rpl/%[2]s.%[3]s.json)", ErrUnknownMessage, service, endpoint)
	case !okReq:
		return q, fmt.Errorf("%w: query %s.%s has no request schema (qry/%[2]s.%[3]s.json)", ErrUnknownMessage, service, endpoint)
	case !okRep:
		return q, fmt.Errorf("%w: query %s.%s has no reply schema (rpl/%[2]s.%[3]s.json)", ErrUnknownMessage, service, endpoint)
	}
	return q, nil
}

// Queries lists every query endpoint with a request schema, in file order.
func Queries() []Query {
	var out []Query
	for _, r := range registry {
		if r.kind == KindQuery {
			q, _ := LookupQuery(r.service, r.name)
			out = append(out, q)
		}
	}
	return out
}

func (r registered) message() Message {
	data, err := files.ReadFile(r.file)
	if err != nil {
		// The generator and the embed pattern read the same tree.
		panic(fmt.Sprintf("schemas: %s is in the registry but not embedded: %v", r.file, err))
	}
	return Message{Kind: r.kind, Service: r.service, Name: r.name, Title: r.typ.Name(), Schema: data, Type: r.typ,
		Senders: slices.Clone(r.senders), Access: r.access}
}

// MaxErrorLen is the schemas' bound on an error message (the `maxLength`
// of every `error` field).
const MaxErrorLen = 4096

// ErrorText is msg fitted to an `error` field: never empty, at most
// MaxErrorLen bytes, cut on a UTF-8 boundary with "…" when it is longer.
func ErrorText(msg string) string {
	if msg == "" {
		return "unknown error"
	}
	if len(msg) <= MaxErrorLen {
		return msg
	}
	cut := MaxErrorLen - len("…")
	for cut > 0 && msg[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return msg[:cut] + "…"
}

// PeekImageID finds image_id in a payload that failed validation but is
// still JSON, so the failure can still be reported against its image.
func PeekImageID(data []byte) (int64, bool) { return peekID(data, "image_id") }

// PeekObjectID reads the ID of the object a command with an x-slipway
// access level names: its "id" member (an image of the catalog, a VM of the
// launcher).
func PeekObjectID(data []byte) (int64, bool) { return peekID(data, "id") }

// PeekTemplateID reads the template_id member of a payload: the template
// the launcher's instantiate names.
func PeekTemplateID(data []byte) (int64, bool) { return peekID(data, "template_id") }

// peekID reads the non-negative integer member key of a JSON object.
func peekID(data []byte, key string) (int64, bool) {
	var v map[string]json.RawMessage
	if json.Unmarshal(data, &v) != nil {
		return 0, false
	}
	var id *int64
	if json.Unmarshal(v[key], &id) != nil || id == nil || *id < 0 {
		return 0, false
	}
	return *id, true
}
