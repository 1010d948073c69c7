package fsimage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
)

func TestDebugfsQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/passwd":    `"/etc/passwd"`,
		`/a"b`:           `"/a""b"`,
		"/with space":    `"/with space"`,
		"/!bang":         `"/!bang"`,
		"/caf\xc3\xa9":   "\"/caf\xc3\xa9\"",
		`/""`:            `"/"""""`,
		"user.a b":       `"user.a b"`,
		"<12>":           `"<12>"`,
		"/;rm -rf /":     `"/;rm -rf /"`,
		"/`id`/$(id)/\\": "\"/`id`/$(id)/\\\"",
	} {
		got, err := debugfsQuote(in)
		if err != nil || got != want {
			t.Errorf("debugfsQuote(%q) = %q, %v; want %q", in, got, err, want)
		}
		if back, ok := ssToken(got); !ok || back != in {
			t.Errorf("debugfs reads %q back as %q (%v)", got, back, ok)
		}
	}
	for _, bad := range []string{"a\nb", "a\rb", "a\x00b", "a\tb", "\x1b[31m", "a\x7fb", "user.a\ndump \"/payload\" /host/path\nx"} {
		var ee *EncodeError
		if _, err := debugfsQuote(bad); !errors.As(err, &ee) || ee.Language != "debugfs" {
			t.Errorf("debugfsQuote(%q) = %v, want a refusal", bad, err)
		}
	}
}

func TestXFSDBWord(t *testing.T) {
	for _, ok := range []string{"comment", "a.b-c_d", "x=1", "caps+all"} {
		if got, err := xfsDBWord(ok); err != nil || got != ok {
			t.Errorf("xfsDBWord(%q) = %q, %v", ok, got, err)
		}
	}
	for _, bad := range []string{"", "a b", "a\nsource /tmp/x", "a\tb", `a"b`, "a'b", `a\b`, "a#b", "caf\xc3\xa9", "a\x00"} {
		if _, err := xfsDBWord(bad); err == nil {
			t.Errorf("xfsDBWord(%q) accepted", bad)
		}
	}
}

func TestProtoWord(t *testing.T) {
	for _, ok := range []string{"file", "caf\xc3\xa9", "a:b", "$a", "a$", `a"b`} {
		if got, err := protoWord(ok); err != nil || got != ok {
			t.Errorf("protoWord(%q) = %q, %v", ok, got, err)
		}
	}
	for _, bad := range []string{"", "$", ":comment", "a b", "a\nb 0 0 0 /etc/shadow", "a\tb", "a\rb", "a\x00", "a\x7f"} {
		if _, err := protoWord(bad); err == nil {
			t.Errorf("protoWord(%q) accepted", bad)
		}
	}
}

// The reproduced attack: an xattr name that carries a newline and a debugfs
// dump command. Nothing may be written outside the image, and the build
// fails naming the entry.
func TestHostileXattrNameNeverReachesDebugfs(t *testing.T) {
	ctx := context.Background()
	hostPath := filepath.Join(t.TempDir(), "written-by-debugfs")
	hostile := "user.a\ndump \"/payload\" " + hostPath + "\nx"
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			f := newFixture(t)
			f.File("payload", []byte("from the layer\n"), 0o644, 0, 0)
			e := f.File("victim", []byte("x"), 0o644, 0, 0)
			e.Xattrs = map[string]string{hostile: "v"}
			out := filepath.Join(t.TempDir(), "img")
			_, err := Build(ctx, f.Root, f.Tree, out, Options{Filesystem: fs})
			if err == nil || !strings.Contains(err.Error(), `entry "victim"`) {
				t.Errorf("Build = %v, want a refusal naming the entry", err)
			}
			if _, err := os.Stat(hostPath); !os.IsNotExist(err) {
				t.Fatalf("debugfs wrote %s on the host", hostPath)
			}
		})
	}
	// The encoders refuse on their own, without Build's checks in front.
	f := newFixture(t)
	e := f.File("victim", []byte("x"), 0o644, 0, 0)
	e.Xattrs = map[string]string{hostile: "v"}
	work := t.TempDir()
	if err := writeExtScript(f.Root, f.Tree, filepath.Join(work, "script"), work); err == nil ||
		!strings.Contains(err.Error(), `entry "victim"`) {
		t.Errorf("writeExtScript = %v", err)
	}
	if _, err := xfsFixes(1, e, e); err == nil {
		t.Error("xfsFixes accepted the name")
	}
	if err := checkProtoName(&tree.Entry{Path: "a\nb", Type: tree.Regular}); err == nil {
		t.Error("checkProtoName accepted a newline")
	}
}
