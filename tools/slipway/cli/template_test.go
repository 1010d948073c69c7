package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTemplateFileMergedWithFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "image.tmpl")
	text := `# an image
NAME        = "Ubuntu noble"
PATH        = "https://example.test/noble.img"
DESCRIPTION = "Ubuntu \"noble\" cloud image"
TYPE        = os
PERSISTENT  = yes
dev_prefix  = vd
OS_FAMILY   = debian
`
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	tmpl, err := readTemplateFile("image template", file, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := buildCreate(tmpl, createFlags{datastore: "default", target: "vdb"}, changedSet("target"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Ubuntu noble" || c.Path != "https://example.test/noble.img" || c.Description != `Ubuntu "noble" cloud image` ||
		c.Type != "OS" || !c.Persistent || c.DevPrefix != "vd" || c.Target != "vdb" || c.Attributes["OS_FAMILY"] != "debian" || len(c.Attributes) != 1 {
		t.Errorf("merged: %+v", c)
	}
}

func TestTemplateErrors(t *testing.T) {
	if _, err := parseTemplate(strings.NewReader("NAME = x\nDISK = [ IMAGE_ID = 3 ]\n")); err == nil || !strings.Contains(err.Error(), "DISK") {
		t.Errorf("vector: err = %v", err)
	}
	if _, err := parseTemplate(strings.NewReader("NAME = \"unterminated\n")); err == nil {
		t.Error("syntax error accepted")
	}
	code, _, stderr := runCLI(t, "image", "create", filepath.Join(t.TempDir(), "missing.tmpl"))
	if code != 1 || !strings.Contains(stderr, "missing.tmpl") {
		t.Errorf("missing template: exit %d, %q", code, stderr)
	}
}
