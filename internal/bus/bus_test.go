package bus

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// notifier is the server's Notifier (internal/server/notify.go), restated here so that
// this package does not depend on the server: NATS must keep satisfying it.
type notifier interface {
	Notify(account uuid.UUID, device uint32)
	Subscribe(account uuid.UUID, device uint32, wake func()) (cancel func())
}

var _ notifier = (*NATS)(nil)

// waitFor bounds how long a test waits for something asynchronous (a message through
// NATS, a reconnection). It is a deadline for a hang, not a performance assertion.
const waitFor = 10 * time.Second

// startServer runs an in-process NATS server on 127.0.0.1 (port -1 picks a free one).
func startServer(t *testing.T, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("server.NewServer() = %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(waitFor) {
		t.Fatalf("nats server on port %d not ready", port)
	}
	t.Cleanup(stopServer(s))
	return s
}

func stopServer(s *server.Server) func() {
	return func() {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func url(s *server.Server) string { return fmt.Sprintf("nats://%s", s.Addr()) }

// health records OnHealth calls.
type health struct {
	mu     sync.Mutex
	events []bool
}

func (h *health) record(ok bool) {
	h.mu.Lock()
	h.events = append(h.events, ok)
	h.mu.Unlock()
}

func (h *health) get() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bool(nil), h.events...)
}

