package cli

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// withCreds is flags with --creds replaced by creds.
func withCreds(flags []string, creds string) []string {
	out := slices.Clone(flags)
	for i := range out {
		if out[i] == "--creds" && i+1 < len(out) {
			out[i+1] = creds
		}
	}
	return out
}

// TestEndToEndQuotaAndListFilters runs the real stack: oneadmin creates
// alice and gives her one image; her second is refused naming the quota;
// user show reports the usage; image list's filter flags pick hers or
// everyone's. (That alice cannot set quotas is the catalog's
// TestQuotaOnlyAdministrators: here the CLI would wait out its timeout.)
func TestEndToEndQuotaAndListFilters(t *testing.T) {
	flags, _ := stack(t)
	creds := filepath.Join(t.TempDir(), "alice.creds")
	must(t, slipway(t, flags, "user", "create", "alice", "--out", creds))
	r := must(t, slipway(t, flags, "user", "quota", "alice", "--images", "1"))
	if !strings.Contains(r.stdout, "user alice: default: images 1, MB default") {
		t.Errorf("user quota: %q", r.stdout)
	}
	alice := withCreds(flags, creds)

	must(t, slipway(t, alice, "image", "create", "--name", "a1", "--type", "DATABLOCK", "--size", "2", "--wait", "--timeout", "2m"))
	r = slipway(t, alice, "image", "create", "--name", "a2", "--type", "DATABLOCK", "--size", "2")
	if r.code != 1 || !strings.Contains(r.stderr, "user alice: quota IMAGES 1 reached in datastore default") {
		t.Errorf("alice's second image: exit %d, stderr %q", r.code, r.stderr)
	}
	r = must(t, slipway(t, alice, "user", "show", "alice"))
	if !strings.Contains(r.stdout, "DATASTORE USAGE & QUOTAS") || !lineHas(r.stdout, "default", "1 / 1", "2 / default") {
		t.Errorf("user show alice:\n%s", r.stdout)
	}

	// oneadmin's own image; alice sees hers only, oneadmin both.
	must(t, slipway(t, flags, "image", "create", "--name", "o1", "--type", "DATABLOCK", "--size", "1", "--wait", "--timeout", "2m"))
	if got := names(list(t, alice)); got != "a1" {
		t.Errorf("alice lists %s", got)
	}
	if got := names(list(t, flags)); got != "a1,o1" {
		t.Errorf("oneadmin lists %s", got)
	}
	if got := names(list(t, flags, "--mine")); got != "o1" {
		t.Errorf("oneadmin lists --mine: %s", got)
	}
	if got := names(list(t, alice, "--group")); got != "a1" {
		t.Errorf("alice lists --group: %s", got)
	}
}

func names(images []listed) string {
	var out []string
	for _, img := range images {
		out = append(out, img.Name)
	}
	return strings.Join(out, ",")
}

// lineHas reports whether some line of text holds every field, in order.
func lineHas(text string, fields ...string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		rest, ok := line, true
		for _, f := range fields {
			i := strings.Index(rest, f)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(f):]
		}
		if ok {
			return true
		}
	}
	return false
}
