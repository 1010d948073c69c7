package fsimage

import (
	"fmt"
	"strings"

	"github.com/slipway/slipway/services/builder/tree"
)

// Every string of a tree reaches a tool's input language only through the
// encoder of that language below. Each refuses what its language cannot
// carry as data, so a name from a layer can never become a command: the
// builders' scripts are read a line at a time, and debugfs even runs a line
// that starts with "!" through the shell.

// EncodeError is a value an encoder refused.
type EncodeError struct {
	Language string // "debugfs", "xfs_db" or "protofile"
	Value    string
	Reason   string
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("%q cannot be written to a %s script: %s", e.Value, e.Language, e.Reason)
}

// debugfsQuote encodes s as one argument of a debugfs command (its ss
// parser): inside double quotes, where a doubled quote is a literal one and
// white space is data. debugfs reads its -f script with fgets and cuts
// each line at the first '\n' and the first '\r'; NUL ends a C string. So
// no control character (nor DEL) may appear at all.
func debugfsQuote(s string) (string, error) {
	if i := tree.ControlByte(s); i >= 0 {
		return "", &EncodeError{"debugfs", s, fmt.Sprintf("it holds the control character %#02x", s[i])}
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`, nil
}

// xfsDBWord encodes s as one word of an xfs_db command. xfs_db splits its
// lines at white space and has no quoting we rely on, so a word is
// printable ASCII without space, quotes, backslash or '#'.
func xfsDBWord(s string) (string, error) {
	if s == "" {
		return "", &EncodeError{"xfs_db", s, "it is empty"}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`"'\#`, c) >= 0 {
			return "", &EncodeError{"xfs_db", s, fmt.Sprintf("it holds the byte %#02x (xfs_db words are printable ASCII without space, quotes, backslash or #)", c)}
		}
	}
	return s, nil
}

// protoWord encodes s as one token of a mkfs.xfs protofile: tokens are
// separated by white space, ':' starts a comment and a lone '$' ends a
// directory. Bytes above 0x7f (UTF-8 names) are data.
func protoWord(s string) (string, error) {
	switch {
	case s == "":
		return "", &EncodeError{"protofile", s, "it is empty"}
	case s == "$":
		return "", &EncodeError{"protofile", s, "a lone $ ends a directory"}
	case strings.HasPrefix(s, ":"):
		return "", &EncodeError{"protofile", s, "a leading colon starts a comment"}
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c == 0x7f {
			return "", &EncodeError{"protofile", s, fmt.Sprintf("it holds the byte %#02x (white space or a control character)", c)}
		}
	}
	return s, nil
}
