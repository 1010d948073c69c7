package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"strings"
	"text/template"
)

// AsyncAPIFile is the generated AsyncAPI document, relative to the schema
// directory.
const AsyncAPIFile = "asyncapi.yaml"

//go:embed asyncapi.yaml.tmpl
var asyncAPITemplate string

var asyncAPI = template.Must(template.New(AsyncAPIFile).Parse(asyncAPITemplate))

// idParam is what an event subject's last token ({id}) names; x-slipway
// id_param picks one.
type idParam struct {
	Name, Description string
	Examples          []string
}

// idParams are the event subjects' {id} parameters, by name.
var idParams = map[string]idParam{
	"id":        {"id", "The ID of the record the event is about: an image, a kernel, a VM template or a VM.", []string{"7"}},
	"failedID":  {"failedID", "The ID of the record the command was about, or `cmd-<stream sequence>` when the command was rejected before any record existed (malformed or schema-invalid).", []string{"7", "cmd-42"}},
	"marketID":  {"marketID", "The marketplace ID the event is about.", []string{"1"}},
	"commandID": {"commandID", "`cmd-<stream sequence>` of the refused command.", []string{"cmd-42"}},
	"name":      {"name", "The name of the user or group the event is about.", []string{"alice"}},
	"kekID":     {"kekID", "The ID of a crypto-luks key-encryption key (first 16 hex digits of its SHA-256).", []string{"9f86d081884c7d65"}},
}

// senderParam is a command's or query's last subject token: who sent it.
var senderParam = idParam{"sender", "Who sent the command or asked the query: a user's name or a service's. The NATS server lets each principal publish only with its own name here (package identity), so the receiver knows who sent it.", []string{"alice", "catalog"}}

type aaChannel struct {
	Key, Address, Title, Description string
	Params                           []aaParam
	Messages                         []aaRef
}

// aaParam is a channel's parameter: the {token} of its address and the
// component parameter that describes it.
type aaParam struct{ Token, Ref string }

type aaRef struct{ Key, Ref string }

type aaOperation struct {
	Key, Action, Channel, Summary, Message, Reply string
}

type aaMessage struct {
	Key, Name, Title, Summary, CEType, DataSchema, File string
	CloudEvent, QueryHeaders                            bool
}

type aaDoc struct {
	Channels   []aaChannel
	Operations []aaOperation
	Parameters []idParam
	Messages   []aaMessage
}

// asyncAPI renders asyncapi.yaml: a channel, an operation and a component
// message for every command, event and query, from the same schemas and
// metadata as the Go code. Addresses show the default prefix.
func (g *generator) asyncAPI() ([]byte, error) {
	var doc aaDoc
	params := map[string]idParam{senderParam.Name: senderParam}
	for name, p := range idParams {
		params[name] = p
	}
	for _, name := range sortedKeys(params) {
		p := params[name]
		p.Description = yamlString(p.Description)
		for i, e := range p.Examples {
			p.Examples[i] = yamlString(e)
		}
		doc.Parameters = append(doc.Parameters, p)
	}
	for _, f := range g.reg {
		key := f.kind + "." + f.message()
		msg := aaMessage{Key: key, Name: f.message(), Title: g.regType[f], Summary: yamlString(f.root.str("description")), File: f.path}
		ch := aaChannel{Key: key, Address: strings.ReplaceAll(f.meta.Subject, "{prefix}", "slipway"), Title: f.message() + " " + f.meta.Kind}
		op := aaOperation{Key: key, Action: "receive", Channel: key}
		switch f.kind {
		case "cmd", "evt":
			msg.CloudEvent = true
			msg.CEType = "io.slipway." + f.message() + ".v1"
			msg.DataSchema = f.id
			ch.Messages = []aaRef{{f.name, "#/components/messages/" + key}}
			op.Message = f.name
			op.Summary = yamlString("The " + f.service + " service consumes " + f.message() + ".")
			if f.kind == "cmd" {
				ch.Params = []aaParam{{"sender", senderParam.Name}}
			}
			if f.kind == "evt" {
				ch.Params = []aaParam{{"id", f.meta.IDParam}}
				op.Action = "send"
				op.Summary = yamlString("The " + f.service + " service publishes " + f.message() + ".")
			}
		case "qry":
			msg.QueryHeaders = true
			ch.Params = []aaParam{{"sender", senderParam.Name}}
			ch.Messages = []aaRef{{"request", "#/components/messages/" + key}}
			op.Message = "request"
			op.Reply = "rpl." + f.message()
			op.Summary = yamlString("The " + f.service + " service answers " + f.message() + ` queries (NATS micro service "` + f.service + `").`)
		case "rpl":
			msg.Name += ".reply"
			ch.Address = "null"
			ch.Description = yamlString("The asker's NATS reply inbox (the request's reply subject).")
			ch.Messages = []aaRef{{"reply", "#/components/messages/" + key}, {"error", "#/components/messages/api.error"}}
		}
		doc.Messages = append(doc.Messages, msg)
		doc.Channels = append(doc.Channels, ch)
		if f.kind != "rpl" {
			doc.Operations = append(doc.Operations, op)
		}
	}
	var b bytes.Buffer
	if err := asyncAPI.Execute(&b, doc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// yamlString quotes s as a YAML double-quoted scalar (a JSON string is one).
func yamlString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSpace(b.String())
}
