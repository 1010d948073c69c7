package bus

import (
	"context"
	"fmt"
	"slices"

	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// described refuses a command or an event the contract has no schema for:
// every message on the bus is described in package schemas, as Serve and
// Query demand of every query.
func described(kind, service, name string) error {
	if schemas.Known(kind, service, name) {
		return nil
	}
	return fmt.Errorf("bus: %s.%s has no schema (%s/%[1]s.%[2]s.json): %[4]w", service, name, kind, schemas.ErrUnknownMessage)
}

// Commands lists the verbs of service's commands in the contract, in name
// order: what a service that consumes its commands handles.
func Commands(service string) []string {
	var verbs []string
	for _, m := range schemas.Messages() {
		if m.Kind == schemas.KindCommand && m.Service == service {
			verbs = append(verbs, m.Name)
		}
	}
	slices.Sort(verbs)
	return verbs
}

// Ask asks q's endpoint and returns its reply, typed by the descriptor
// (schemas.QryCatalogShow): Query with the types the schemas give.
func Ask[Req, Rep any](ctx context.Context, b *Bus, q schemas.Qry[Req, Rep], req Req) (Rep, error) {
	var rep Rep
	err := b.Query(ctx, q.Service, q.Endpoint, req, &rep)
	return rep, err
}

// Endpoint is one query endpoint a service serves, made by Answer; Endpoints
// gathers them for Serve.
type Endpoint struct {
	name    string
	handler QueryHandler
}

// Answer is the endpoint q describes (schemas.QryCatalogShow), answered by h
// with the types the schemas give: the request is decoded strictly
// (DecodeQuery) into a Req, and h's Rep is the reply.
func Answer[Req, Rep any](q schemas.Qry[Req, Rep], h func(ctx context.Context, req Req) (Rep, error)) Endpoint {
	return Endpoint{name: q.Endpoint, handler: func(ctx context.Context, data []byte) (any, error) {
		var req Req
		if err := DecodeQuery(data, &req); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}}
}

// Endpoints is the map Serve takes, of the endpoints Answer made.
func Endpoints(endpoints ...Endpoint) map[string]QueryHandler {
	m := make(map[string]QueryHandler, len(endpoints))
	for _, e := range endpoints {
		m[e.name] = e.handler
	}
	return m
}

// Send publishes the command c describes (schemas.CmdCatalogImageDelete).
func Send[T any](ctx context.Context, b *Bus, c schemas.Cmd[T], data T, opts ...PubOption) (envelope.Envelope, error) {
	return b.Command(ctx, c.Service, c.Verb, data, opts...)
}

// Invoke sends the command c describes and waits for the first of the
// events its schema says answer it, or a failure: Call with the contract's
// answers. A command that no event answers cannot be invoked.
func Invoke[T any](ctx context.Context, b *Bus, c schemas.Cmd[T], data T, opts ...PubOption) (*Msg, error) {
	if len(c.Answers) == 0 {
		return nil, fmt.Errorf("bus: %s.%s: no event answers it (its schema's x-slipway declares no answers): send it instead", c.Service, c.Verb)
	}
	return b.Call(ctx, c.Service, c.Verb, data, c.Answers, opts...)
}
