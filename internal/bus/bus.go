// Package bus carries "an envelope is waiting for device D" wake-ups between bastiond
// nodes over NATS (github.com/nats-io/nats.go), for the multi-node setup of the design's
// "Storage and scale" section. [NATS] has the method set of the server's Notifier:
// Notify(account, device) and Subscribe(account, device, wake) (cancel).
//
// How: a node subscribes, for each device connected to it, to that device's subject
// bastion.wake.<account id>.<device id>, and a send publishes an empty message on the
// recipient device's subject after the envelope is durable. Notify also wakes this
// node's own subscribers directly (the connection is NoEcho: NATS does not send a node's
// own messages back to it). All subscriptions share one channel and one dispatch
// goroutine, so ten thousand connected devices cost ten thousand subject entries, not
// ten thousand goroutines.
//
// Presence: there is no "device D is connected on node N" table. Per-device subjects make
// NATS itself the presence map: a wake goes only to the nodes that subscribed to it (none,
// if the device is offline, and then the envelope waits in the store for the device's
// next connection, which reads its queue first). Nothing to keep consistent, nothing
// stale after a crash: a node's subscriptions die with its NATS connection, and when it
// restarts its devices reconnect, to it or to any node, and subscribe again. The cost is
// one subscription per connected device, which NATS handles by the hundred thousand.
//
// When NATS is unreachable: Notify still wakes local subscribers, so devices on the
// sender's own node are served at once. Wake-ups from and to other nodes are lost while
// the connection is down, so the bus falls back to polling: while [NATS.Healthy] is false
// it calls every local wake function every [Options.PollInterval], and the server's loops
// read the store as they would on a real wake-up. On reconnection the node wakes all its
// subscribers once and, if it had wake-ups to send meanwhile, publishes a resync message
// that makes every other node do the same, so wake-ups lost during the outage, on either
// side, cost at most one read per connected device. [Options.OnHealth] reports each
// change, for metrics and logs.
//
// One case the above cannot see: a node cut off from NATS while the others are not. Its
// own devices are polled, but its sends to devices on other nodes reach them only at its
// resync. So every node also sweeps: it wakes all its subscribers every
// [Options.SweepInterval] (a minute by default) even when healthy, which bounds how long
// any lost wake-up, whatever the cause, can delay a delivery.
//
// What it protects: the bus carries no sender, no content and no phone number; a message
// is an empty body on a subject naming the recipient's random account id and device id.
// What it does not: the NATS operator (the service operator) sees which account ids
// receive messages and when, as the database operator sees the queues; NATS sits inside
// the same trust boundary as the database, and its own access control (credentials,
// TLS) is the operator's to configure.
package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// Defaults for [Options].
const (
	DefaultSubject = "bastion.wake"
	// DefaultPollInterval: while NATS is down a message for a device on another node
	// waits at most this long, and each tick costs one queue read per connected device.
	DefaultPollInterval  = 2 * time.Second
	DefaultReconnectWait = 500 * time.Millisecond
	// DefaultSweepInterval bounds the delay of a lost wake-up at one queue read per
	// connected device per minute.
	DefaultSweepInterval = time.Minute
	// DefaultPingInterval: NATS's two minutes would leave a half-open connection
	// undetected (and the node not polling) for up to six minutes.
	DefaultPingInterval = 10 * time.Second
)

// dispatchBuffer is the capacity of the channel all subscriptions share. A burst beyond
// it makes NATS drop messages for this node (a slow consumer); the node then wakes all its
// subscribers once, so nothing is stuck.
const dispatchBuffer = 8192

// flushTimeout bounds how long Subscribe waits for NATS to confirm a subscription: a
// round trip on a healthy link is far shorter, and past it the sweep still wakes the
// device, so a slow NATS delays a connection by at most this much.
const flushTimeout = 2 * time.Second

// Options configure [Connect]. The zero value uses the defaults.
type Options struct {
	// Name identifies the node's connection in NATS monitoring (no personal data).
	Name string
	// Subject is the subject prefix; several deployments can share one NATS with
	// different prefixes.
	Subject string
	// CredentialsFile is a NATS .creds file (user JWT and nkey seed), if the server
	// requires one. User and password can also be given in the URL.
	CredentialsFile string
	// CAFile is a PEM file of the CA that signed the NATS server's certificate, for a
	// tls:// URL with a private CA (a public one needs nothing).
	CAFile string
	// PollInterval is how often local subscribers are woken while NATS is down. A
	// negative value disables polling (tests).
	PollInterval time.Duration
	// SweepInterval is how often every local subscriber is woken while NATS is up, as a
	// backstop for wake-ups lost elsewhere. A negative value disables it (tests).
	SweepInterval time.Duration
	// ReconnectWait is the pause between reconnection attempts.
	ReconnectWait time.Duration
	// PingInterval is how often the client checks that the server still answers.
	PingInterval time.Duration
	// OnHealth is called with the new state whenever [NATS.Healthy] changes after
	// [Connect] has returned (Healthy tells the state at that point). It must not block.
	OnHealth func(healthy bool)
	// Logger receives connection events; nil discards.
	Logger *slog.Logger
}

