package schemas

import (
	"encoding/json"
	"io/fs"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type asyncAPI struct {
	AsyncAPI string `yaml:"asyncapi"`
	Channels map[string]struct {
		Address  *string        `yaml:"address"`
		Messages map[string]ref `yaml:"messages"`
	} `yaml:"channels"`
	Operations map[string]struct {
		Action   string `yaml:"action"`
		Channel  ref    `yaml:"channel"`
		Messages []ref  `yaml:"messages"`
		Reply    *struct {
			Channel  ref   `yaml:"channel"`
			Messages []ref `yaml:"messages"`
		} `yaml:"reply"`
	} `yaml:"operations"`
	Components struct {
		Messages map[string]struct {
			Title      string         `yaml:"title"`
			DataSchema string         `yaml:"x-ce-dataschema"`
			Traits     []ref          `yaml:"traits"`
			Payload    map[string]any `yaml:"payload"`
		} `yaml:"messages"`
		MessageTraits map[string]any `yaml:"messageTraits"`
		Schemas       map[string]struct {
			Properties map[string]any `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

type ref struct {
	Ref string `yaml:"$ref"`
}

func loadAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	data, err := fs.ReadFile(FS(), "asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc asyncAPI
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	if doc.AsyncAPI != "3.0.0" {
		t.Fatalf("asyncapi.yaml: version %q, want 3.0.0", doc.AsyncAPI)
	}
	return doc
}

// local returns the component name a local $ref (#/components/messages/x) points to.
func local(t *testing.T, r, prefix string) string {
	t.Helper()
	name, ok := strings.CutPrefix(r, prefix)
	if !ok {
		t.Errorf("$ref %q does not start with %s", r, prefix)
	}
	return name
}

// resolveFileRef checks that a payload $ref like ./cmd/x.json or
// ./defs.json#/$defs/Image points into an existing schema file.
func resolveFileRef(t *testing.T, r string) string {
	t.Helper()
	file, frag, _ := strings.Cut(strings.TrimPrefix(r, "./"), "#")
	data, err := fs.ReadFile(FS(), file)
	if err != nil {
		t.Errorf("$ref %q: %v", r, err)
		return ""
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		if tok == "" {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok || m[tok] == nil {
			t.Errorf("$ref %q: no %q in %s", r, tok, file)
			return ""
		}
		v = m[tok]
	}
	return file
}

func TestAsyncAPIChannelsMatchSchemas(t *testing.T) {
	doc := loadAsyncAPI(t)
	used := map[string]int{} // schema file -> messages using it
	for name, msg := range doc.Components.Messages {
		r, _ := msg.Payload["$ref"].(string)
		if r == "" {
			continue // inline payloads (query errors)
		}
		f := resolveFileRef(t, r)
		if f == "" || strings.Contains(r, "#") {
			continue
		}
		used[f]++
		switch kind, _, _ := strings.Cut(f, "/"); kind {
		case KindCommand, KindEvent:
			if want := IDBase + f; msg.DataSchema != want {
				t.Errorf("message %s: x-ce-dataschema %q, want %q", name, msg.DataSchema, want)
			}
			if len(msg.Traits) != 1 || local(t, msg.Traits[0].Ref, "#/components/messageTraits/") != "cloudEvent" {
				t.Errorf("message %s: lacks the cloudEvent trait", name)
			}
		case KindQuery, KindReply:
			// Queries are plain NATS request/reply: no CloudEvents envelope.
			if msg.DataSchema != "" || len(msg.Traits) != 0 {
				t.Errorf("message %s: a query's request or reply carries no CloudEvents envelope", name)
			}
		default:
			t.Errorf("message %s: payload %s is not under cmd/, evt/, qry/ or rpl/", name, f)
		}
	}
	for _, m := range Messages() {
		f := m.Kind + "/" + m.Service + "." + m.Name + ".json"
		if used[f] != 1 {
			t.Errorf("schema %s is the payload of %d asyncapi messages, want 1", f, used[f])
		}
		ch, ok := doc.Channels[m.Kind+"."+m.Service+"."+m.Name]
		if !ok {
			t.Errorf("asyncapi has no channel %s.%s.%s", m.Kind, m.Service, m.Name)
			continue
		}
		var want string
		switch m.Kind {
		case KindCommand:
			want = "slipway.cmd." + m.Service + "." + m.Name + ".{sender}"
		case KindEvent:
			want = "slipway.evt." + m.Service + "." + m.Name + ".{id}"
		case KindQuery:
			want = "slipway.api." + m.Service + "." + m.Name + ".{sender}"
		case KindReply:
			want = "<null>" // the asker's reply inbox
		}
		if got := deref(ch.Address); got != want {
			t.Errorf("channel %s.%s.%s: address %q, want %q", m.Kind, m.Service, m.Name, got, want)
		}
		carried := 0
		for _, r := range ch.Messages {
			cm := doc.Components.Messages[local(t, r.Ref, "#/components/messages/")]
			if cm.Payload["$ref"] == nil {
				continue // a query error
			}
			carried++
			if cm.Payload["$ref"] != "./"+f || cm.Title != m.Title {
				t.Errorf("channel for %s carries %v (%s)", f, cm.Payload["$ref"], cm.Title)
			}
		}
		if carried != 1 {
			t.Errorf("channel for %s carries %d schema payloads, want 1", f, carried)
		}
	}
	if len(used) != len(Messages()) {
		t.Errorf("asyncapi uses %d schema files, the module has %d", len(used), len(Messages()))
	}
}

// TestAsyncAPIQueriesAreRequestReply checks that every query is one operation
// receiving its request on slipway.api.<service>.<endpoint> and replying with its
// reply or an error, and that every reply schema belongs to a query.
func TestAsyncAPIQueriesAreRequestReply(t *testing.T) {
	doc := loadAsyncAPI(t)
	queries := Queries()
	if len(queries) == 0 {
		t.Fatal("no queries")
	}
	replies := 0
	for _, m := range Messages() {
		if m.Kind == KindReply {
			replies++
			if _, err := LookupQuery(m.Service, m.Name); err != nil {
				t.Errorf("reply %s.%s: %v", m.Service, m.Name, err)
			}
		}
	}
	if replies != len(queries) {
		t.Errorf("%d reply schemas for %d queries", replies, len(queries))
	}
	for _, q := range queries {
		key := q.Service + "." + q.Endpoint
		op, ok := doc.Operations[KindQuery+"."+key]
		if !ok || op.Reply == nil {
			t.Errorf("query %s: no request/reply operation %s.%s", key, KindQuery, key)
			continue
		}
		if op.Action != "receive" || local(t, op.Channel.Ref, "#/channels/") != KindQuery+"."+key {
			t.Errorf("query %s: operation %s on %s, want receive on %s.%s", key, op.Action, op.Channel.Ref, KindQuery, key)
		}
		if len(op.Messages) != 1 || op.Messages[0].Ref != "#/channels/"+KindQuery+"."+key+"/messages/request" {
			t.Errorf("query %s: operation messages %v", key, op.Messages)
		}
		if got := local(t, op.Reply.Channel.Ref, "#/channels/"); got != KindReply+"."+key {
			t.Errorf("query %s: replies on %s, want %s.%s", key, got, KindReply, key)
		}
		var got []string
		for _, r := range op.Reply.Messages {
			got = append(got, r.Ref)
		}
		want := []string{"#/channels/" + KindReply + "." + key + "/messages/reply", "#/channels/" + KindReply + "." + key + "/messages/error"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("query %s: reply messages %v, want %v", key, got, want)
		}
		if r := doc.Channels[KindReply+"."+key].Messages["error"].Ref; r != "#/components/messages/api.error" {
			t.Errorf("query %s: error reply is %q", key, r)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}

func TestAsyncAPIReferencesResolve(t *testing.T) {
	doc := loadAsyncAPI(t)
	for name, ch := range doc.Channels {
		if len(ch.Messages) == 0 {
			t.Errorf("channel %s has no messages", name)
		}
		for _, r := range ch.Messages {
			if _, ok := doc.Components.Messages[local(t, r.Ref, "#/components/messages/")]; !ok {
				t.Errorf("channel %s: %s does not exist", name, r.Ref)
			}
		}
	}
	checkOpMessage := func(op string, r ref) {
		chName, msgKey, ok := strings.Cut(local(t, r.Ref, "#/channels/"), "/messages/")
		if _, exists := doc.Channels[chName].Messages[msgKey]; !ok || !exists {
			t.Errorf("operation %s: %s does not exist", op, r.Ref)
		}
	}
	for name, op := range doc.Operations {
		if op.Action != "send" && op.Action != "receive" {
			t.Errorf("operation %s: action %q", name, op.Action)
		}
		if _, ok := doc.Channels[local(t, op.Channel.Ref, "#/channels/")]; !ok {
			t.Errorf("operation %s: channel %s does not exist", name, op.Channel.Ref)
		}
		for _, r := range op.Messages {
			checkOpMessage(name, r)
		}
		if op.Reply != nil {
			for _, r := range op.Reply.Messages {
				checkOpMessage(name, r)
			}
		}
	}
	for name, ch := range doc.Channels {
		if ch.Address != nil && strings.HasPrefix(*ch.Address, "slipway.") {
			if _, ok := doc.Operations[name]; !ok {
				t.Errorf("channel %s has no operation", name)
			}
		}
	}
	for _, msg := range doc.Components.Messages {
		if r, _ := msg.Payload["$ref"].(string); r != "" {
			resolveFileRef(t, r)
		}
	}
	if _, ok := doc.Components.MessageTraits["cloudEvent"]; !ok {
		t.Error("no cloudEvent message trait")
	}
	headers := doc.Components.Schemas["CloudEventHeaders"].Properties
	for _, h := range []string{"ce-specversion", "ce-id", "ce-type", "ce-source", "ce-subject", "ce-time",
		"ce-dataschema", "ce-datacontenttype", "ce-correlationid", "ce-causationid", "traceparent", "tracestate", "Nats-Msg-Id"} {
		if _, ok := headers[h]; !ok {
			t.Errorf("CloudEventHeaders lacks %s", h)
		}
	}
}
