package identity_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// jsAction is one JetStream API call, a KV write, an ack or a flow-control
// reply, on one stream (and consumer) of the installation.
type jsAction struct {
	subject string
	// what the action is, to state the rules by: "stream.info",
	// "consumer.create.filtered", "kv.put" …
	what     string
	stream   string
	consumer string
}

// streamOwner says whose a stream is: the services keeping a bucket's
// stream (one, or those sharing it), none for the command, event and
// dead-letter streams.
type streamOwner struct {
	name   string
	owners []string
	// consumers are the consumer names tried on it.
	consumers []string
	// filter is a filter subject of the stream, the owner's own on the
	// command stream.
	filter func(consumer string) string
}

// jsResources lists every stream of the installation: the three streams
// and the stream of every service's bucket.
func jsResources() (cmd, evt, dlq string, streams []streamOwner) {
	cmd, evt, dlq = schemas.CommandStream(prefix), schemas.EventStream(prefix), schemas.DeadLetterStream(prefix)
	services := schemas.Services()
	var eventConsumers []string
	for _, s := range services {
		eventConsumers = append(eventConsumers, schemas.JetStreamOf(s).EventConsumers...)
	}
	streams = []streamOwner{
		{name: cmd, consumers: services, filter: func(c string) string { return prefix + ".cmd." + c + ".>" }},
		{name: evt, consumers: append(eventConsumers, "intruder"), filter: func(string) string { return prefix + ".evt.catalog.>" }},
		{name: dlq, consumers: []string{"intruder"}, filter: func(string) string { return prefix + ".dlq.>" }},
	}
	at := map[string]int{} // a shared bucket's stream is listed once
	for _, s := range services {
		for _, b := range schemas.JetStreamOf(s).Buckets {
			bucket := schemas.BucketName(prefix, b)
			if i, ok := at[bucket]; ok {
				streams[i].owners = append(streams[i].owners, s)
				continue
			}
			at[bucket] = len(streams)
			streams = append(streams, streamOwner{name: schemas.BucketStream(bucket), owners: []string{s}, consumers: []string{"watch"},
				filter: func(string) string { return "$KV." + bucket + ".>" }})
		}
	}
	return cmd, evt, dlq, streams
}

// jsActions is every action on every stream and consumer: what the
// JetStream API offers on a stream and a consumer, besides the account's
// own endpoints.
func jsActions() []jsAction {
	const api = "$JS.API."
	out := []jsAction{
		{subject: api + "INFO", what: "account.info"},
		{subject: api + "STREAM.NAMES", what: "account.streams"},
		{subject: api + "STREAM.LIST", what: "account.streams"},
		{subject: api + "ACCOUNT.PURGE.X", what: "account.purge"},
	}
	_, _, _, streams := jsResources()
	for _, st := range streams {
		s := st.name
		for what, subject := range map[string]string{
			"stream.create": api + "STREAM.CREATE." + s, "stream.update": api + "STREAM.UPDATE." + s,
			"stream.info": api + "STREAM.INFO." + s, "stream.delete": api + "STREAM.DELETE." + s,
			"stream.purge": api + "STREAM.PURGE." + s, "stream.msg.get": api + "STREAM.MSG.GET." + s,
			"stream.msg.delete": api + "STREAM.MSG.DELETE." + s, "stream.direct.get": api + "DIRECT.GET." + s,
			"stream.direct.get.subject": api + "DIRECT.GET." + s + ".x", "stream.snapshot": api + "STREAM.SNAPSHOT." + s,
			"stream.restore": api + "STREAM.RESTORE." + s, "stream.stepdown": api + "STREAM.LEADER.STEPDOWN." + s,
			"stream.peer.remove": api + "STREAM.PEER.REMOVE." + s, "consumer.names": api + "CONSUMER.NAMES." + s,
			"consumer.list": api + "CONSUMER.LIST." + s, "consumer.create.unnamed": api + "CONSUMER.CREATE." + s,
		} {
			out = append(out, jsAction{subject: subject, what: what, stream: s})
		}
		if len(st.owners) > 0 {
			bucket := s[len("KV_"):]
			out = append(out, jsAction{subject: "$KV." + bucket + ".k", what: "kv.put", stream: s})
		}
		for _, c := range st.consumers {
			for what, subject := range map[string]string{
				"consumer.create":          api + "CONSUMER.CREATE." + s + "." + c,
				"consumer.create.filtered": api + "CONSUMER.CREATE." + s + "." + c + "." + st.filter(c),
				// A filter of the command stream that is not the consumer's own.
				"consumer.create.other": api + "CONSUMER.CREATE." + s + "." + c + "." + prefix + ".>",
				"consumer.durable":      api + "CONSUMER.DURABLE.CREATE." + s + "." + c,
				"consumer.info":         api + "CONSUMER.INFO." + s + "." + c,
				"consumer.delete":       api + "CONSUMER.DELETE." + s + "." + c,
				"consumer.next":         api + "CONSUMER.MSG.NEXT." + s + "." + c,
				"consumer.pause":        api + "CONSUMER.PAUSE." + s + "." + c,
				"consumer.stepdown":     api + "CONSUMER.LEADER.STEPDOWN." + s + "." + c,
				"consumer.ack":          "$JS.ACK." + s + "." + c + ".1.1.1.1.0",
				"consumer.fc":           "$JS.FC." + s + "." + c + ".x",
			} {
				out = append(out, jsAction{subject: subject, what: what, stream: s, consumer: c})
			}
		}
	}
	return out
}

