package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Errors returned by [Validate], to test with errors.Is.
var (
	ErrUnknownMessage = errors.New("unknown message")
	ErrMalformed      = errors.New("malformed JSON")
	ErrInvalid        = errors.New("invalid message")
)

// maxProblems caps how many problems an error lists: the first few are what a
// person fixes first.
const maxProblems = 3

// Problem is one reason a payload does not match its schema.
type Problem struct {
	Path    string // JSON pointer to the offending value, e.g. /size_mib; empty for the whole payload
	Message string // e.g. "must be >= 1"
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ValidationError lists why a payload does not match its schema. It matches
// [ErrInvalid] with errors.Is.
type ValidationError struct {
	Message  string // service.name, e.g. catalog.image-create
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message + ": ")
	for i, p := range e.Problems {
		if i == maxProblems {
			fmt.Fprintf(&b, " (and %d more)", len(e.Problems)-maxProblems)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Is reports whether target is [ErrInvalid].
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// compiled holds every message schema, compiled once on first use.
var compiled = sync.OnceValues(compileAll)

func compileAll() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	var ids []string
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("schema %s: %w", p, err)
		}
		if err := c.AddResource(IDBase+p, doc); err != nil {
			return fmt.Errorf("schema %s: %w", p, err)
		}
		if strings.Contains(p, "/") {
			ids = append(ids, IDBase+p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*jsonschema.Schema, len(ids))
	for _, id := range ids {
		s, err := c.Compile(id)
		if err != nil {
			return nil, fmt.Errorf("compile %s: %w", id, err)
		}
		out[id] = s
	}
	return out, nil
}

// Validate checks a JSON payload against the schema of message kind/service/name
// ("cmd", "catalog", "image-create"). The error names the message, the field and
// the problem: `catalog.image-create: /size_mib: must be >= 1`.
func Validate(kind, service, name string, data []byte) error {
	sch, err := schemaFor(kind, service, name)
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s.%s: %w: %v", service, name, ErrMalformed, err)
	}
	return check(sch, service+"."+name, doc)
}

// ValidateValue marshals v to JSON and validates the result, for producers that
// want to check what they are about to publish.
func ValidateValue(kind, service, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s.%s: marshal %T: %w", service, name, v, err)
	}
	return Validate(kind, service, name, data)
}

func schemaFor(kind, service, name string) (*jsonschema.Schema, error) {
	all, err := compiled()
	if err != nil {
		return nil, fmt.Errorf("schemas: %w", err) // a broken build: tests catch it
	}
	sch, ok := all[ID(kind, service, name)]
	if !ok {
		return nil, fmt.Errorf("%w: %s %s.%s", ErrUnknownMessage, kind, service, name)
	}
	return sch, nil
}

