package fsimage

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/slipway/slipway/services/builder/tree"
)

// This file reads the builders' scripts back the way their tools do, so the
// fuzz target can check that every command in them is one the builder meant
// to write, whatever the tree held.

// ssParse splits one command line as e2fsprogs' ss library does (what
// debugfs runs each script line through): tokens at spaces and tabs, double
// quotes anywhere in a token, "" inside quotes a literal quote.
func ssParse(line string) ([]string, error) {
	const (
		white = iota
		token
		quoted
	)
	var argv []string
	var cur []byte
	mode := white
	for i := 0; i <= len(line); i++ {
		end := i == len(line)
		var c byte
		if !end {
			c = line[i]
		}
		switch mode {
		case white:
			switch {
			case end:
				return argv, nil
			case c == ' ' || c == '\t':
			case c == '"':
				mode, cur = quoted, []byte{}
			default:
				mode, cur = token, []byte{c}
			}
		case token:
			switch {
			case end:
				return append(argv, string(cur)), nil
			case c == ' ' || c == '\t':
				argv, mode = append(argv, string(cur)), white
			case c == '"':
				mode = quoted
			default:
				cur = append(cur, c)
			}
		case quoted:
			switch {
			case end:
				return nil, fmt.Errorf("unbalanced quotes in %q", line)
			case c == '"' && i+1 < len(line) && line[i+1] == '"':
				cur = append(cur, '"')
				i++
			case c == '"':
				mode = token
			default:
				cur = append(cur, c)
			}
		}
	}
	return argv, nil
}

// ssToken reads q back as exactly one ss token.
func ssToken(q string) (string, bool) {
	argv, err := ssParse(q)
	if err != nil || len(argv) != 1 {
		return "", false
	}
	return argv[0], true
}

// debugfsLines splits a debugfs -f script as debugfs reads it: fgets lines,
// each cut at its first '\r'; a line starting (after blanks) with '!' goes
// to the shell and one starting with '#' is a comment.
func debugfsLines(script string) ([][]string, error) {
	var cmds [][]string
	for _, l := range strings.SplitAfter(script, "\n") {
		if l == "" {
			continue
		}
		if !strings.HasSuffix(l, "\n") {
			return nil, fmt.Errorf("unterminated last line %q", l)
		}
		l = strings.TrimSuffix(l, "\n")
		if i := strings.IndexByte(l, '\r'); i >= 0 {
			return nil, fmt.Errorf("line %q holds a carriage return: debugfs would cut it", l)
		}
		if strings.ContainsRune(l, 0) {
			return nil, fmt.Errorf("line %q holds a NUL: debugfs would cut it", l)
		}
		switch t := strings.TrimLeft(l, " \t"); {
		case strings.HasPrefix(t, "!"):
			return nil, fmt.Errorf("line %q would run a shell command", l)
		case strings.HasPrefix(l, "#"):
			return nil, fmt.Errorf("line %q is a comment the builder never writes", l)
		}
		argv, err := ssParse(l)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, argv)
	}
	return cmds, nil
}

var (
	decimal = regexp.MustCompile(`^[0-9]+$`)
	octal   = regexp.MustCompile(`^0[0-7]+$`)
	atTime  = regexp.MustCompile(`^@-?[0-9]+$`)
)

// checkExtScript checks that every command of a debugfs script is one
// writeExtScript writes, naming paths and xattrs of t and value files in
// work, with the arity and argument forms it uses.
func checkExtScript(script string, t *tree.Tree, work string) error {
	cmds, err := debugfsLines(script)
	if err != nil {
		return err
	}
	paths := map[string]*tree.Entry{}
	for _, e := range t.Entries() {
		paths[abs(e.Path)] = e
	}
	cwd := "/"
	for _, a := range cmds {
		if len(a) == 0 {
			return fmt.Errorf("empty command line")
		}
		bad := func(why string) error { return fmt.Errorf("command %q: %s", a, why) }
		switch a[0] {
		case "set_inode_field":
			if len(a) != 4 || paths[a[1]] == nil {
				return bad("want a tree path, a field and a value")
			}
			ok := map[string]*regexp.Regexp{"uid": decimal, "gid": decimal, "mode": octal, "mtime": atTime, "links_count": decimal}[a[2]]
			if ok == nil || !ok.MatchString(a[3]) {
				return bad("field or value is not one the builder writes")
			}
		case "ln":
			if len(a) != 3 || paths[a[1]] == nil || paths[a[2]] == nil {
				return bad("want two tree paths")
			}
		case "cd":
			if len(a) != 2 || (a[1] != "/" && paths[a[1]] == nil) {
				return bad("want a tree directory")
			}
			cwd = a[1]
		case "mknod":
			e := paths[path.Join(cwd, a[1])]
			switch {
			case e == nil:
				return bad("not a tree entry in " + cwd)
			case len(a) == 3 && a[2] == "p" && e.Type == tree.FIFO:
			case len(a) == 5 && (a[2] == "c" || a[2] == "b") && decimal.MatchString(a[3]) && decimal.MatchString(a[4]):
			default:
				return bad("not a mknod the builder writes")
			}
		case "ea_set":
			if len(a) != 5 || a[1] != "-f" || filepath.Dir(a[2]) != work || paths[a[3]] == nil {
				return bad("want -f, a value file, a tree path and a name")
			}
			if _, ok := paths[a[3]].Xattrs[a[4]]; !ok {
				return bad("the entry has no such xattr")
			}
		case "ea_rm":
			if len(a) != 3 || paths[a[1]] == nil {
				return bad("want a tree path and a name")
			}
		default:
			return bad("not a command the builder writes")
		}
	}
	return nil
}

