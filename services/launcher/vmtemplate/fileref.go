package vmtemplate

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseFileRefs reads one or more blank-separated $FILE[…] references, as KERNEL_DS,
// INITRD_DS and FILES_DS hold them: $FILE[IMAGE_ID=3] or
// $FILE[IMAGE="kernel 6.1", IMAGE_UNAME="oneadmin"].
func ParseFileRefs(s string) ([]FileRef, error) {
	var refs []FileRef
	rest := strings.TrimSpace(s)
	if rest == "" {
		return nil, fmt.Errorf("no $FILE[…] reference")
	}
	for rest != "" {
		ref, n, err := parseFileRef(rest)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref)
		rest = strings.TrimSpace(rest[n:])
	}
	return refs, nil
}

// parseFileRef reads one $FILE[…] at the start of s and returns how many bytes it took.
func parseFileRef(s string) (FileRef, int, error) {
	var ref FileRef
	if !strings.HasPrefix(strings.ToUpper(s), "$FILE[") {
		return ref, 0, fmt.Errorf("%q is not a $FILE[…] reference", firstWord(s))
	}
	i := len("$FILE[")
	seen := map[string]bool{}
	for {
		i = skipBlanks(s, i)
		if i < len(s) && s[i] == ']' {
			break
		}
		key, val, n, err := fileRefPair(s[i:])
		if err != nil {
			return ref, 0, err
		}
		if seen[key] {
			return ref, 0, fmt.Errorf("$FILE[…]: %s is given twice", key)
		}
		seen[key] = true
		if err := ref.set(key, val); err != nil {
			return ref, 0, err
		}
		i = skipBlanks(s, i+n)
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
	if err := ref.check(); err != nil {
		return ref, 0, err
	}
	return ref, i + 1, nil
}

// fileRefPair reads KEY = value (value bare or double-quoted with \" and \\ escapes).
func fileRefPair(s string) (key, val string, n int, err error) {
	eq := strings.IndexByte(s, '=')
	if eq <= 0 {
		return "", "", 0, fmt.Errorf("$FILE[…]: expected KEY=value at %q", firstWord(s))
	}
	key = strings.ToUpper(strings.TrimSpace(s[:eq]))
	i := skipBlanks(s, eq+1)
	if i < len(s) && s[i] == '"' {
		var b strings.Builder
		for i++; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return "", "", 0, fmt.Errorf("$FILE[…]: unterminated quote in %s", key)
		}
		return key, b.String(), i + 1, nil
	}
	j := i
	for j < len(s) && !strings.ContainsRune(" \t\n,]", rune(s[j])) {
		j++
	}
	return key, s[i:j], j, nil
}

func (f *FileRef) set(key, val string) error {
	switch key {
	case "IMAGE_ID":
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("$FILE[…]: IMAGE_ID %q is not a number", val)
		}
		f.ImageID = &n
	case "IMAGE":
		f.Image = val
	case "IMAGE_UNAME":
		f.ImageUname = val
	default:
		return fmt.Errorf("$FILE[…]: unknown key %s (IMAGE_ID, IMAGE, IMAGE_UNAME)", key)
	}
	return nil
}

func (f *FileRef) check() error {
	switch {
	case f.ImageID == nil && f.Image == "":
		return fmt.Errorf("$FILE[…] needs IMAGE_ID or IMAGE")
	case f.ImageID != nil && f.Image != "":
		return fmt.Errorf("$FILE[…]: give IMAGE_ID or IMAGE, not both")
	case f.ImageID != nil && f.ImageUname != "":
		return fmt.Errorf("$FILE[…]: IMAGE_UNAME goes with IMAGE, not with IMAGE_ID")
	}
	return nil
}

func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return s
}

// IsZero reports whether the reference is absent.
func (f FileRef) IsZero() bool { return f.ImageID == nil && f.Image == "" }

// String writes the reference back as $FILE[…] ("" for a zero reference).
func (f FileRef) String() string {
	switch {
	case f.ImageID != nil:
		return fmt.Sprintf("$FILE[IMAGE_ID=%d]", *f.ImageID)
	case f.Image == "":
		return ""
	case f.ImageUname != "":
		return fmt.Sprintf("$FILE[IMAGE=%s, IMAGE_UNAME=%s]", quote(f.Image), quote(f.ImageUname))
	}
	return fmt.Sprintf("$FILE[IMAGE=%s]", quote(f.Image))
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
