package cryptoluks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/pkg/worker/workertest"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/keywrap/keywraptest"
)

// TestConformance runs the workers' conformance suite against crypto-luks
// with encrypt commands; the slow one is held by a qemu-img wrapper that
// waits while a hold file exists.
func TestConformance(t *testing.T) {
	e := newEnv(t)
	real := testenv.Program(t, "qemu-img", "apt-get install qemu-utils")
	dir := t.TempDir()
	hold := filepath.Join(dir, "hold")
	wrapper := testenv.Script(t, "qemu-img", fmt.Sprintf("#!/bin/sh\nwhile [ -e %q ]; do sleep 0.05; done\nexec %q \"$@\"\n", hold, real))
	keys := keywraptest.New(t)
	e.sourceImage("conformance.raw", 4<<20)
	src := "s3://src/images/conformance.raw"
	next := workertest.Seq(9000)
	// Each command is a saga of its own, as each encryption is.
	encrypt := func(id int64, dest func(saga string) string) workertest.Command {
		saga := envelope.NewID()
		return workertest.Command{Verb: "encrypt", ID: idToken(id), Opts: []bus.PubOption{bus.WithCorrelation(saga)},
			Data: schemas.CryptoLuksEncrypt{ImageID: id, Source: src, SourceFormat: schemas.DiskFormatRaw, Dest: dest(saga)}}
	}
	derived := func(id int64) func(string) string {
		return func(saga string) string { return blob.URL("dst", blob.AttemptPrefix(id, saga)+"disk.luks") }
	}
	workertest.Run(t, workertest.Adapter{
		Client: e.bus, Service: Name, Succeeded: "encrypted", Failed: "failed",
		Start: func(t *testing.T) func() {
			b, err := bus.Connect(context.Background(), bus.Config{URL: e.url, Service: Name, Logger: quiet()},
				testenv.As(t, e.url, testenv.Principal(Name))...)
			if err != nil {
				t.Fatal(err)
			}
			svc := New(b, e.store, Config{Config: worker.Config{TempDir: t.TempDir(), ProgressInterval: 50 * time.Millisecond,
				AckWait: 2 * time.Second}, Keys: keys, IterTime: 10 * time.Millisecond, Locations: testLocations, QemuImg: wrapper})
			stop := workertest.Start(t, svc.Run, svc.Ready())
			return func() { stop(); b.Close() }
		},
		Good: func(*testing.T) workertest.Command { id := next(); return encrypt(id, derived(id)) },
		Bad: func(*testing.T) workertest.Command {
			return encrypt(next(), func(string) string { return blob.URL("dst", "elsewhere/disk.luks") })
		},
		Slow: func(t *testing.T) (workertest.Command, func()) {
			if err := os.WriteFile(hold, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			release := func() { once.Do(func() { os.Remove(hold) }) }
			t.Cleanup(release)
			id := next()
			return encrypt(id, derived(id)), release
		},
	})
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