func connect(t *testing.T, u string, poll time.Duration, h *health) *NATS {
	t.Helper()
	opts := Options{Name: t.Name(), PollInterval: poll, SweepInterval: -1, ReconnectWait: 20 * time.Millisecond}
	if h != nil {
		opts.OnHealth = h.record
	}
	n, err := Connect(u, opts)
	if err != nil {
		t.Fatalf("Connect(%s) = %v", u, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// flush waits until the server has processed everything n sent (its subscriptions).
func flush(t *testing.T, n *NATS) {
	t.Helper()
	if err := n.nc.FlushTimeout(waitFor); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
}

// counter is a wake function that counts and signals.
type counter struct {
	n  atomic.Int64
	ch chan struct{}
}

func newCounter() *counter { return &counter{ch: make(chan struct{}, 1)} }

func (c *counter) wake() {
	c.n.Add(1)
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// waitAtLeast waits until the count reaches want.
func (c *counter) waitAtLeast(t *testing.T, want int64, what string) {
	t.Helper()
	deadline := time.After(waitFor)
	for c.n.Load() < want {
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("%s: %d wake-ups after %v, want at least %d", what, c.n.Load(), waitFor, want)
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitFor)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type device struct {
	account uuid.UUID
	id      uint32
}

func newDevice() device { return device{uuid.New(), 1 + uint32(time.Now().UnixNano()%100)} }

func TestWakeAcrossNodes(t *testing.T) {
	srv := startServer(t, -1)
	nodes := map[string]*NATS{"A": connect(t, url(srv), -1, nil), "B": connect(t, url(srv), -1, nil)}
	tests := []struct{ from, to string }{
		{"A", "B"},
		{"B", "A"},
		{"A", "A"}, // local fan-out, without NATS's echo
	}
	for _, tc := range tests {
		t.Run(tc.from+"->"+tc.to, func(t *testing.T) {
			d, other, sentinel := newDevice(), newDevice(), newDevice()
			target, bystander, last := newCounter(), newCounter(), newCounter()
			sub := nodes[tc.to]
			defer sub.Subscribe(d.account, d.id, target.wake)()
			defer sub.Subscribe(other.account, other.id, bystander.wake)()
			defer sub.Subscribe(sentinel.account, sentinel.id, last.wake)()
			flush(t, sub)

			nodes[tc.from].Notify(d.account, d.id)
			target.waitAtLeast(t, 1, "Notify() on node "+tc.from+" to a subscriber on "+tc.to)
			// Messages from one publisher arrive in order, through one dispatcher: once
			// the sentinel's wake-up is in, a stray one for the bystander would be too.
			nodes[tc.from].Notify(sentinel.account, sentinel.id)
			last.waitAtLeast(t, 1, "sentinel")
			if n := bystander.n.Load(); n != 0 {
				t.Errorf("Notify(one device) woke another device's subscriber %d times, want 0", n)
			}
			if tc.from == tc.to {
				if n := target.n.Load(); n != 1 {
					t.Errorf("Notify() to a local subscriber woke it %d times, want 1 (no echo through NATS)", n)
				}
			}
		})
	}
}

func TestCancel(t *testing.T) {
	srv := startServer(t, -1)
	a, b := connect(t, url(srv), -1, nil), connect(t, url(srv), -1, nil)
	d, sentinel := newDevice(), newDevice()
	remote, local, last := newCounter(), newCounter(), newCounter()
	cancelRemote := b.Subscribe(d.account, d.id, remote.wake)
	keep := newCounter()
	defer b.Subscribe(d.account, d.id, keep.wake)() // a second subscriber of the same device stays
	defer b.Subscribe(sentinel.account, sentinel.id, last.wake)()
	cancelLocal := a.Subscribe(d.account, d.id, local.wake)
	cancelRemote()
	cancelRemote() // twice is harmless
	cancelLocal()
	flush(t, b)

	a.Notify(d.account, d.id)
	a.Notify(sentinel.account, sentinel.id)
	last.waitAtLeast(t, 1, "sentinel")
	keep.waitAtLeast(t, 1, "the subscriber that stayed")
	if n := remote.n.Load(); n != 0 {
		t.Errorf("cancelled remote subscriber woken %d times, want 0", n)
	}
	if n := local.n.Load(); n != 0 {
		t.Errorf("cancelled local subscriber woken %d times, want 0", n)
	}

	// The last subscriber of a device leaving unsubscribes the node from its subject.
	cancelOnly := b.Subscribe(sentinel.account, sentinel.id+1000, func() {})
	b.mu.Lock()
	sub := b.topics[b.subject(sentinel.account, sentinel.id+1000)].sub
	b.mu.Unlock()
	cancelOnly()
	if sub.IsValid() {
		t.Errorf("subscription still valid after its last subscriber cancelled")
	}
}

// TestRestart stops the NATS server under two nodes: both report unhealthy, local
// wake-ups keep working, and after the server is back both reconnect and wake-ups
// between them resume on the subscriptions made before the outage.
func TestRestart(t *testing.T) {
	srv := startServer(t, -1)
	addr := srv.Addr().String()
	var ha, hb health
	a, b := connect(t, url(srv), -1, &ha), connect(t, url(srv), -1, &hb)
	d, localDev := newDevice(), newDevice()
	remote, local := newCounter(), newCounter()
	defer b.Subscribe(d.account, d.id, remote.wake)()
	defer a.Subscribe(localDev.account, localDev.id, local.wake)()
	flush(t, b)
	a.Notify(d.account, d.id)
	remote.waitAtLeast(t, 1, "before the outage")

	stopServer(srv)()
	eventually(t, "both nodes unhealthy after the server stopped", func() bool { return !a.Healthy() && !b.Healthy() })
	before := local.n.Load()
	a.Notify(localDev.account, localDev.id)
	if got := local.n.Load(); got != before+1 {
		t.Errorf("Notify() to a local subscriber while NATS is down: %d wake-ups, want %d", got, before+1)
	}

	startServerAt(t, addr)
	eventually(t, "both nodes healthy after the server restarted", func() bool { return a.Healthy() && b.Healthy() })
	// Each reconnection can add one resync wake-up; more than that takes Notify.
	base := remote.n.Load()
	const want = 5
	deadline := time.Now().Add(waitFor)
	for remote.n.Load() < base+want {
		if time.Now().After(deadline) {
			t.Fatalf("after reconnection: %d wake-ups from Notify on the other node, want %d", remote.n.Load()-base, want)
		}
		a.Notify(d.account, d.id)
		time.Sleep(5 * time.Millisecond)
	}
	for name, h := range map[string]*health{"A": &ha, "B": &hb} {
		if got := h.get(); len(got) < 2 || got[0] || !got[len(got)-1] {
			t.Errorf("OnHealth calls on node %s = %v, want false ... true", name, got)
		}
	}
}

// startServerAt restarts a server on the address a stopped one had.
func startServerAt(t *testing.T, addr string) {
	t.Helper()
	var port int
	if _, err := fmt.Sscanf(addr[len("127.0.0.1:"):], "%d", &port); err != nil {
		t.Fatalf("parsing %s: %v", addr, err)
	}
	startServer(t, port)
}

// TestPollWhileDown: with NATS down, the bus wakes local subscribers every poll interval
// so the server reads their queues, and stops once NATS is back.
func TestPollWhileDown(t *testing.T) {
	srv := startServer(t, -1)
	addr := srv.Addr().String()
	n := connect(t, url(srv), 10*time.Millisecond, nil)
	d := newDevice()
	c := newCounter()
	defer n.Subscribe(d.account, d.id, c.wake)()
	if !n.Healthy() {
		t.Fatalf("Healthy() right after Connect() to a running server = false, want true")
	}
	stopServer(srv)()
	eventually(t, "unhealthy after the server stopped", func() bool { return !n.Healthy() })
	c.waitAtLeast(t, c.n.Load()+3, "polling while NATS is down")

	startServerAt(t, addr)
	eventually(t, "healthy after the server restarted", func() bool { return n.Healthy() })
}

// TestStartWithoutServer: a node starts even when NATS is not up yet, polls, and joins
// the bus when it comes.
func TestStartWithoutServer(t *testing.T) {
	srv := startServer(t, -1)
	addr := srv.Addr().String()
	stopServer(srv)()
	n := connect(t, "nats://"+addr, 10*time.Millisecond, nil)
	if n.Healthy() {
		t.Fatalf("Healthy() with no server = true, want false")
	}
	d := newDevice()
	c := newCounter()
	defer n.Subscribe(d.account, d.id, c.wake)()
	c.waitAtLeast(t, 2, "polling before the first connection")
	startServerAt(t, addr)
	eventually(t, "healthy once the server is up", func() bool { return n.Healthy() })
}

func TestClose(t *testing.T) {
	srv := startServer(t, -1)
	n := connect(t, url(srv), -1, nil)
	d := newDevice()
	c := newCounter()
	n.Subscribe(d.account, d.id, c.wake)
	if err := n.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	n.Notify(d.account, d.id)
	n.Subscribe(d.account, d.id, c.wake)()
	if got := c.n.Load(); got != 0 {
		t.Errorf("wake-ups after Close() = %d, want 0", got)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close() twice = %v", err)
	}
}

// TestSweep: while healthy, every local subscriber is still woken every sweep interval,
// the backstop for a wake-up lost elsewhere.
func TestSweep(t *testing.T) {
	srv := startServer(t, -1)
	n, err := Connect(url(srv), Options{PollInterval: -1, SweepInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	defer n.Close()
	d := newDevice()
	c := newCounter()
	defer n.Subscribe(d.account, d.id, c.wake)()
	c.waitAtLeast(t, 3, "sweeps while healthy")
	if !n.Healthy() {
		t.Errorf("Healthy() = false during the sweeps, want true")
	}
}

// TestNotifyRightAfterSubscribe publishes on another node the moment Subscribe returns,
// with no sweep to rescue a lost wake-up: Subscribe must not return before NATS holds
// the subscription (a server reads the queue right after it, then relies on wake-ups).
func TestNotifyRightAfterSubscribe(t *testing.T) {
	srv := startServer(t, -1)
	a, b := connect(t, url(srv), -1, nil), connect(t, url(srv), -1, nil)
	const rounds = 200
	var missed int
	for range rounds {
		d := newDevice()
		d.account = uuid.New()
		c := newCounter()
		cancel := b.Subscribe(d.account, d.id, c.wake)
		a.Notify(d.account, d.id)
		deadline := time.Now().Add(2 * time.Second)
		for c.n.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if c.n.Load() == 0 {
			missed++
		}
		cancel()
	}
	if missed > 0 {
		t.Errorf("Notify() right after Subscribe() on another node: %d of %d wake-ups lost, want 0", missed, rounds)
	}
}

func TestLoggableDropsSubjects(t *testing.T) {
	subject := "bastion.wake.5f0c3a5e-1111-4222-8333-944455556666.1"
	err := fmt.Errorf("%w: Permissions Violation for Subscription to %q", nats.ErrPermissionViolation, subject)
	if got := loggable(err).Error(); strings.Contains(got, subject) || !errors.Is(loggable(err), nats.ErrPermissionViolation) {
		t.Errorf("loggable(%v) = %q, want the kind without the subject", err, got)
	}
	other := errors.New("nats: connection closed")
	if got := loggable(other); got != other {
		t.Errorf("loggable(%v) = %v, want it unchanged", other, got)
	}
}
