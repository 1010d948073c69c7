package publishedtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/slipway/slipway/services/market-lxc/published"
)

// Publisher is what both private marketplaces offer a publisher.
type Publisher interface {
	Publish(ctx context.Context, a published.App, r io.Reader) (published.App, error)
	Delete(ctx context.Context, name string) error
}

// Lister is what both offer a reader.
type Lister interface {
	List(ctx context.Context) ([]published.Entry, error)
	Open(ctx context.Context, a published.App) (io.ReadCloser, error)
}

// Instance is one fresh marketplace under test.
type Instance struct {
	// Pub and Other publish into it as two processes would (each with
	// its own lock descriptor or S3 client).
	Pub, Other Publisher
	// Lister reads it as another Slipway would.
	Lister Lister
	// Stored lists what is stored, as paths relative to the base, but
	// for the publisher's private state (PUBLIC_DIR/.slipway).
	Stored func(t *testing.T) []string
	// BlobURL is where a lister must say a's blob is.
	BlobURL func(a published.App) string
}

// Suite runs the behaviour every private marketplace shares against the
// instances newInstance makes, with blobs in format. bigBlob is a size
// that takes the backend's large-file path (a multipart upload).
func Suite(t *testing.T, format string, bigBlob int, newInstance func(t *testing.T) Instance) {
	app := func(name string, data []byte) published.App { return App(name, format, data) }
	t.Run("PublishListDownload", func(t *testing.T) { publishListDownload(t, newInstance(t), app, bigBlob) })
	t.Run("WrongSHA256LeavesNothing", func(t *testing.T) { wrongSHA256LeavesNothing(t, newInstance(t), app, bigBlob) })
	t.Run("DeleteRemovesEverything", func(t *testing.T) { deleteRemovesEverything(t, newInstance(t), app) })
	t.Run("ConcurrentPublishesKeepEveryEntry", func(t *testing.T) { concurrentPublishes(t, newInstance(t), app) })
}

type appFunc func(name string, data []byte) published.App