// checkXFSDBCommands checks xfsFixes' commands for an entry: each a
// white-space separated command of the forms it writes, attr_set naming one
// of e's xattrs.
func checkXFSDBCommands(cmds []string, e *tree.Entry) error {
	for i, c := range cmds {
		if strings.ContainsAny(c, "\n\r\x00") {
			return fmt.Errorf("command %q holds a line break or NUL", c)
		}
		a := cFields(c)
		bad := func(why string) error { return fmt.Errorf("command %q: %s", c, why) }
		switch {
		case len(a) == 0:
			return bad("empty")
		case a[0] == "inode":
			if i != 0 || len(a) != 2 || !decimal.MatchString(a[1]) {
				return bad("want one inode first")
			}
		case a[0] == "write":
			if len(a) != 3 {
				return bad("want a field and a value")
			}
		case a[0] == "attr_set":
			if len(a) != 5 || a[2] != "-v" || !decimal.MatchString(a[3]) {
				return bad("want a namespace flag, -v and a length")
			}
			found := false
			for k := range e.Xattrs {
				if ns, flag := xattrNamespace(k); flag == a[1] && k[len(ns):] == a[4] {
					found = true
				}
			}
			if !found {
				return bad("the entry has no such xattr")
			}
		default:
			return bad("not a command the builder writes")
		}
	}
	return nil
}

// cFields splits s at white space as C's isspace does in the C locale the
// tools run in (run.ChildEnv sets LC_ALL=C): only ASCII space, tab and the
// line breaks. strings.Fields would also split at Unicode spaces such as
// U+200A, which mkfs.xfs and xfs_db read as part of a name.
func cFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(" \t\n\v\f\r", r) })
}

// protoEntries parses a mkfs.xfs protofile as mkfs does (white-space
// separated tokens; a directory's entries end at "$") and returns each
// entry's path and the source file of regular files.
func protoEntries(proto string) (map[string]string, error) {
	toks := cFields(proto)
	if len(toks) < 6 || toks[0] != "fsimage" {
		return nil, fmt.Errorf("bad protofile header")
	}
	pos := 3 // "fsimage", "0", "0"; then the root's mode, uid, gid
	next := func() (string, error) {
		if pos >= len(toks) {
			return "", fmt.Errorf("protofile ends early")
		}
		pos++
		return toks[pos-1], nil
	}
	out := map[string]string{}
	var dir func(p string) error
	dir = func(p string) error {
		for {
			name, err := next()
			if err != nil {
				return err
			}
			if name == "$" {
				return nil
			}
			mode, err := next()
			if err != nil {
				return err
			}
			for range 2 { // uid gid
				if v, err := next(); err != nil || !decimal.MatchString(v) {
					return fmt.Errorf("entry %q: bad owner %q", name, v)
				}
			}
			child := path.Join(p, name)
			if strings.HasPrefix(name, ":") || len(mode) != 6 {
				return fmt.Errorf("entry %q: bad mode %q", name, mode)
			}
			out[child] = ""
			switch mode[0] {
			case '-':
				if out[child], err = next(); err != nil {
					return err
				}
			case 'l':
				if _, err := next(); err != nil {
					return err
				}
			case 'b', 'c':
				for range 2 {
					if v, err := next(); err != nil || !decimal.MatchString(v) {
						return fmt.Errorf("entry %q: bad device number %q", name, v)
					}
				}
			case 'd':
				if err := dir(child); err != nil {
					return err
				}
			case 'p':
			default:
				return fmt.Errorf("entry %q: bad type in %q", name, mode)
			}
		}
	}
	for range 3 {
		if _, err := next(); err != nil {
			return nil, err
		}
	}
	pos = 6
	if err := dir("."); err != nil {
		return nil, err
	}
	if pos != len(toks) {
		return nil, fmt.Errorf("%d tokens after the root directory's end", len(toks)-pos)
	}
	return out, nil
}

// checkProto checks that a protofile describes exactly t's entries, with
// regular files' sources under root or work.
func checkProto(proto string, t *tree.Tree, root, work string) error {
	got, err := protoEntries(proto)
	if err != nil {
		return err
	}
	if len(got) != t.Len()-1 {
		return fmt.Errorf("protofile has %d entries, the tree %d", len(got), t.Len()-1)
	}
	for p, src := range got {
		if _, ok := t.Get(p); !ok {
			return fmt.Errorf("protofile entry %q is not in the tree", p)
		}
		if src == "" {
			continue
		}
		if dest, err := os.Readlink(src); err == nil && filepath.Dir(src) == work {
			src = dest // a source reached through an alias
		}
		if rel, err := filepath.Rel(root, src); (err != nil || strings.HasPrefix(rel, "..")) && filepath.Dir(src) != work {
			return fmt.Errorf("protofile entry %q copies %s, outside the tree's directory", p, src)
		}
	}
	return nil
}