func check(sch *jsonschema.Schema, msg string, doc any) error {
	err := sch.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	probs := problems(ve)
	slices.SortStableFunc(probs, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	probs = slices.Compact(probs)
	return &ValidationError{Message: msg, Problems: probs}
}

var printer = message.NewPrinter(language.English)

// problems flattens the validator's error tree to its leaves. An anyOf/oneOf
// failure stays one problem, because only one of its branches needs fixing.
func problems(e *jsonschema.ValidationError) []Problem {
	loc := pointer(e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.AnyOf, *kind.OneOf:
		if len(e.Causes) > 0 {
			return []Problem{alternatives(loc, e.Causes)}
		}
		if k, ok := k.(*kind.OneOf); ok && len(k.Subschemas) > 1 {
			if names := oneOfRequired(e.SchemaURL, k.Subschemas); len(names) > 1 {
				return []Problem{{loc, "give only one of " + strings.Join(names, ", ")}}
			}
		}
	case *kind.Required:
		out := make([]Problem, 0, len(k.Missing))
		for _, m := range k.Missing {
			out = append(out, Problem{loc + "/" + escape(m), "is required"})
		}
		return out
	case *kind.AdditionalProperties:
		out := make([]Problem, 0, len(k.Properties))
		for _, p := range k.Properties {
			out = append(out, Problem{loc + "/" + escape(p), "is not allowed (unknown property)"})
		}
		return out
	case *kind.PropertyNames:
		return []Problem{{loc + "/" + escape(k.Property), "is not an allowed property name"}}
	}
	if len(e.Causes) == 0 {
		return []Problem{{loc, describe(e.ErrorKind)}}
	}
	var out []Problem
	for _, c := range e.Causes {
		out = append(out, problems(c)...)
	}
	return out
}

// alternatives phrases a failed anyOf/oneOf as one problem listing each branch's
// first problem: "one of these must hold: /path is required, or /size_mib is required".
func alternatives(loc string, branches []*jsonschema.ValidationError) Problem {
	parts := make([]string, 0, len(branches))
	for _, b := range branches {
		ps := problems(b)
		if len(ps) == 0 {
			continue
		}
		p := ps[0]
		if p.Path == "" {
			parts = append(parts, p.Message)
		} else {
			parts = append(parts, p.Path+" "+p.Message)
		}
	}
	return Problem{loc, "one of these must hold: " + strings.Join(parts, ", or ")}
}

// oneOfRequired lists, as JSON pointers, the properties the matched branches of
// a oneOf require: a payload that gave more than one of alternatives such as
// "id or name" is told which ones (nil when the schema cannot be read).
func oneOfRequired(schemaURL string, matched []int) []string {
	file, ptr, _ := strings.Cut(strings.TrimPrefix(schemaURL, IDBase), "#")
	data, err := files.ReadFile(file)
	if err != nil {
		return nil
	}
	var v any
	if json.Unmarshal(data, &v) != nil {
		return nil
	}
	// schemaURL names the schema holding the oneOf keyword.
	for _, tok := range append(strings.Split(ptr, "/")[1:], "oneOf") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[tok]
	}
	branches, _ := v.([]any)
	var names []string
	for _, i := range matched {
		if i < 0 || i >= len(branches) {
			return nil
		}
		b, _ := branches[i].(map[string]any)
		req, _ := b["required"].([]any)
		for _, r := range req {
			if s, ok := r.(string); ok {
				names = append(names, "/"+escape(s))
			}
		}
	}
	return names
}

// describe words one leaf failure for a person; kinds without a wording here use
// the library's own.
func describe(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Type:
		return fmt.Sprintf("must be %s, not %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = jsonText(w)
		}
		return fmt.Sprintf("is %s, must be one of %s", jsonText(k.Got), strings.Join(want, ", "))
	case *kind.Const:
		return fmt.Sprintf("must be %s", jsonText(k.Want))
	case *kind.Minimum:
		return "must be >= " + k.Want.RatString()
	case *kind.Maximum:
		return "must be <= " + k.Want.RatString()
	case *kind.ExclusiveMinimum:
		return "must be > " + k.Want.RatString()
	case *kind.ExclusiveMaximum:
		return "must be < " + k.Want.RatString()
	case *kind.MinLength:
		if k.Want == 1 {
			return "must not be empty"
		}
		return fmt.Sprintf("must be at least %d characters long", k.Want)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long (is %d)", k.Want, k.Got)
	case *kind.Pattern:
		return fmt.Sprintf("%s does not match %s", jsonText(k.Got), k.Want)
	case *kind.Format:
		return fmt.Sprintf("%s is not a valid %s", jsonText(k.Got), k.Want)
	case *kind.FalseSchema:
		return "is not allowed"
	}
	return k.LocalizedString(printer)
}

// jsonText renders a JSON value compactly, truncating long strings.
func jsonText(v any) string {
	if s, ok := v.(string); ok && len(s) > 64 {
		v = s[:61] + "..."
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func pointer(loc []string) string {
	var b strings.Builder
	for _, s := range loc {
		b.WriteString("/" + escape(s))
	}
	return b.String()
}

func escape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}
