package guestinit

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// maxContextBytes bounds a context.sh; OpenNebula's are a few KiB, start
// scripts included.
const maxContextBytes = 4 << 20

// ParseContext reads an OpenNebula context.sh: shell assignments in single
// quotes, where a quote inside is closed, escaped and reopened, and values
// may span lines:
//
//	START_SCRIPT='echo it'\''s me'
//
// as well as "double quoted" and bare values, "export KEY=…", blank lines and
// comments. It runs nothing: $ and backquotes are kept literally.
func ParseContext(r io.Reader) (map[string]string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxContextBytes+1))
	p := &ctxParser{r: br, line: 1}
	vars := map[string]string{}
	for {
		k, v, err := p.assignment()
		if err == io.EOF {
			return vars, nil
		}
		if err != nil {
			return nil, fmt.Errorf("context.sh line %d: %w", p.line, err)
		}
		vars[k] = v
		if p.n > maxContextBytes {
			return nil, fmt.Errorf("context.sh: larger than %d bytes", maxContextBytes)
		}
	}
}

type ctxParser struct {
	r    *bufio.Reader
	line int
	n    int
}

func (p *ctxParser) next() (byte, error) {
	c, err := p.r.ReadByte()
	if err == nil {
		p.n++
		if c == '\n' {
			p.line++
		}
	}
	return c, err
}

func (p *ctxParser) unread(c byte) {
	_ = p.r.UnreadByte()
	p.n--
	if c == '\n' {
		p.line--
	}
}

// assignment returns the next KEY=value, or io.EOF at the end.
func (p *ctxParser) assignment() (string, string, error) {
	for {
		name, err := p.word()
		if err != nil {
			return "", "", err
		}
		if name == "export" {
			continue
		}
		k, rest, ok := strings.Cut(name, "=")
		if !ok || !validName(k) {
			return "", "", fmt.Errorf("%q is not a KEY=value assignment", name)
		}
		if rest != "" { // a bare value already read with the name
			return k, rest, nil
		}
		v, err := p.value()
		return k, v, err
	}
}

// word skips blanks and comments and reads a bare word up to '=' included,
// or to the next blank.
func (p *ctxParser) word() (string, error) {
	var b strings.Builder
	for {
		c, err := p.next()
		if err != nil {
			if b.Len() > 0 {
				return b.String(), nil
			}
			return "", err
		}
		switch {
		case b.Len() == 0 && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';'):
		case b.Len() == 0 && c == '#':
			if _, err := p.r.ReadString('\n'); err != nil {
				return "", io.EOF
			}
			p.line++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';':
			p.unread(c)
			return b.String(), nil
		case c == '=':
			b.WriteByte(c)
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
}

// value reads a shell word: concatenated '…', "…" and bare parts up to an
// unquoted blank, newline or ';'.
func (p *ctxParser) value() (string, error) {
	var b strings.Builder
	for {
		c, err := p.next()
		if err == io.EOF {
			return b.String(), nil
		}
		if err != nil {
			return "", err
		}
		switch c {
		case ' ', '\t', '\n', '\r', ';':
			p.unread(c)
			return b.String(), nil
		case '\'':
			s, err := p.r.ReadString('\'')
			if err != nil {
				return "", fmt.Errorf("unterminated single quote")
			}
			p.n += len(s)
			p.line += strings.Count(s, "\n")
			b.WriteString(s[:len(s)-1])
		case '"':
			if err := p.doubleQuoted(&b); err != nil {
				return "", err
			}
		case '\\':
			c, err := p.next()
			if err != nil {
				return b.String(), nil
			}
			if c != '\n' { // backslash-newline continues the line
				b.WriteByte(c)
			}
		default:
			b.WriteByte(c)
		}
	}
}

func (p *ctxParser) doubleQuoted(b *strings.Builder) error {
	for {
		c, err := p.next()
		if err != nil {
			return fmt.Errorf("unterminated double quote")
		}
		switch c {
		case '"':
			return nil
		case '\\':
			n, err := p.next()
			if err != nil {
				return fmt.Errorf("unterminated double quote")
			}
			switch n {
			case '"', '\\', '$', '`':
				b.WriteByte(n)
			case '\n':
			default:
				b.WriteByte('\\')
				b.WriteByte(n)
			}
		default:
			b.WriteByte(c)
		}
	}
}

func validName(k string) bool {
	if k == "" || (k[0] >= '0' && k[0] <= '9') {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
