package multinode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/bastionchat/bastion/client"
	"github.com/bastionchat/bastion/internal/pgtest"
	"github.com/bastionchat/bastion/internal/reliability"
)

var bastiond string // the built binary

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bastion-multinode-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if bastiond, err = reliability.Build(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return pgtest.Main(m)
}

// sharedKeyFiles are the key files every node must hold identical copies of
// (docs/operations.md): sealed sender's trust root and server certificate, and the key
// transparency log's signing and VRF keys, and the rate-limit key (so the nodes share
// buckets). The legal desk's key stays on its one node.
var sharedKeyFiles = []string{
	"sealed-trust-root.key", "sealed-trust-root.pub", "sealed-server.key", "sealed-server.cert",
	"kt-log.key", "kt-log.pub", "kt-vrf.key", "ratelimit.key",
}

// node is one running bastiond.
type node struct {
	name    string
	URL     string
	dataDir string
	cmd     *exec.Cmd
	log     *reliability.Buffer // standard output: the JSON log
	console *reliability.Buffer // standard error: the development SMS console
	done    chan error
}

// startNode runs bastiond on a free loopback port with dataDir, the shared store and
// NATS. Rate limits are raised because every request in the test comes from one address.
func startNode(t *testing.T, name, dataDir, dsn, natsURL string, legalDesk bool) *node {
	t.Helper()
	n := &node{name: name, dataDir: dataDir, log: &reliability.Buffer{}, console: &reliability.Buffer{}, done: make(chan error, 1)}
	n.cmd = exec.Command(bastiond, "serve", "--data", dataDir, "--listen", "127.0.0.1:0",
		"--store", dsn, "--nats", natsURL, fmt.Sprintf("--legal-desk=%t", legalDesk),
		"--rate-verify-ip", "1000/1h", "--rate-verify-prefix", "1000/1h", "--rate-verify-number", "1000/1h")
	n.cmd.Env = append(os.Environ(), "BASTION_LOG_LEVEL=info")
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.console
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.done <- n.cmd.Wait() }()
	t.Cleanup(func() { n.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for n.URL == "" {
		for _, line := range strings.Split(n.log.String(), "\n") {
			var l struct{ Msg, Listen string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" {
				n.URL = "http://" + l.Listen
			}
		}
		if n.URL != "" {
			break
		}
		select {
		case err := <-n.done:
			t.Fatalf("%s exited: %v\n%s%s", name, err, n.log, n.console)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log its address:\n%s", name, n.log)
		}
	}
	return n
}

// stop shuts the node down gracefully (SIGTERM) unless it is already gone.
func (n *node) stop(t *testing.T) {
	if n.cmd.ProcessState != nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
		t.Errorf("%s did not stop within 20 s of SIGTERM", n.name)
	}
	n.cmd.ProcessState = &os.ProcessState{} // stopped: a second call does nothing
}

// kill ends the node with SIGKILL, as a crash would, and waits until it is gone.
func (n *node) kill() {
	n.cmd.Process.Kill()
	<-n.done
	n.cmd.ProcessState = &os.ProcessState{}
}

var codeRE = regexp.MustCompile(`verification code for (\+\d+): (\d{6})`)

// code returns the last development code node printed for number.
func (n *node) code(t *testing.T, number string) string {
	t.Helper()
	code := ""
	for _, m := range codeRE.FindAllStringSubmatch(n.console.String(), -1) {
		if m[1] == number {
			code = m[2]
		}
	}
	if code == "" {
		t.Fatalf("%s printed no code for %s", n.name, number)
	}
	return code
}

// get returns the body of GET url+path.
func get(t *testing.T, url, path string) []byte {
	t.Helper()
	resp, err := http.Get(url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v", path, resp.StatusCode, err)
	}
	return b
}

// user is one registered device, connected to one node at a time.
type user struct {
	number string
	dir    string
	c      *client.Client
}

