package bus

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/schemas"
)

// The two benchmarks measure the same exchange: a command is published, its
// consumer publishes an event, and a second consumer receives the event. The
// round trips run one after the other, so the numbers are latencies. Each
// benchmark takes at least benchSamples samples whatever b.N is (`make
// bench` runs -benchtime 1x), and the bus one measures the bare baseline
// too and reports the ratio.

const (
	benchSamples = 300
	benchWarmup  = 20
)

func BenchmarkCommandEventRoundTrip(b *testing.B) {
	srv := startServer(b)
	busLat := measureBus(b, srv, max(b.N, benchSamples))
	bareLat := measureBare(b, srv, max(b.N, benchSamples))
	report(b, busLat)
	p50, bareP50 := percentile(busLat, 50), percentile(bareLat, 50)
	b.ReportMetric(float64(p50)/float64(bareP50), "x-bare-p50")
	b.ReportMetric(float64(percentile(busLat, 99))/float64(percentile(bareLat, 99)), "x-bare-p99")
	b.Logf("bus p50 %s p99 %s; bare JetStream p50 %s p99 %s; ratio p50 %.2f",
		p50, percentile(busLat, 99), bareP50, percentile(bareLat, 99), float64(p50)/float64(bareP50))
}

func BenchmarkBareJetStreamRoundTrip(b *testing.B) {
	srv := startServer(b)
	report(b, measureBare(b, srv, max(b.N, benchSamples)))
}

func report(b *testing.B, lat []time.Duration) {
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(lat)), "ns/op")
	b.ReportMetric(float64(percentile(lat, 50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 99).Microseconds()), "p99-µs")
}

func percentile(lat []time.Duration, p int) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

// measureBus runs n command → handler → event round trips through Bus on
// an open server.
func measureBus(b *testing.B, srv *server.Server, n int) []time.Duration {
	cli := newBus(b, srv, "cli")
	// A command and an event of the contract: the bus refuses any other.
	return measureBuses(b, cli, newBus(b, srv, "converter"), cli, n)
}

// measureBuses runs n round trips: sender commands the converter, worker
// (the converter) answers with an event, watcher receives it.
func measureBuses(b *testing.B, sender, worker, watcher *Bus, n int) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopW, err := worker.ConsumeCommands(ctx, func(ctx context.Context, m *Msg) error {
		_, err := worker.Event(ctx, "converted", "1", m.Data, CausedBy(m.Envelope))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	defer stopW.Stop()
	got := make(chan struct{}, 1)
	stopE, err := watcher.ConsumeEvents(ctx, "bench", []string{watcher.EventSubject("converter", "converted", "*")},
		func(context.Context, *Msg) error { got <- struct{}{}; return nil }, DeliverNew())
	if err != nil {
		b.Fatal(err)
	}
	defer stopE.Stop()
	body := []byte(`{"name":"bench"}`)
	return sample(b, n, func() error {
		_, err := sender.Command(ctx, "converter", "import", body)
		return err
	}, got)
}

// BenchmarkAuthenticatedRoundTrip is the bus round trip on a server that
// authenticates, as `slipway up` runs: each side holds its principal's JWT
// (the catalog commands, the converter answers, an administrator
// watches), and the server checks every publish and subscription against
// its permissions. The baseline is the same exchange on an open server,
// in the same run.
func BenchmarkAuthenticatedRoundTrip(b *testing.B) {
	n := max(b.N, benchSamples)
	// The same three connections on both servers: the catalog commands,
	// the converter answers, a third watches.
	open := startServer(b)
	openLat := measureBuses(b, newBus(b, open, "catalog"), newBus(b, open, "converter"), newBus(b, open, "cli"), n)
	auth, srv, catalog := authServer(b)
	as := func(p identity.Principal, service string) *Bus { return authBus(b, auth, srv.ClientURL(), p, service) }
	authLat := measureBuses(b, catalog, as(identity.Service(schemas.ServiceConverter), schemas.ServiceConverter),
		as(identity.User("oneadmin", true), "cli"), n)
	report(b, authLat)
	p50, p99 := percentile(authLat, 50), percentile(authLat, 99)
	openP50, openP99 := percentile(openLat, 50), percentile(openLat, 99)
	b.ReportMetric(float64(p50)/float64(openP50), "x-open-p50")
	b.ReportMetric(float64(p99)/float64(openP99), "x-open-p99")
	b.Logf("authenticated p50 %s p99 %s; open server p50 %s p99 %s; ratio p50 %.2f p99 %.2f",
		p50, p99, openP50, openP99, float64(p50)/float64(openP50), float64(p99)/float64(openP99))
}

// measureBare runs the same exchange with plain jetstream calls.
func measureBare(b *testing.B, srv *server.Server, n int) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	cmd, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BARE_CMD", Subjects: []string{"bare.cmd.>"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		b.Fatal(err)
	}
	evt, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BARE_EVT", Subjects: []string{"bare.evt.>"}})
	if err != nil {
		b.Fatal(err)
	}
	wc, err := cmd.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := wc.Consume(func(m jetstream.Msg) {
		// Errors only happen while the benchmark tears down.
		if _, err := js.Publish(ctx, "bare.evt.worker.done.1", m.Data()); err == nil {
			_ = m.Ack()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	ec, err := evt.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan struct{}, 1)
	ecc, err := ec.Consume(func(m jetstream.Msg) { _ = m.Ack(); got <- struct{}{} })
	if err != nil {
		b.Fatal(err)
	}
	defer ecc.Stop()
	body := []byte(`{"name":"bench"}`)
	return sample(b, n, func() error {
		_, err := js.Publish(ctx, "bare.cmd.worker.run", body)
		return err
	}, got)
}

func sample(b *testing.B, n int, send func() error, got <-chan struct{}) []time.Duration {
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n + benchWarmup {
		t0 := time.Now()
		if err := send(); err != nil {
			b.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			b.Fatal("round trip timed out")
		}
		if i >= benchWarmup {
			lat = append(lat, time.Since(t0))
		}
	}
	b.StopTimer()
	return lat
}