// jsAllowed states the rules of JetStream access, independently of how
// package identity writes its permissions: users have none; administrators
// have the whole API, acks and flow control (not the services' KV
// records); a service reads the account's limits and the three streams'
// info, works its own consumers and buckets and nothing of anyone else's,
// and only the catalog creates the streams and handles dead letters.
func jsAllowed(p identity.Principal, a jsAction) bool {
	cmd, evt, _, streams := jsResources()
	switch {
	case p.Admin:
		return a.what != "kv.put"
	case !p.Service:
		return false
	}
	use := schemas.JetStreamOf(p.Name)
	var owners []string
	for _, st := range streams {
		if st.name == a.stream {
			owners = st.owners
		}
	}
	switch {
	case a.what == "account.info":
		return true
	case len(owners) > 0:
		// A bucket's stream: its owners' alone, and never deleted, purged
		// nor trimmed by them either.
		return slices.Contains(owners, p.Name) && slices.Contains([]string{"stream.create", "stream.update", "stream.info",
			"stream.msg.get", "stream.direct.get", "stream.direct.get.subject", "kv.put", "consumer.create.unnamed",
			"consumer.create", "consumer.create.filtered", "consumer.create.other", "consumer.info",
			"consumer.next", "consumer.delete", "consumer.fc"}, a.what)
	case a.consumer != "":
		mine := a.stream == cmd && a.consumer == p.Name || a.stream == evt && slices.Contains(use.EventConsumers, a.consumer)
		if !mine {
			return false
		}
		ops := []string{"consumer.create.filtered", "consumer.info", "consumer.next", "consumer.ack"}
		if a.stream == evt {
			// Every event is readable anyway: an event consumer's filter
			// is its own business.
			ops = append(ops, "consumer.create", "consumer.create.other")
		}
		return slices.Contains(ops, a.what)
	case a.what == "stream.info" && a.stream != "":
		return true
	case use.SetsUp:
		return a.what == "stream.create" || a.what == "stream.update" ||
			a.what == "stream.msg.get" && (a.stream == cmd || a.stream == evt) ||
			a.what == "stream.msg.delete" && a.stream == cmd
	}
	return false
}