// NATS is a Notifier across nodes. Create it with [Connect]; it is safe for concurrent
// use.
type NATS struct {
	log      *slog.Logger
	prefix   string
	resync   string // subject on which a reconnected node asks everyone to wake all
	poll     time.Duration
	sweep    time.Duration
	onHealth func(bool)
	nc       *nats.Conn
	msgs     chan *nats.Msg

	healthy atomic.Bool
	missed  atomic.Bool // Notify skipped a publish while NATS was down
	started atomic.Bool // Connect has returned: report health changes

	mu     sync.Mutex
	topics map[string]*topic // by subject
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// A topic is one device's subject: the local wake functions and the NATS subscription.
type topic struct {
	wakes map[*waker]struct{}
	sub   *nats.Subscription // nil when subscribing failed; local wakes still work
}

type waker struct{ wake func() }

// Connect connects to the NATS server(s) at url (comma-separated for a cluster). It
// returns at once even if no server is reachable yet: the node starts unhealthy, polls,
// and keeps trying to connect in the background.
func Connect(url string, opts Options) (*NATS, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Subject == "" {
		opts.Subject = DefaultSubject
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.ReconnectWait <= 0 {
		opts.ReconnectWait = DefaultReconnectWait
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	n := &NATS{
		log:      opts.Logger,
		prefix:   opts.Subject,
		resync:   opts.Subject + ".resync",
		poll:     opts.PollInterval,
		sweep:    opts.SweepInterval,
		onHealth: opts.OnHealth,
		msgs:     make(chan *nats.Msg, dispatchBuffer),
		topics:   make(map[string]*topic),
		stop:     make(chan struct{}),
	}
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.NoEcho(), // Notify wakes local subscribers itself
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), // a node never gives up on the bus; it polls meanwhile
		nats.ReconnectWait(opts.ReconnectWait),
		nats.PingInterval(opts.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(nc *nats.Conn) { n.up(nc, "connected") }),
		nats.ReconnectHandler(func(nc *nats.Conn) { n.up(nc, "reconnected") }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { n.down("disconnected", err) }),
		nats.ClosedHandler(func(*nats.Conn) { n.down("closed", nil) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				// Wake-ups were dropped: wake everyone here once rather than lose one.
				n.log.Warn("bus: wake-ups dropped (slow consumer); waking all local subscribers")
				n.wakeAll()
				return
			}
			n.log.Warn("bus: nats error", "err", loggable(err))
		}),
	}
	if opts.CredentialsFile != "" {
		nopts = append(nopts, nats.UserCredentials(opts.CredentialsFile))
	}
	if opts.CAFile != "" {
		nopts = append(nopts, nats.RootCAs(opts.CAFile))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats: %w", err)
	}
	n.nc = nc
	if _, err := nc.ChanSubscribe(n.resync, n.msgs); err != nil {
		nc.Close()
		return nil, fmt.Errorf("subscribing to %s: %w", n.resync, err)
	}
	if nc.IsConnected() {
		// Healthy from the start: the connect callback, still to come, finds nothing to
		// catch up on.
		n.healthy.Store(true)
	}
	n.started.Store(true)
	n.wg.Add(2)
	go n.dispatch()
	go n.poller()
	return n, nil
}

// Close unsubscribes, closes the NATS connection and stops polling. Wake functions are
// not called after Close returns.
func (n *NATS) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.topics = map[string]*topic{}
	n.mu.Unlock()
	n.nc.Close()
	close(n.stop)
	n.wg.Wait()
	return nil
}

// Healthy reports whether the node is connected to NATS, that is, whether wake-ups from
// other nodes arrive. While it is false the bus polls (see the package doc).
func (n *NATS) Healthy() bool { return n.healthy.Load() }

func (n *NATS) subject(account uuid.UUID, device uint32) string {
	return n.prefix + "." + account.String() + "." + strconv.FormatUint(uint64(device), 10)
}

// Notify wakes the subscribers of (account, device) on this node and, through NATS, on
// every other node. It never blocks: while NATS is down it wakes only this node's
// subscribers, and the others catch up by polling and by the resync on reconnection.
func (n *NATS) Notify(account uuid.UUID, device uint32) {
	subj := n.subject(account, device)
	n.wakeSubject(subj)
	if !n.healthy.Load() {
		n.missed.Store(true)
		return
	}
	// An empty body: the subject says which device, and nothing says who sent.
	if err := n.nc.Publish(subj, nil); err != nil {
		n.log.Debug("bus: publish failed", "err", err)
	}
}