func register(t *testing.T, ctx context.Context, n *node, number string) *user {
	t.Helper()
	u := &user{number: number, dir: t.TempDir()}
	if err := u.connect(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := u.c.RequestCode(ctx, number); err != nil {
		t.Fatalf("RequestCode(%s) via %s = %v", number, n.name, err)
	}
	if _, err := u.c.Verify(ctx, n.code(t, number)); err != nil {
		t.Fatalf("Verify(%s) via %s = %v", number, n.name, err)
	}
	return u
}

// connect (re)opens the profile against n.
func (u *user) connect(ctx context.Context, n *node) error {
	if u.c != nil {
		u.c.Close()
	}
	c, err := client.Open(ctx, u.dir, client.Options{Server: n.URL})
	if err != nil {
		return fmt.Errorf("client.Open(%s) = %w", n.name, err)
	}
	u.c = c
	return nil
}

// inbox is what a listening user has received, by text.
type inbox struct {
	mu   sync.Mutex
	got  map[string]int
	wake chan struct{}
}

func newInbox() *inbox { return &inbox{got: map[string]int{}, wake: make(chan struct{}, 1)} }

func (b *inbox) add(m client.Message) error {
	b.mu.Lock()
	b.got[m.Text]++
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return nil
}

func (b *inbox) has(text string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got[text] > 0
}

// waitFor waits until every text in want has arrived or d has passed, and returns those
// still missing.
func (b *inbox) waitFor(want []string, d time.Duration) []string {
	deadline := time.After(d)
	for {
		var missing []string
		for _, w := range want {
			if !b.has(w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-b.wake:
		case <-deadline:
			return missing
		}
	}
}

// listener runs Listen for u on one node after another: move stops the current Listen
// and starts one on another node.
type listener struct {
	u      *user
	in     *inbox
	cancel context.CancelFunc
	done   chan error
}

func listen(t *testing.T, ctx context.Context, u *user, n *node) *listener {
	t.Helper()
	l := &listener{u: u, in: newInbox()}
	if err := l.start(ctx, n); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *listener) start(ctx context.Context, n *node) error {
	if err := l.u.connect(ctx, n); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	l.cancel, l.done = cancel, make(chan error, 1)
	c := l.u.c
	go func() { l.done <- c.Listen(lctx, l.in.add) }()
	return nil
}

// stop ends the current Listen and returns its error (nil on cancellation).
func (l *listener) stop() error {
	l.cancel()
	return <-l.done
}

func (l *listener) move(ctx context.Context, n *node) error {
	l.stop()
	return l.start(ctx, n)
}

// promptly bounds how long a cross-node message may take. It is far below the bus's
// one-minute sweep, so only a wake-up that crossed NATS delivers within it, and far above
// what a loaded two-core machine needs (milliseconds).
const promptly = 20 * time.Second

// startNATS runs a NATS server on a free loopback port until the test ends and returns
// its client URL.
func startNATS(tb testing.TB) string {
	tb.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatalf("nats NewServer() = %v", err)
	}
	go ns.Start()
	tb.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("NATS server did not start")
	}
	return ns.ClientURL()
}

func TestThreeNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn := pgtest.Start(t)

	natsURL := startNATS(t)

	// Node 1 runs the legal desk and creates the key files on its first start; the
	// others get copies, as docs/operations.md says.
	n1 := startNode(t, "node1", t.TempDir(), dsn, natsURL, true)
	var nodes = []*node{n1}
	for _, name := range []string{"node2", "node3"} {
		dir := t.TempDir()
		for _, f := range sharedKeyFiles {
			b, err := os.ReadFile(filepath.Join(n1.dataDir, f))
			if err != nil {
				t.Fatalf("node1 did not create %s: %v", f, err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, startNode(t, name, dir, dsn, natsURL, false))
	}
	n2, n3 := nodes[1], nodes[2]
	root := get(t, n1.URL, "/v1/certificate/trust-root")
	for _, n := range nodes[1:] {
		if got := get(t, n.URL, "/v1/certificate/trust-root"); !bytes.Equal(got, root) {
			t.Fatalf("%s serves trust root %q, node1 %q: the nodes do not share their keys", n.name, got, root)
		}
	}

	// A market withdrawn through the desk on node 1, with the real commands of
	// docs/lawful-access.md, is refused by node 2 as well, and accepted after restore.
	tokenFile := filepath.Join(t.TempDir(), "alice.token")
	if err := os.WriteFile(tokenFile, runBastiond(t, "legal", "operator", "add", "alice", "--data", n1.dataDir), 0o600); err != nil {
		t.Fatal(err)
	}
	runBastiond(t, "market", "withdraw", "DE", "--reason", "We will not scan messages.", "--data", n1.dataDir, "--token-file", tokenFile)
	de := &user{number: "+4915123456700", dir: t.TempDir()}
	if err := de.connect(ctx, n2); err != nil {
		t.Fatal(err)
	}
	if err := de.c.RequestCode(ctx, de.number); err == nil || !strings.Contains(err.Error(), "market_withdrawn") {
		t.Errorf("RequestCode(DE number) via node2 after the withdrawal on node1 = %v, want market_withdrawn", err)
	}
	runBastiond(t, "market", "restore", "DE", "--data", n1.dataDir, "--token-file", tokenFile)
	if err := de.c.RequestCode(ctx, de.number); err != nil {
		t.Errorf("RequestCode(DE number) via node2 after the restore = %v, want nil", err)
	}
	de.c.Close()

	// One sender and one receiver on each node.
	var senders, receivers []*user
	for i, n := range nodes {
		senders = append(senders, register(t, ctx, n, fmt.Sprintf("+1415555%04d", 100+i)))
		receivers = append(receivers, register(t, ctx, n, fmt.Sprintf("+1415555%04d", 200+i)))
	}
	var ls []*listener
	for i, r := range receivers {
		ls = append(ls, listen(t, ctx, r, nodes[i]))
	}
	defer func() {
		for _, l := range ls {
			l.stop()
			l.u.c.Close()
		}
		for _, s := range senders {
			s.c.Close()
		}
	}()

	// Across nodes: the sender on node i writes to the receiver on node i+1.
	for i, s := range senders {
		j := (i + 1) % len(nodes)
		text := fmt.Sprintf("hello from %s to %s", nodes[i].name, nodes[j].name)
		if _, err := s.c.Send(ctx, receivers[j].number, text); err != nil {
			t.Fatalf("Send via %s = %v", nodes[i].name, err)
		}
		if missing := ls[j].in.waitFor([]string{text}, promptly); missing != nil {
			t.Fatalf("a message sent via %s did not reach its recipient on %s within %v: the wake-up did not cross NATS",
				nodes[i].name, nodes[j].name, promptly)
		}
	}

	// Under load, node 3 dies. Each sender writes to every receiver in turn; a failed
	// send moves the sender to the next surviving node and tries again (a new envelope:
	// the first may or may not have been stored, and duplicates are allowed, loss is not).
	const perSender = 24
	var (
		mu     sync.Mutex
		acked  = map[int][]string{} // receiver index -> texts a server acknowledged
		killed = make(chan struct{})
		wg     sync.WaitGroup
	)
	survivors := []*node{n1, n2}
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perSender {
				r := k % len(receivers)
				text := fmt.Sprintf("load %d from sender %d", k, i)
				for attempt := 0; ; attempt++ {
					_, err := s.c.Send(ctx, receivers[r].number, text)
					if err == nil {
						mu.Lock()
						acked[r] = append(acked[r], text)
						mu.Unlock()
						break
					}
					if attempt == 3 || ctx.Err() != nil {
						t.Errorf("sender %d: Send = %v after %d attempts", i, err, attempt+1)
						return
					}
					if err := s.connect(ctx, survivors[(i+attempt)%len(survivors)]); err != nil {
						t.Errorf("sender %d: %v", i, err)
						return
					}
				}
				if i == 2 && k == perSender/3 {
					close(killed) // half-way through its own load, node 3's sender pulls the plug
				}
			}
		}()
	}
	<-killed
	n3.kill()
	// Node 3's receiver reconnects elsewhere, as a client behind a load balancer would.
	if err := ls[2].move(ctx, n1); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	total := 0
	for r, want := range acked {
		total += len(want)
		if missing := ls[r].in.waitFor(want, promptly); missing != nil {
			t.Errorf("receiver %d: %d of %d acknowledged messages never arrived, e.g. %q", r, len(missing), len(want), missing[0])
		}
	}
	if total != perSender*len(senders) {
		t.Errorf("%d messages acknowledged, want %d", total, perSender*len(senders))
	}
	for _, n := range nodes[:2] {
		if strings.Contains(n.log.String(), `"level":"ERROR"`) {
			t.Logf("%s logged errors:\n%s", n.name, n.log)
		}
	}
}

// runBastiond runs the built bastiond with args and returns its standard output.
func runBastiond(t *testing.T, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bastiond, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bastiond %s = %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}
