package onetemplate

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// SyntaxError says where a template is wrong.
type SyntaxError struct {
	Line, Column int // 1-based; Column counts characters
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

type parser struct {
	src string
	pos int
}

const eof = -1

func (p *parser) peek() int {
	if p.pos >= len(p.src) {
		return eof
	}
	return int(p.src[p.pos])
}

func (p *parser) errAt(pos int, format string, args ...any) error {
	line := 1 + strings.Count(p.src[:pos], "\n")
	start := strings.LastIndexByte(p.src[:pos], '\n') + 1
	col := 1 + utf8.RuneCountInString(p.src[start:pos])
	return &SyntaxError{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

func isBlank(c int) bool { return c == ' ' || c == '\t' || c == '\r' }

func isNameChar(c int) bool {
	return c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// isBareChar: what a value without quotes may contain.
func isBareChar(c int) bool {
	return c != eof && !isBlank(c) && !strings.ContainsRune("\n=,[]#\"", rune(c))
}

func (p *parser) skipBlanks() {
	for isBlank(p.peek()) {
		p.pos++
	}
}

func (p *parser) skipComment() {
	if p.peek() != '#' {
		return
	}
	if i := strings.IndexByte(p.src[p.pos:], '\n'); i >= 0 {
		p.pos += i
	} else {
		p.pos = len(p.src)
	}
}

// skipSpace skips blanks, newlines and comments.
func (p *parser) skipSpace() {
	for {
		p.skipBlanks()
		switch p.peek() {
		case '\n':
			p.pos++
		case '#':
			p.skipComment()
		default:
			return
		}
	}
}

func (p *parser) template() (*Template, error) {
	t := &Template{}
	for {
		p.skipSpace()
		if p.peek() == eof {
			return t, nil
		}
		a, err := p.attribute()
		if err != nil {
			return nil, err
		}
		t.Attrs = append(t.Attrs, a)
		// An attribute owns the rest of its line: anything but a comment
		// there is most likely an unquoted value with blanks in it.
		p.skipBlanks()
		p.skipComment()
		if c := p.peek(); c != '\n' && c != eof {
			return nil, p.errAt(p.pos, "unexpected %s after the value of %s (quote values that contain blanks or any of = , [ ] # \")", describe(p.src[p.pos:]), a.Name)
		}
	}
}

func (p *parser) name(what string) (string, error) {
	start := p.pos
	for isNameChar(p.peek()) {
		p.pos++
	}
	if p.pos == start {
		return "", p.errAt(start, "expected %s (letters, digits and '_'), found %s", what, describe(p.src[start:]))
	}
	return strings.ToUpper(p.src[start:p.pos]), nil
}

func (p *parser) equals(name string) error {
	p.skipBlanks()
	if p.peek() != '=' {
		return p.errAt(p.pos, "expected '=' after %s, found %s", name, describe(p.src[p.pos:]))
	}
	p.pos++
	p.skipBlanks()
	return nil
}

func (p *parser) attribute() (Attr, error) {
	name, err := p.name("an attribute name")
	if err != nil {
		return Attr{}, err
	}
	if err := p.equals(name); err != nil {
		return Attr{}, err
	}
	if p.peek() == '[' {
		vec, err := p.vector(name)
		return Attr{Name: name, Vector: vec}, err
	}
	v, err := p.value(name)
	return Attr{Name: name, Value: v}, err
}

func (p *parser) vector(name string) (map[string]string, error) {
	open := p.pos
	p.pos++ // '['
	vec := map[string]string{}
	for {
		p.skipSpace()
		switch p.peek() {
		case ']':
			p.pos++
			return vec, nil
		case eof:
			return nil, p.errAt(open, "vector %s is not closed with ']'", name)
		}
		keyPos := p.pos
		key, err := p.name("a name in vector " + name)
		if err != nil {
			return nil, err
		}
		if _, dup := vec[key]; dup {
			return nil, p.errAt(keyPos, "%s appears twice in vector %s", key, name)
		}
		if err := p.equals(name + "/" + key); err != nil {
			return nil, err
		}
		if p.peek() == '[' {
			return nil, p.errAt(p.pos, "vector %s: %s cannot hold a vector (vectors do not nest)", name, key)
		}
		if vec[key], err = p.value(name + "/" + key); err != nil {
			return nil, err
		}
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
		case eof:
			return nil, p.errAt(open, "vector %s is not closed with ']'", name)
		default:
			return nil, p.errAt(p.pos, "expected ',' or ']' after %s in vector %s, found %s (quote values that contain blanks)", key, name, describe(p.src[p.pos:]))
		}
	}
}

// value reads a quoted or bare value; a bare value may be empty
// (`NAME =` at the end of a line).
func (p *parser) value(name string) (string, error) {
	if p.peek() == '"' {
		return p.quoted(name)
	}
	start := p.pos
	for isBareChar(p.peek()) {
		p.pos++
	}
	return p.src[start:p.pos], nil
}

func (p *parser) quoted(name string) (string, error) {
	open := p.pos
	p.pos++
	var b strings.Builder
	for {
		i := strings.IndexAny(p.src[p.pos:], `"\`)
		if i < 0 {
			return "", p.errAt(open, "the value of %s opens a quote that is never closed", name)
		}
		b.WriteString(p.src[p.pos : p.pos+i])
		p.pos += i
		if p.src[p.pos] == '"' {
			p.pos++
			return b.String(), nil
		}
		// A backslash escapes '"' and '\'; before anything else it is
		// itself (so Windows paths and regexps survive).
		if p.pos+1 < len(p.src) && (p.src[p.pos+1] == '"' || p.src[p.pos+1] == '\\') {
			b.WriteByte(p.src[p.pos+1])
			p.pos += 2
			continue
		}
		b.WriteByte('\\')
		p.pos++
	}
}

// describe names what was found, for error messages.
func describe(rest string) string {
	if rest == "" {
		return "the end of the text"
	}
	r, _ := utf8.DecodeRuneInString(rest)
	switch r {
	case '\n':
		return "the end of the line"
	case utf8.RuneError:
		return fmt.Sprintf("byte %#02x", rest[0])
	}
	return fmt.Sprintf("%q", r)
}
