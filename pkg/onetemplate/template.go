// Package onetemplate reads and writes OpenNebula's template syntax, the
// format of `oneimage create <file>` and of VM templates:
//
//	# an image
//	NAME        = "alpine 3.20"
//	PATH        = s3://slipway-uploads/alpine.qcow2
//	PERSISTENT  = yes
//	DISK = [ IMAGE_ID = 3,
//	         IMAGE_UNAME = "oneadmin" ]
//	DISK = [ IMAGE_ID = 4 ]
//
// Attribute names are letters, digits and '_', case-insensitive (kept
// upper-case). A value is a double-quoted string (which may span lines;
// \" and \\ are its escapes) or a bare word without blanks or any of
// = , [ ] # ". A vector is a bracketed, comma-separated list of such
// attributes. A name may repeat (several DISK). '#' starts a comment.
// Each attribute ends at the end of its line.
package onetemplate

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// MaxSize bounds the template text Parse accepts.
const MaxSize = 4 << 20

// Attr is one attribute: a single value, or a vector when Vector is not
// nil.
type Attr struct {
	Name   string
	Value  string            // single value ("" for a vector)
	Vector map[string]string // nil for a single value; keys upper-case
}

// IsVector reports whether the attribute is a vector.
func (a Attr) IsVector() bool { return a.Vector != nil }

// Template is a parsed template; Attrs keeps the order of the text.
type Template struct {
	Attrs []Attr
}

// Parse reads a template.
func Parse(r io.Reader) (*Template, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("template: read: %w", err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("template: larger than %d bytes", MaxSize)
	}
	return ParseString(string(b))
}

// ParseString parses a template held in a string.
func ParseString(s string) (*Template, error) {
	p := &parser{src: s}
	return p.template()
}

// Get returns the value of the first single-valued attribute called name.
func (t *Template) Get(name string) (string, bool) {
	name = strings.ToUpper(name)
	for _, a := range t.Attrs {
		if a.Name == name && a.Vector == nil {
			return a.Value, true
		}
	}
	return "", false
}

// Vectors returns the vectors called name, in order (nil if none).
func (t *Template) Vectors(name string) []map[string]string {
	name = strings.ToUpper(name)
	var out []map[string]string
	for _, a := range t.Attrs {
		if a.Name == name && a.Vector != nil {
			out = append(out, a.Vector)
		}
	}
	return out
}

// Set makes name a single attribute with value: the first attribute of
// that name is replaced in place, others of that name are removed, and if
// there was none it is appended. name must be letters, digits and '_'.
func (t *Template) Set(name, value string) {
	name = strings.ToUpper(name)
	out := make([]Attr, 0, len(t.Attrs)+1)
	set := false
	for _, a := range t.Attrs {
		switch {
		case a.Name != name:
			out = append(out, a)
		case !set:
			out = append(out, Attr{Name: name, Value: value})
			set = true
		}
	}
	if !set {
		out = append(out, Attr{Name: name, Value: value})
	}
	t.Attrs = out
}

// Add appends a single attribute (names may repeat).
func (t *Template) Add(name, value string) {
	t.Attrs = append(t.Attrs, Attr{Name: strings.ToUpper(name), Value: value})
}

// AddVector appends a vector attribute; its keys are upper-cased.
func (t *Template) AddVector(name string, v map[string]string) {
	vec := make(map[string]string, len(v))
	for k, val := range v {
		vec[strings.ToUpper(k)] = val
	}
	t.Attrs = append(t.Attrs, Attr{Name: strings.ToUpper(name), Vector: vec})
}

// Del removes every attribute called name.
func (t *Template) Del(name string) {
	name = strings.ToUpper(name)
	t.Attrs = slices.DeleteFunc(t.Attrs, func(a Attr) bool { return a.Name == name })
}

// String writes the template in canonical form: one attribute per line,
// values always quoted, vector keys sorted. Parsing it gives the same
// template back.
func (t *Template) String() string {
	var b strings.Builder
	for _, a := range t.Attrs {
		b.WriteString(a.Name)
		b.WriteString(" = ")
		if a.Vector == nil {
			b.WriteString(quote(a.Value))
			b.WriteByte('\n')
			continue
		}
		if len(a.Vector) == 0 {
			b.WriteString("[ ]\n")
			continue
		}
		b.WriteString("[\n")
		for i, k := range slices.Sorted(maps.Keys(a.Vector)) {
			if i > 0 {
				b.WriteString(",\n")
			}
			b.WriteString("  ")
			b.WriteString(k)
			b.WriteString(" = ")
			b.WriteString(quote(a.Vector[k]))
		}
		b.WriteString(" ]\n")
	}
	return b.String()
}

// quote writes v as a quoted value: \ and " are escaped, nothing else.
func quote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(v) + `"`
}