// TestJetStreamMatrix walks every JetStream action on every stream,
// bucket and consumer of the installation for every service, a user and
// an administrator, on a server that authenticates: the server lets
// through exactly what jsAllowed says.
func TestJetStreamMatrix(t *testing.T) {
	auth, srv := authServer(t)
	_, seen := observer(t, auth, srv)
	principals := []identity.Principal{identity.User("alice", false), identity.User("oneadmin", true)}
	for _, s := range schemas.Services() {
		principals = append(principals, identity.Service(s))
	}
	actions := jsActions()
	allowed := 0
	for _, p := range principals {
		c := connect(t, auth, srv, p)
		for _, a := range actions {
			got, want := publishes(t, c, seen, a.subject), jsAllowed(p, a)
			if got != want {
				t.Errorf("%s: %s on %s: allowed %v, want %v", p.Name, a.what, a.subject, got, want)
			}
			if got {
				allowed++
			}
		}
	}
	t.Logf("%d principals × %d actions, %d allowed", len(principals), len(actions), allowed)
}

// TestOnlyTheCatalogHandlesDeadLetters: the max-deliveries advisories and
// the dead-letter subjects are the catalog's (and the administrators');
// no other service may watch them or write a dead letter.
func TestOnlyTheCatalogHandlesDeadLetters(t *testing.T) {
	auth, srv := authServer(t)
	_, seen := observer(t, auth, srv)
	cmd, _, _, _ := jsResources()
	advisory := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + cmd + ".launcher"
	for _, s := range schemas.Services() {
		c := connect(t, auth, srv, identity.Service(s))
		dead := prefix + ".dlq." + cmd + ".launcher"
		if got, want := publishes(t, c, seen, dead), s == schemas.ServiceCatalog; got != want {
			t.Errorf("%s writes a dead letter: %v, want %v", s, got, want)
		}
		if s == schemas.ServiceCatalog {
			continue // its subscription is exercised by TestServicesWorkTheirJetStream
		}
		if !c.subscribeDenied(t, advisory) {
			t.Errorf("%s watches the max-deliveries advisories", s)
		}
	}
}

