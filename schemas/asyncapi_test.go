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
			continue // inline payloads (query requests, errors)
		}
		if f := resolveFileRef(t, r); f != "" && !strings.Contains(r, "#") {
			used[f]++
			if want := IDBase + f; msg.DataSchema != want {
				t.Errorf("message %s: x-ce-dataschema %q, want %q", name, msg.DataSchema, want)
			}
			if len(msg.Traits) != 1 || local(t, msg.Traits[0].Ref, "#/components/messageTraits/") != "cloudEvent" {
				t.Errorf("message %s: lacks the cloudEvent trait", name)
			}
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
		want := "slipway.cmd." + m.Service + "." + m.Name
		if m.Kind == KindEvent {
			want = "slipway.evt." + m.Service + "." + m.Name + ".{id}"
		}
		if got := deref(ch.Address); got != want {
			t.Errorf("channel %s.%s.%s: address %q, want %q", m.Kind, m.Service, m.Name, got, want)
		}
		for _, r := range ch.Messages {
			cm := doc.Components.Messages[local(t, r.Ref, "#/components/messages/")]
			if cm.Payload["$ref"] != "./"+f || cm.Title != m.Title {
				t.Errorf("channel for %s carries %v (%s)", f, cm.Payload["$ref"], cm.Title)
			}
		}
	}
	if len(used) != len(Messages()) {
		t.Errorf("asyncapi uses %d schema files, the module has %d", len(used), len(Messages()))
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
	for _, name := range []string{"api.catalog.list", "api.catalog.show"} {
		op, ok := doc.Operations[name]
		if !ok || op.Reply == nil {
			t.Errorf("query %s: no request/reply operation", name)
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