// Subscribe calls wake on every Notify for (account, device), on any node, until cancel
// is called, and on every poll while NATS is down. wake must not block.
func (n *NATS) Subscribe(account uuid.UUID, device uint32, wake func()) (cancel func()) {
	subj := n.subject(account, device)
	w := &waker{wake: wake}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return func() {}
	}
	t := n.topics[subj]
	if t == nil {
		t = &topic{wakes: make(map[*waker]struct{})}
		// Subscribing while disconnected is fine: nats.go replays subscriptions on
		// reconnection.
		sub, err := n.nc.ChanSubscribe(subj, n.msgs)
		if err != nil {
			n.log.Warn("bus: subscribing failed; this device is served by polling", "err", err)
		}
		t.sub = sub
		n.topics[subj] = t
	}
	t.wakes[w] = struct{}{}
	nc := n.nc
	n.mu.Unlock()
	// Return only once the NATS server has the subscription. The caller reads its queue
	// next: an envelope committed before this point is in that read, and one committed
	// after publishes to a subscription the server already holds. Without the flush, a
	// publish racing the SUB is lost and the device waits for the next sweep.
	if nc != nil && nc.IsConnected() {
		if err := nc.FlushTimeout(flushTimeout); err != nil {
			n.log.Debug("bus: flushing a subscription failed; the sweep covers it", "err", err)
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.topics[subj] != t {
				return // closed meanwhile
			}
			delete(t.wakes, w)
			if len(t.wakes) == 0 {
				delete(n.topics, subj)
				if t.sub != nil {
					t.sub.Unsubscribe()
				}
			}
		})
	}
}

// wakeSubject calls the local wake functions of one subject.
func (n *NATS) wakeSubject(subj string) {
	n.mu.Lock()
	t := n.topics[subj]
	var ws []*waker
	if t != nil {
		ws = make([]*waker, 0, len(t.wakes))
		for w := range t.wakes {
			ws = append(ws, w)
		}
	}
	n.mu.Unlock()
	for _, w := range ws {
		w.wake()
	}
}

// wakeAll calls every local wake function once.
func (n *NATS) wakeAll() {
	n.mu.Lock()
	var ws []*waker
	for _, t := range n.topics {
		for w := range t.wakes {
			ws = append(ws, w)
		}
	}
	n.mu.Unlock()
	for _, w := range ws {
		w.wake()
	}
}

// dispatch delivers NATS messages to local wake functions, in arrival order.
func (n *NATS) dispatch() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case m := <-n.msgs:
			if m.Subject == n.resync {
				n.wakeAll()
				continue
			}
			n.wakeSubject(m.Subject)
		}
	}
}

// poller wakes every local subscriber every poll interval while NATS is down, and every
// sweep interval while it is up.
func (n *NATS) poller() {
	defer n.wg.Done()
	var pollC, sweepC <-chan time.Time
	if n.poll > 0 {
		t := time.NewTicker(n.poll)
		defer t.Stop()
		pollC = t.C
	}
	if n.sweep > 0 {
		t := time.NewTicker(n.sweep)
		defer t.Stop()
		sweepC = t.C
	}
	for {
		select {
		case <-n.stop:
			return
		case <-pollC:
			if !n.healthy.Load() {
				n.wakeAll()
			}
		case <-sweepC:
			if n.healthy.Load() {
				n.wakeAll()
			}
		}
	}
}

// up runs when the connection (re)opens: wake everything here once (wake-ups other nodes
// published while we were away are lost); if this node skipped publishing a wake-up
// meanwhile, ask every other node to do the same; then report healthy.
func (n *NATS) up(nc *nats.Conn, event string) {
	if n.healthy.Load() {
		return // the connection Connect already found open: nothing was missed
	}
	n.wakeAll()
	if n.missed.Swap(false) {
		if err := nc.Publish(n.resync, nil); err != nil {
			n.missed.Store(true)
			n.log.Warn("bus: publishing resync", "err", err)
		}
	}
	if !n.healthy.Swap(true) {
		n.log.Info("bus: " + event)
		if n.onHealth != nil && n.started.Load() {
			n.onHealth(true)
		}
	}
}

func (n *NATS) down(event string, err error) {
	if n.healthy.Swap(false) {
		n.log.Warn("bus: "+event+"; polling local devices until NATS is back", "err", err)
		if n.onHealth != nil && n.started.Load() {
			n.onHealth(false)
		}
	}
}

// loggable is err as it may be logged. A permissions violation from the NATS server
// names the subject it was refused, and a wake-up subject names an account and device;
// the log keeps only the kind.
func loggable(err error) error {
	if errors.Is(err, nats.ErrPermissionViolation) {
		return nats.ErrPermissionViolation
	}
	return err
}
