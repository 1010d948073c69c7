package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/s3iam"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/up"
)

// TestUpWithS3Remotes runs `slipway up --s3-remotes FILE` as a person
// types it (the CLI's up command, its own MinIO child with one MinIO user
// per service) with a second MinIO as the remote "archive": the output
// names the remote and exports SLIPWAY_S3_REMOTES; a datastore created on
// it takes an upload imported READY whose blob is on the remote only;
// `image download` (temporary keys of the remote's STS) gives the same
// bytes; Ctrl-C stops the stack.
func TestUpWithS3Remotes(t *testing.T) {
	t.Setenv("SLIPWAY_MARKET_MONITORING", "off")
	for _, k := range []string{"SLIPWAY_S3_ACCESS_KEY", "SLIPWAY_S3_SECRET_KEY", "SLIPWAY_S3_KEYS_FILE", blob.EnvRemotes} {
		t.Setenv(k, "")
	}
	far, stopFar, err := testenv.StartMinIO(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopFar)
	farStore, err := blob.New(far.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	conf := t.TempDir()
	if err := blob.WriteKeys(filepath.Join(conf, "archive.json"), blob.Keys{AccessKey: far.AccessKey, SecretKey: far.SecretKey}); err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + far.Endpoint
	remotes := writeFile(t, "remotes.json", fmt.Sprintf(`{"remotes": [{"name": "archive", "endpoint": %q, "region": "us-east-1",
		"keys_file": %q, "buckets": ["slipway-ds-archive-*"]}]}`, endpoint, filepath.Join(conf, "archive.json")))

	bin, err := testenv.MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := dataDir(t)
	minioAddr := fmt.Sprintf("127.0.0.1:%d", mustFreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &testenv.Buffer{} // written by up while the test reads it
	done := make(chan int, 1)
	go func() {
		done <- Execute(ctx, []string{"up", "--data-dir", dir, "--nats-port", "-1", "--minio-bin", bin, "--minio-address", minioAddr,
			"--s3-remotes", remotes, "--websocket-addr", "", "--console-addr", "", "--log-level", "warn"}, out, newTestLog(t))
	}()
	deadline := time.After(2 * time.Minute)
	for !strings.Contains(out.String(), "slipway is up") {
		select {
		case code := <-done:
			t.Fatalf("up exited %d before it was up:\n%s", code, out.String())
		case <-deadline:
			t.Fatalf("not up after 2 minutes:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	text := out.String()
	for _, want := range []string{"S3 remote archive " + endpoint + " holds slipway-ds-archive-* (datastores with CREDENTIALS = \"archive\")",
		"export " + blob.EnvRemotes + "=" + remotes} {
		if !strings.Contains(text, want) {
			t.Errorf("up's output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, far.SecretKey) {
		t.Errorf("up's output shows the remote's secret key")
	}
	flags := []string{"--nats-url", exported(t, text, "SLIPWAY_NATS_URL"), "--creds", filepath.Join(dir, up.CredentialsFile), "--s3-endpoint", minioAddr}

	bucket := "slipway-ds-archive-" + strings.ToLower(testenv.Unique())
	r := must(t, slipway(t, flags, "datastore", "create", writeFile(t, "arc.tpl", fmt.Sprintf(
		"NAME = arc\nTYPE = IMAGE_DS\nDS_MAD = s3\nBUCKET = %q\nENDPOINT = %q\nCREDENTIALS = \"archive\"\n", bucket, endpoint))), "datastore create")
	if strings.TrimSpace(r.stdout) != "ID: 100" {
		t.Errorf("datastore create: %q", r.stdout)
	}
	disk := qcow2(t)
	must(t, slipway(t, flags, "image", "create", "--name", "far", "--datastore", "arc", "--path", disk, "--wait", "--timeout", "2m"), "image create into arc")
	var img schemas.Image
	if err := json.Unmarshal([]byte(must(t, slipway(t, flags, "image", "show", "far", "--json"), "image show").stdout), &img); err != nil {
		t.Fatal(err)
	}
	b, k, err := blob.ParseURL(img.Source)
	if err != nil || img.State != "READY" || img.Datastore != "arc" || b != bucket {
		t.Fatalf("image far: %s in %q at %s, want READY in arc (%s)", img.State, img.Datastore, img.Source, bucket)
	}
	if sum, _, err := farStore.SHA256(context.Background(), b, k); err != nil || sum != img.SHA256 {
		t.Errorf("the blob on the remote: sha256 %s %v, the catalog says %s", sum, err, img.SHA256)
	}
	root, err := blob.ReadKeys(filepath.Join(dir, up.S3KeysDir, s3iam.RootKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	own, err := blob.New(blob.Config{Endpoint: minioAddr, Region: "us-east-1"}.WithKeys(root))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := own.Client().BucketExists(context.Background(), bucket); err != nil || ok {
		t.Errorf("bucket %s on up's own MinIO: exists %v %v", bucket, ok, err)
	}
	got := filepath.Join(t.TempDir(), "got")
	must(t, slipway(t, flags, "image", "download", "far", "-o", got), "image download")
	if sum := testenv.FileSHA256(t, got); fmt.Sprintf("%x", sum) != img.SHA256 {
		t.Errorf("the download has sha256 %x, the image %s", sum, img.SHA256)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("up exited %d after the interrupt:\n%s", code, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("up did not stop within a minute of the interrupt")
	}
}

// exported is the value of `export name=value` in up's output.
func exported(t *testing.T, text, name string) string {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "export "+name+"="); ok {
			return v
		}
	}
	t.Fatalf("up's output exports no %s:\n%s", name, text)
	return ""
}

func mustFreePort(t *testing.T) int {
	t.Helper()
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
