package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/schemas"
)

// Headers added to a dead letter.
const (
	HeaderDLQStream     = "Slipway-Dlq-Stream"
	HeaderDLQConsumer   = "Slipway-Dlq-Consumer"
	HeaderDLQSeq        = "Slipway-Dlq-Seq"
	HeaderDLQDeliveries = "Slipway-Dlq-Deliveries"
	// HeaderDLQSubject is the subject the message was first published to.
	HeaderDLQSubject = "Slipway-Dlq-Subject"
)

// maxDeliveriesAdvisory is the part of the server's
// io.nats.jetstream.advisory.v1.max_deliver advisory we use.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

type deadLetter struct {
	bus  *Bus
	subs []*nats.Subscription
	mu   sync.Mutex // held while one advisory is handled, so Stop can wait for it
	once sync.Once
}

// RunDeadLetter copies every message that exhausted its deliveries on the
// command or event stream to "<prefix>.dlq.<stream>.<consumer>", with its
// headers and the Slipway-Dlq-* headers. Instances share a queue group, and
// the copy's Nats-Msg-Id makes a repeated advisory harmless. A dead command
// is then deleted from the work-queue stream, which would otherwise keep it
// forever.
func (b *Bus) RunDeadLetter(ctx context.Context) (Stopper, error) {
	d := &deadLetter{bus: b}
	queue := schemas.StreamPrefix(b.cfg.Prefix) + "_dlq"
	for _, stream := range []string{b.CommandStream(), b.EventStream()} {
		subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + ".*"
		sub, err := b.nc.QueueSubscribe(subject, queue, d.onAdvisory)
		if err != nil {
			d.Stop()
			return nil, fmt.Errorf("bus: subscribe to %s: %w", subject, err)
		}
		d.subs = append(d.subs, sub)
	}
	// nats.go refuses FlushWithContext without a deadline; ctx is the
	// forwarder's whole life, so bound only the flush.
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		d.Stop()
		return nil, fmt.Errorf("bus: dead letters: %w", err)
	}
	go func() {
		<-ctx.Done()
		d.Stop()
	}()
	return d, nil
}

func (d *deadLetter) Stop() {
	d.once.Do(func() {
		for _, s := range d.subs {
			_ = s.Unsubscribe()
		}
		d.mu.Lock()
		defer d.mu.Unlock()
	})
}

func (d *deadLetter) onAdvisory(msg *nats.Msg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var adv maxDeliveriesAdvisory
	if err := json.Unmarshal(msg.Data, &adv); err != nil || adv.Stream == "" || adv.StreamSeq == 0 {
		d.bus.log.Warn("bus: unreadable max-deliveries advisory", "subject", msg.Subject, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.bus.deadLetter(ctx, adv); err != nil {
		d.bus.log.Error("bus: dead-lettering failed", "stream", adv.Stream, "consumer", adv.Consumer,
			"seq", adv.StreamSeq, "err", err)
	}
}

func (b *Bus) deadLetter(ctx context.Context, adv maxDeliveriesAdvisory) error {
	stream, err := b.js.Stream(ctx, adv.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", adv.Stream, err)
	}
	orig, err := stream.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Another instance already moved and deleted it.
		return nil
	}
	if err != nil {
		return fmt.Errorf("get message %d of %s: %w", adv.StreamSeq, adv.Stream, err)
	}
	h := nats.Header{}
	for k, v := range orig.Header {
		h[k] = append([]string(nil), v...)
	}
	seq := strconv.FormatUint(adv.StreamSeq, 10)
	h.Set(HeaderDLQStream, adv.Stream)
	h.Set(HeaderDLQConsumer, adv.Consumer)
	h.Set(HeaderDLQSeq, seq)
	h.Set(HeaderDLQDeliveries, strconv.FormatUint(adv.Deliveries, 10))
	h.Set(nats.MsgIdHdr, "dlq-"+adv.Stream+"-"+seq)
	h.Set(HeaderDLQSubject, orig.Subject)
	out := &nats.Msg{Subject: b.DeadLetterSubject(adv.Stream, adv.Consumer), Header: h, Data: orig.Data}
	if _, err := b.js.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("publish to %s: %w", out.Subject, err)
	}
	b.log.Warn("bus: message dead-lettered", "stream", adv.Stream, "consumer", adv.Consumer,
		"seq", adv.StreamSeq, "subject", orig.Subject, "deliveries", adv.Deliveries)
	if adv.Stream == b.CommandStream() {
		if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("delete dead command %d from %s: %w", adv.StreamSeq, adv.Stream, err)
		}
	}
	return nil
}
