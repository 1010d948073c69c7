package catalog

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestAliceWithTheNATSCLI: alice, holding nothing but her credentials file
// and the plain `nats` CLI, tries to delete, rename and disable bob's
// image on every subject she can name: with her own token the server takes
// the command and the catalog refuses it (forbidden); with bob's token,
// with no token, or with a wildcard, the server refuses the publish. Bob's
// image is untouched. Once bob opens it to others for use (604) alice sees
// it and a VM of hers may use it, and she still cannot delete it.
func TestAliceWithTheNATSCLI(t *testing.T) {
	natsBin := testenv.NeedRepoFile(t, "bin/nats", "run make tools")
	h := newHarness(t)
	_, creds := h.newUserCreds("alice", "")
	bob := h.newUser("bob", "")
	img := h.bobsImage(bob)
	commands := record(t, testenv.Dial(t, h.url), "slipway.cmd.catalog.>")

	natsCLI := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(natsBin, append([]string{"--server", h.url, "--creds", creds,
			"--inbox-prefix", schemas.InboxPrefix("alice"), "--timeout", "1s"}, args...)...)
		cmd.Env = []string{"HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// forbidden publishes subject as alice and waits for the catalog's
	// refusal of that very command.
	forbidden := func(subject, body string) {
		t.Helper()
		refusal := func(m *nats.Msg) bool {
			var f schemas.Failure
			return strings.HasPrefix(m.Subject, "slipway.evt.catalog.failed.") && json.Unmarshal(m.Data, &f) == nil &&
				f.Command == subject && f.Code == schemas.CodeForbidden && strings.Contains(f.Error, "user alice may not manage image")
		}
		before := len(h.rec.All(refusal))
		if out, err := natsCLI("pub", subject, body); err != nil {
			t.Fatalf("nats pub %s: %v\n%s", subject, err, out)
		}
		if !testenv.Eventually(30*time.Second, 20*time.Millisecond, func() bool { return len(h.rec.All(refusal)) > before }) {
			t.Fatalf("no refusal of %s by the catalog:\n%s", subject, h.rec.Dump())
		}
	}
	// refused publishes subject as alice: the server says no, and the
	// command never reaches the stream.
	var refusedSubjects []string
	refused := func(subject, body string) {
		t.Helper()
		// The CLI reports the server's refusal and still exits 0.
		out, _ := natsCLI("req", subject, body)
		if !strings.Contains(out, `Permissions Violation for Publish to "`+subject+`"`) {
			t.Errorf("nats req %s: want a permissions violation:\n%s", subject, out)
		}
		refusedSubjects = append(refusedSubjects, subject)
	}

	bodies := map[string]string{
		schemas.CommandCatalogImageDelete:  fmt.Sprintf(`{"id":%d}`, img.ID),
		schemas.CommandCatalogImageDisable: fmt.Sprintf(`{"id":%d}`, img.ID),
		schemas.CommandCatalogImageRename:  fmt.Sprintf(`{"id":%d,"name":"mine"}`, img.ID),
	}
	for verb, body := range bodies {
		subject := "slipway.cmd.catalog." + verb
		forbidden(subject+".alice", body)
		for _, s := range []string{subject + ".bob", subject, subject + ".*", subject + ".>", "slipway.cmd.catalog.*.bob", "slipway.cmd.>",
			subject + ".catalog", subject + ".oneadmin"} {
			refused(s, body)
		}
	}
	// Last, one she may send: everything refused before it would have been
	// recorded by now.
	forbidden("slipway.cmd.catalog."+schemas.CommandCatalogImageChmod+".alice", fmt.Sprintf(`{"id":%d,"permissions":"666"}`, img.ID))
	for _, m := range commands.All(func(*nats.Msg) bool { return true }) {
		for _, s := range refusedSubjects {
			if m.Subject == s {
				t.Errorf("the refused %s reached the command stream", s)
			}
		}
		if !strings.HasSuffix(m.Subject, ".alice") {
			t.Errorf("a command of alice's on %s", m.Subject)
		}
	}
	// Nor may she read it.
	if out, err := natsCLI("req", "slipway.api.catalog.show.alice", fmt.Sprintf(`{"id":%d}`, img.ID)); err != nil || !strings.Contains(out, "403") {
		t.Errorf("alice shows bob's 600 image: %v\n%s", err, out)
	}
	if got := h.mustShow(img.ID); got.Name != img.Name || got.State != img.State || got.Permissions != "600" || got.User != "bob" {
		t.Errorf("bob's image after alice's attempts: %+v, was %+v", got, img)
	}

	// bob opens it for use: 604. Alice sees it, a VM of hers may use it.
	if err := h.as(bob, schemas.CommandCatalogImageChmod, schemas.ImageChmod{ID: img.ID, Permissions: "604"}, schemas.EventCatalogImageUpdated); err != nil {
		t.Fatalf("bob chmods his image: %v", err)
	}
	if out, err := natsCLI("req", "slipway.api.catalog.show.alice", fmt.Sprintf(`{"id":%d}`, img.ID)); err != nil || !strings.Contains(out, `"604"`) {
		t.Errorf("alice shows bob's 604 image: %v\n%s", err, out)
	}
	if err := h.as(h.connect(schemas.ServiceLauncher), schemas.CommandCatalogImageUse,
		schemas.ImageUse{ID: img.ID, VMID: 1, OnBehalfOf: "alice"}, schemas.EventCatalogImageUsed); err != nil {
		t.Errorf("a VM of alice's uses bob's 604 image: %v", err)
	}
	forbidden("slipway.cmd.catalog."+schemas.CommandCatalogImageDelete+".alice", bodies[schemas.CommandCatalogImageDelete])
	forbidden("slipway.cmd.catalog."+schemas.CommandCatalogImageRename+".alice", bodies[schemas.CommandCatalogImageRename])
	if got := h.mustShow(img.ID); got.Name != img.Name || got.User != "bob" || got.Permissions != "604" {
		t.Errorf("bob's 604 image after alice's rename: %+v", got)
	}
}
