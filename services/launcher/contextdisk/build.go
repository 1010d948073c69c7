package contextdisk

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build writes the context ISO to path (replacing it): context.sh with vars, and files at
// the top level under their names. It runs genisoimage with Rock Ridge and Joliet so the
// guest sees the real names when it mounts the disk; the plain ISO9660 names (CONTEXT.SH;1)
// serve readers without extensions, such as the guest init. The image is written beside
// path and renamed into place, so on error nothing is left at path.
func Build(path string, vars []Var, files []File) error {
	if err := checkVars(vars); err != nil {
		return err
	}
	if err := checkFiles(files); err != nil {
		return err
	}
	tool, err := exec.LookPath("genisoimage")
	if err != nil {
		return fmt.Errorf("contextdisk: genisoimage not found (install genisoimage): %w", err)
	}
	stage, err := os.MkdirTemp("", "contextdisk-")
	if err != nil {
		return fmt.Errorf("contextdisk: %w", err)
	}
	defer os.RemoveAll(stage)
	script := filepath.Join(stage, ScriptName)
	if err := writeScriptFile(script, vars); err != nil {
		return err
	}
	return buildISO(tool, path, script, files)
}

// buildISO runs genisoimage into a temporary file beside path and renames it.
func buildISO(tool, path, script string, files []File) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("contextdisk: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmpName)
		}
	}()
	args := []string{"-quiet", "-o", tmpName, "-V", Label, "-J", "-joliet-long", "-r",
		"-input-charset", "utf-8", "-graft-points", graft(ScriptName, script)}
	for _, f := range files {
		args = append(args, graft(f.Name, f.Path))
	}
	cmd := exec.Command(tool, args...)
	cmd.Env = []string{} // the tool needs nothing from ours
	var stderr tail
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("contextdisk: genisoimage: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Chmod(tmpName, 0o600); err != nil { // context.sh may hold secrets
		return fmt.Errorf("contextdisk: %w", err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("contextdisk: %w", err)
	}
	ok = true
	return nil
}

// graft writes a genisoimage graft point name=path; '\' and '=' in either side are escaped
// with '\' as genisoimage expects.
func graft(name, path string) string {
	esc := strings.NewReplacer(`\`, `\\`, `=`, `\=`)
	return esc.Replace(name) + "=" + esc.Replace(path)
}

func writeScriptFile(path string, vars []Var) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("contextdisk: %w", err)
	}
	w := bufio.NewWriter(f)
	if err := WriteScript(w, vars); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("contextdisk: %w", err)
	}
	return f.Close()
}

// WriteScript writes context.sh for vars as OpenNebula does: the header line, then one
// KEY='value' line per variable. A single quote in a value ends the quoted string, is
// written escaped, and a new quoted string starts (the shell idiom quote, backslash,
// quote, quote). Values may span lines (the quotes keep them one shell word).
func WriteScript(w io.Writer, vars []Var) error {
	if err := checkVars(vars); err != nil {
		return err
	}
	if _, err := io.WriteString(w, Header+"\n"); err != nil {
		return fmt.Errorf("contextdisk: %w", err)
	}
	for _, v := range vars {
		line := v.Name + "='" + strings.ReplaceAll(v.Value, "'", `'\''`) + "'\n"
		if _, err := io.WriteString(w, line); err != nil {
			return fmt.Errorf("contextdisk: %w", err)
		}
	}
	return nil
}

func checkVars(vars []Var) error {
	seen := map[string]bool{}
	for _, v := range vars {
		if !validName(v.Name) {
			return fmt.Errorf("contextdisk: variable name %q must be letters, digits and '_', not starting with a digit", v.Name)
		}
		if seen[v.Name] {
			return fmt.Errorf("contextdisk: variable %s is given twice", v.Name)
		}
		seen[v.Name] = true
		if strings.IndexByte(v.Value, 0) >= 0 {
			return fmt.Errorf("contextdisk: variable %s holds a NUL byte", v.Name)
		}
	}
	return nil
}

func checkFiles(files []File) error {
	seen := map[string]bool{ScriptName: true}
	for _, f := range files {
		switch {
		case f.Name == "" || f.Name == "." || f.Name == ".." || strings.ContainsAny(f.Name, "/\x00"):
			return fmt.Errorf("contextdisk: file name %q must be a plain file name", f.Name)
		case len(f.Name) > 200:
			return fmt.Errorf("contextdisk: file name %q is longer than 200 bytes", f.Name)
		case seen[f.Name]:
			return fmt.Errorf("contextdisk: file name %q is used twice (or clashes with %s)", f.Name, ScriptName)
		}
		seen[f.Name] = true
		st, err := os.Stat(f.Path)
		if err != nil {
			return fmt.Errorf("contextdisk: file %s: %w", f.Name, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("contextdisk: file %s: %s is not a regular file", f.Name, f.Path)
		}
	}
	return nil
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

// tail keeps the last 8 KiB written to it (a child's stderr, for error messages).
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = t.b[len(t.b)-8<<10:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }
