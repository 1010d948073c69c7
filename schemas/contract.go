package schemas

import (
	"strings"
	"sync"
)

// The descriptors of the contract: types_gen.go declares one per message
// (CmdCatalogImageCreate, EvtCatalogImageCreated, QryCatalogShow) from its
// schema's x-slipway metadata, so a caller names a message once and gets its
// subject, its Go types and, for a command, the events that answer it.
// pkg/bus takes them (bus.Ask, bus.Send, bus.Invoke).

// Cmd is a command: T is its payload; Answers are the events of Service that
// answer it (what bus.Call waits for), from x-slipway "answers".
type Cmd[T any] struct {
	Service, Verb string
	Answers       []string
}

// Subject is "<prefix>.cmd.<service>.<verb>.<sender>": sender is who sends
// it (see [Sender]).
func (c Cmd[T]) Subject(prefix, sender string) string { return c.Filter(prefix) + "." + sender }

// Filter is the command's subject without its sender:
// "<prefix>.cmd.<service>.<verb>"; Filter+".*" matches it from anyone.
func (c Cmd[T]) Filter(prefix string) string { return prefix + ".cmd." + c.Service + "." + c.Verb }

// Evt is an event published by Service: T is its payload.
type Evt[T any] struct {
	Service, Name string
}

// Subject is "<prefix>.evt.<service>.<event>.<id>".
func (e Evt[T]) Subject(prefix, id string) string {
	return prefix + ".evt." + e.Service + "." + e.Name + "." + id
}

// Filter matches the event about every id: "<prefix>.evt.<service>.<event>.*".
func (e Evt[T]) Filter(prefix string) string { return e.Subject(prefix, "*") }

// Qry is a query endpoint: Req is its request, Rep its reply.
type Qry[Req, Rep any] struct {
	Service, Endpoint string
}

// Subject is "<prefix>.api.<service>.<endpoint>.<sender>": sender is who
// asks (see [Sender]).
func (q Qry[Req, Rep]) Subject(prefix, sender string) string {
	return prefix + ".api." + q.Service + "." + q.Endpoint + "." + sender
}

// Sender is who sent a command or asked a query: the last token of its
// subject. The NATS server lets each principal (a user, a service) publish
// commands and queries only with its own name there, so a receiver that
// reads it from the subject the server delivered knows who sent it; no
// payload field can say otherwise.
func Sender(subject string) string { return subject[strings.LastIndexByte(subject, '.')+1:] }

// InboxPrefix is where sender's replies come: only sender may subscribe
// below it ("_INBOX_<sender>"; nats.CustomInboxPrefix, `nats --inbox-prefix`).
func InboxPrefix(sender string) string { return "_INBOX_" + sender }

// known indexes the registry by kind, service and name.
var known = sync.OnceValue(func() map[[3]string]*registered {
	m := make(map[[3]string]*registered, len(registry))
	for i, r := range registry {
		m[[3]string{r.kind, r.service, r.name}] = &registry[i]
	}
	return m
})

// Known reports whether the contract has a schema for the message: cheap
// enough to ask before every publish.
func Known(kind, service, name string) bool { return known()[[3]string{kind, service, name}] != nil }

// AccessOf is what a user needs on the object service's command names
// (Message.Access): cheap enough to ask for every command, without reading
// its schema.
func AccessOf(service, command string) string {
	if r := known()[[3]string{KindCommand, service, command}]; r != nil {
		return r.access
	}
	return ""
}
