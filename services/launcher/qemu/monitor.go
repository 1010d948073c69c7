package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// monitor is a QMP client on QEMU's unix socket. It implements go-qemu's qmp.Monitor, so
// go-qemu's typed layers (qemu.NewDomain, qmp/raw) run over it, but it replaces
// qmp.SocketMonitor, which has two known races: it hands out the bufio.Scanner buffer that
// the next read overwrites (go-qemu issue #226, seen here under -race with query-block),
// and an event arriving during qmp_capabilities is taken for its reply (go-qemu #210).
// Here every command carries an id, each message is decoded into its own buffer, and
// replies are matched by id.
type monitor struct {
	conn    net.Conn
	writeMu sync.Mutex
	onEvent func(qmp.Event) // called from the reader goroutine; must not block

	mu      sync.Mutex
	pending map[string]chan reply
	nextID  int
	closed  chan struct{}
	err     error // why the reader stopped
	version qmp.Version
	subs    []chan qmp.Event
}

// reply is one command's answer: the whole message, or an error.
type reply struct {
	raw []byte
	err error
}

// qmpError is an error QEMU answered a command with.
type qmpError struct {
	Class, Desc string
}

func (e *qmpError) Error() string { return e.Desc }

// message is what the reader needs of any QMP message.
type message struct {
	QMP   *struct{ Version qmp.Version } `json:"QMP"`
	Event string                         `json:"event"`
	ID    json.RawMessage                `json:"id"`
	Error *qmpError                      `json:"error"`
}

// dialMonitor connects and reads the greeting; handshake must follow.
func dialMonitor(path string, onEvent func(qmp.Event)) (*monitor, error) {
	conn, err := net.DialTimeout("unix", path, dialTimeout)
	if err != nil {
		return nil, err
	}
	m := &monitor{conn: conn, onEvent: onEvent, pending: map[string]chan reply{}, closed: make(chan struct{})}
	dec := json.NewDecoder(conn)
	var greet message
	conn.SetReadDeadline(time.Now().Add(connectTimeout))
	if err := dec.Decode(&greet); err != nil || greet.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %v", errOr(err, "not a QMP greeting"))
	}
	conn.SetReadDeadline(time.Time{})
	m.version = greet.QMP.Version
	go m.read(dec)
	return m, nil
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// read dispatches messages: events to onEvent and subscribers, replies to their caller.
func (m *monitor) read(dec *json.Decoder) {
	var err error
	for {
		var raw json.RawMessage // Decode allocates: replies never share a buffer
		if err = dec.Decode(&raw); err != nil {
			break
		}
		var msg message
		if err = json.Unmarshal(raw, &msg); err != nil {
			break
		}
		if msg.Event != "" {
			m.event(raw)
			continue
		}
		m.deliver(msg, raw)
	}
	m.mu.Lock()
	m.err = err
	for id, ch := range m.pending {
		ch <- reply{err: ErrExited}
		delete(m.pending, id)
	}
	for _, s := range m.subs {
		close(s)
	}
	m.subs = nil
	m.mu.Unlock()
	close(m.closed)
}

func (m *monitor) event(raw []byte) {
	var e qmp.Event
	if json.Unmarshal(raw, &e) != nil {
		return
	}
	if m.onEvent != nil {
		m.onEvent(e)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.subs {
		select {
		case s <- e:
		default: // a slow subscriber loses events rather than stalling replies
		}
	}
}

func (m *monitor) deliver(msg message, raw []byte) {
	var id string
	if json.Unmarshal(msg.ID, &id) != nil {
		return // a reply without our id: not ours
	}
	m.mu.Lock()
	ch := m.pending[id]
	delete(m.pending, id)
	m.mu.Unlock()
	if ch == nil {
		return // its caller gave up
	}
	if msg.Error != nil {
		ch <- reply{raw: raw, err: msg.Error}
		return
	}
	ch <- reply{raw: raw}
}

// call sends one command (a JSON object without id) and waits for its reply.
func (m *monitor) call(ctx context.Context, cmd map[string]any) ([]byte, error) {
	m.mu.Lock()
	select {
	case <-m.closed:
		m.mu.Unlock()
		return nil, ErrExited
	default:
	}
	m.nextID++
	id := "slipway-" + strconv.Itoa(m.nextID)
	ch := make(chan reply, 1)
	m.pending[id] = ch
	m.mu.Unlock()
	cmd["id"] = id
	b, err := json.Marshal(cmd)
	if err != nil {
		m.forget(id)
		return nil, err
	}
	m.writeMu.Lock()
	_, err = m.conn.Write(append(b, '\n'))
	m.writeMu.Unlock()
	if err != nil {
		m.forget(id)
		return nil, err
	}
	select {
	case r := <-ch:
		return r.raw, r.err
	case <-ctx.Done():
		m.forget(id)
		return nil, context.Cause(ctx)
	}
}

func (m *monitor) forget(id string) {
	m.mu.Lock()
	delete(m.pending, id)
	m.mu.Unlock()
}

// handshake leaves capabilities negotiation mode.
func (m *monitor) handshake(ctx context.Context) error {
	_, err := m.call(ctx, map[string]any{"execute": "qmp_capabilities"})
	return err
}

func (m *monitor) close() { m.conn.Close() }

// Connect is a no-op: the VM connected the monitor when it started (qmp.Monitor).
func (m *monitor) Connect() error { return nil }

// Disconnect is a no-op: the VM owns the connection and closes it when QEMU exits
// (qmp.Monitor; qemu.Domain.Close calls it).
func (m *monitor) Disconnect() error { return nil }

// Run sends a raw command, as go-qemu's typed layers build it, and returns the raw reply
// (qmp.Monitor). QEMU's error answers are returned as errors.
func (m *monitor) Run(command []byte) ([]byte, error) {
	var cmd map[string]any
	if err := json.Unmarshal(command, &cmd); err != nil {
		return nil, fmt.Errorf("qmp: command is not a JSON object: %w", err)
	}
	return m.call(context.Background(), cmd)
}

// Events returns a channel of the events from now on, closed when QEMU exits; a
// subscriber that falls 64 events behind loses events (qmp.Monitor).
func (m *monitor) Events(context.Context) (<-chan qmp.Event, error) {
	ch := make(chan qmp.Event, 64)
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.closed:
		close(ch)
	default:
		m.subs = append(m.subs, ch)
	}
	return ch, nil
}

var _ qmp.Monitor = (*monitor)(nil)