// busAs connects a bus of service as p.
func busAs(t *testing.T, auth *identity.Authority, srv *server.Server, service string, p identity.Principal) *bus.Bus {
	t.Helper()
	opt, err := auth.Option(p, prefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, bus.Config{URL: srv.ClientURL(), Prefix: prefix, Service: service, Sender: p.Name,
		Logger: slog.New(slog.DiscardHandler)}, opt,
		// The refusals this test provokes are asserted, not printed.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// TestServicesWorkTheirJetStream does, as each service on a server that
// authenticates, what the services do with JetStream: the catalog sets the
// streams up and forwards dead letters; every service finds the streams
// set up, creates its buckets and reads, writes, watches and deletes in
// them, and consumes its commands and events. What is not its own it may
// not touch: the streams' deletion, another's bucket.
func TestServicesWorkTheirJetStream(t *testing.T) {
	auth, srv := authServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	catalog := busAs(t, auth, srv, schemas.ServiceCatalog, identity.Service(schemas.ServiceCatalog))
	if err := catalog.Setup(ctx); err != nil {
		t.Fatalf("the catalog sets the streams up: %v", err)
	}
	dlq, err := catalog.RunDeadLetter(ctx)
	if err != nil {
		t.Fatalf("the catalog forwards dead letters: %v", err)
	}
	defer dlq.Stop()

	buses := map[string]*bus.Bus{}
	for _, s := range schemas.Services() {
		b := busAs(t, auth, srv, s, identity.Service(s))
		buses[s] = b
		if err := b.Setup(ctx); err != nil {
			t.Errorf("%s finds the streams set up: %v", s, err)
		}
		for _, name := range schemas.JetStreamOf(s).Buckets {
			kvWorks(t, ctx, b, schemas.BucketName(prefix, name))
		}
		for _, d := range schemas.JetStreamOf(s).EventConsumers {
			got := make(chan string, 1)
			cons, err := b.ConsumeEvents(ctx, d, []string{b.EventSubject(schemas.ServiceCatalog, schemas.EventCatalogImageDeleted, s)},
				func(_ context.Context, m *bus.Msg) error { got <- m.ID; return nil })
			if err != nil {
				t.Errorf("%s consumes events as %s: %v", s, d, err)
				continue
			}
			if _, err := catalog.Event(ctx, schemas.EventCatalogImageDeleted, s, map[string]any{}); err != nil {
				t.Fatal(err)
			}
			select {
			case id := <-got:
				if id != s {
					t.Errorf("%s's consumer %s got the event of %s", s, d, id)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("%s's consumer %s got no event", s, d)
			}
			cons.Stop()
		}
	}
	// Not theirs: the streams and the others' buckets.
	for s, b := range buses {
		if s == schemas.ServiceCatalog {
			continue
		}
		short, stop := context.WithTimeout(ctx, 500*time.Millisecond)
		if err := b.JetStream().DeleteStream(short, catalog.CommandStream()); err == nil {
			t.Errorf("%s deleted the command stream", s)
		}
		stop()
		short, stop = context.WithTimeout(ctx, 500*time.Millisecond)
		if _, err := b.JetStream().KeyValue(short, schemas.BucketName(prefix, schemas.BucketCatalogAccounts)); err == nil {
			t.Errorf("%s opened the catalog's accounts", s)
		}
		stop()
	}

	// A command the launcher fails once is dead: the catalog copies it to
	// the dead letters and deletes it from the work queue.
	launcher := buses[schemas.ServiceLauncher]
	cons, err := launcher.ConsumeCommands(ctx, func(context.Context, *bus.Msg) error { return errors.New("no") }, bus.MaxDeliver(1))
	if err != nil {
		t.Fatalf("the launcher consumes its commands: %v", err)
	}
	defer cons.Stop()
	alice := busAs(t, auth, srv, "cli", identity.User("alice", false))
	if _, err := alice.Command(ctx, schemas.ServiceLauncher, schemas.CommandLauncherInstantiate, map[string]any{}); err != nil {
		t.Fatal(err)
	}
	admin := busAs(t, auth, srv, "cli", identity.User("oneadmin", true))
	ok := testenv.Eventually(20*time.Second, 50*time.Millisecond, func() bool {
		st, err := admin.JetStream().Stream(ctx, admin.DeadLetterStream())
		return err == nil && st.CachedInfo().State.Msgs == 1
	})
	if !ok {
		t.Fatal("the launcher's dead command did not reach the dead letters")
	}
	st, err := admin.JetStream().Stream(ctx, admin.CommandStream())
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("the command stream keeps %d messages after the dead letter", n)
	}
}

// kvWorks creates bucket and does with it what pkg/kvstore does.
func kvWorks(t *testing.T, ctx context.Context, b *bus.Bus, bucket string) {
	t.Helper()
	// Twice: at the next start the bucket is there.
	var kv jetstream.KeyValue
	for _, what := range []string{"creates", "opens again"} {
		var err error
		if kv, err = b.KeyValue(ctx, bucket, 0); err != nil {
			t.Errorf("%s %s its bucket %s: %v", b.Service(), what, bucket, err)
			return
		}
	}
	rev, err := kv.Create(ctx, "k", []byte("1"))
	if err == nil {
		_, err = kv.Update(ctx, "k", []byte("2"), rev)
	}
	if err == nil {
		var e jetstream.KeyValueEntry
		if e, err = kv.Get(ctx, "k"); err == nil && string(e.Value()) != "2" {
			err = fmt.Errorf("read %q", e.Value())
		}
	}
	if err == nil {
		var keys []string
		if keys, err = kv.Keys(ctx); err == nil && !slices.Equal(keys, []string{"k"}) {
			err = fmt.Errorf("keys %v", keys)
		}
	}
	if err == nil {
		var w jetstream.KeyWatcher
		if w, err = kv.WatchFiltered(ctx, []string{"k"}); err == nil {
			select {
			case e := <-w.Updates():
				if e == nil || string(e.Value()) != "2" {
					err = fmt.Errorf("watch gave %v", e)
				}
			case <-time.After(5 * time.Second):
				err = errors.New("watch gave nothing")
			}
			_ = w.Stop()
		}
	}
	if err == nil {
		err = kv.Delete(ctx, "k")
	}
	if err == nil {
		err = kv.Purge(ctx, "k")
	}
	if err != nil {
		t.Errorf("%s in its bucket %s: %v", b.Service(), bucket, err)
	}
}