func publishListDownload(t *testing.T, m Instance, app appFunc, bigBlob int) {
	ctx := context.Background()
	blobs := map[string][]byte{"alpine-3.20": Payload("alpine", bigBlob), "debian-12": Payload("debian", 70000)}
	for name, data := range blobs {
		a, err := m.Pub.Publish(ctx, app(name, data), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if a.Blob != published.BlobPath(name, a.Format) || a.Created.IsZero() {
			t.Fatalf("published %+v", a)
		}
	}
	entries, err := m.Lister.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name != "alpine-3.20" || entries[1].Name != "debian-12" {
		t.Fatalf("listed %+v", entries)
	}
	for _, e := range entries {
		want := blobs[e.Name]
		sent := app(e.Name, want)
		if e.BlobURL != m.BlobURL(e.App) || e.SHA256 != SHA256(want) || e.Size != int64(len(want)) ||
			e.VMTemplate != sent.VMTemplate || e.VirtualSize != sent.VirtualSize || e.Version != sent.Version ||
			e.Description != sent.Description || e.Publisher != sent.Publisher {
			t.Fatalf("entry %+v, published %+v", e, sent)
		}
		if got := ReadApp(t, m.Lister, e.App); !bytes.Equal(got, want) {
			t.Fatalf("%s: read %d bytes back (sha256 %s), want %d (%s)", e.Name, len(got), SHA256(got), len(want), e.SHA256)
		}
	}
	data := blobs["debian-12"]
	if _, err := m.Other.Publish(ctx, app("debian-12", data), bytes.NewReader(data)); !errors.Is(err, published.ErrExists) {
		t.Fatalf("republishing debian-12: %v, want ErrExists", err)
	}
}

func wrongSHA256LeavesNothing(t *testing.T, m Instance, app appFunc, bigBlob int) {
	ctx := context.Background()
	for _, size := range []int{1000, bigBlob} {
		data := Payload("x", size)
		wrong := app("bad-"+strconv.Itoa(size), data)
		wrong.SHA256 = SHA256([]byte("other"))
		_, err := m.Pub.Publish(ctx, wrong, bytes.NewReader(data))
		if err == nil || !strings.Contains(err.Error(), "expected "+wrong.SHA256+", got "+SHA256(data)) {
			t.Fatalf("%d bytes with a wrong sha256: %v", size, err)
		}
	}
	data := Payload("y", 1000)
	if _, err := m.Pub.Publish(ctx, app("short", data), bytes.NewReader(data[:500])); err == nil {
		t.Fatal("a blob shorter than declared was published")
	}
	if _, err := m.Pub.Publish(ctx, app("long", data[:900]), bytes.NewReader(data)); err == nil {
		t.Fatal("a blob longer than declared was published")
	}
	if stored := m.Stored(t); len(stored) != 0 {
		t.Fatalf("left after refused publishes: %v", stored)
	}
	if entries, err := m.Lister.List(ctx); err == nil && len(entries) != 0 {
		t.Fatalf("listed %+v", entries)
	}
}

func deleteRemovesEverything(t *testing.T, m Instance, app appFunc) {
	ctx := context.Background()
	for _, n := range []string{"keep", "gone"} {
		data := Payload(n, 5000)
		if _, err := m.Pub.Publish(ctx, app(n, data), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Other.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Stored(t) {
		if strings.HasPrefix(p, published.AppDir("gone")) {
			t.Fatalf("%s left after delete", p)
		}
	}
	entries, err := m.Lister.List(ctx)
	if err != nil || len(entries) != 1 || entries[0].Name != "keep" {
		t.Fatalf("after delete: %+v, %v", entries, err)
	}
	if err := m.Pub.Delete(ctx, "gone"); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
	if err := m.Pub.Delete(ctx, "../keep"); err == nil {
		t.Fatal("Delete accepted ../keep")
	}
	data := Payload("again", 10)
	if _, err := m.Pub.Publish(ctx, app("gone", data), bytes.NewReader(data)); err != nil {
		t.Fatalf("publishing a deleted name again: %v", err)
	}
}

// concurrentPublishes publishes 12 names from two publishers at once, and
// one name from both: every distinct name must be listed, and exactly one
// of the two publishers of the shared name must win, with its blob.
func concurrentPublishes(t *testing.T, m Instance, app appFunc) {
	ctx := context.Background()
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n+2)
	for i := range n {
		wg.Go(func() {
			pub := []Publisher{m.Pub, m.Other}[i%2]
			data := Payload(strconv.Itoa(i), 5000+i)
			if _, err := pub.Publish(ctx, app(fmt.Sprintf("app-%02d", i), data), bytes.NewReader(data)); err != nil {
				errs <- err
			}
		})
	}
	same := [][]byte{Payload("first", 7000), Payload("second", 7000)}
	won := make(chan int, 2)
	for i, data := range same {
		wg.Go(func() {
			pub := []Publisher{m.Pub, m.Other}[i]
			_, err := pub.Publish(ctx, app("contested", data), bytes.NewReader(data))
			switch {
			case err == nil:
				won <- i
			case !errors.Is(err, published.ErrExists):
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	close(won)
	for err := range errs {
		t.Error(err)
	}
	var winners []int
	for i := range won {
		winners = append(winners, i)
	}
	if len(winners) != 1 {
		t.Fatalf("%d publishers of one name succeeded", len(winners))
	}
	entries, err := m.Lister.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n+1 {
		t.Fatalf("%d entries after %d concurrent publishes of distinct names", len(entries), n+1)
	}
	for i, e := range entries[:n] {
		if e.Name != fmt.Sprintf("app-%02d", i) || e.Size != int64(5000+i) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	if e := entries[n]; e.Name != "contested" || !bytes.Equal(ReadApp(t, m.Lister, e.App), same[winners[0]]) {
		t.Fatalf("the contested app does not hold its winner's blob")
	}
}

// ReadApp reads a's blob through l to its end.
func ReadApp(t *testing.T, l Lister, a published.App) []byte {
	t.Helper()
	rc, err := l.Open(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
