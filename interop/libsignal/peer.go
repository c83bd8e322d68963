// Package libsignal runs Signal's own libsignal as a peer for Bastion's
// interop tests.
//
// Bastion's Go Signal Protocol implementation (package protocol) must be
// byte-compatible with libsignal: PQXDH session setup, the Double Ratchet,
// Sender Keys, XEdDSA, safety numbers and sealed sender. This package starts
// peer.mjs, a Node process that drives the npm package
// @signalapp/libsignal-client pinned at [PinnedVersion], and talks to it in
// JSON lines (see README.md and the comment at the top of peer.mjs), so a Go
// test can hand libsignal a bundle made by our code, decrypt what libsignal
// encrypted, and the reverse.
//
// It is test tooling and protects nothing: the peer keeps its keys in memory
// and returns private keys to whoever asks. Only tests should import it.
// [StartForTest] skips a test when Node or the npm package is missing, unless
// BASTION_REQUIRE_INTEROP=1 makes that a failure (as CI does).
package libsignal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// PinnedVersion is the @signalapp/libsignal-client release the peer must run:
// the newest one that still accepts sessions without the SPQR ratchet.
const PinnedVersion = "0.90.0"

// RequireEnv is the environment variable that turns a missing peer from a
// skipped test into a failed one.
const RequireEnv = "BASTION_REQUIRE_INTEROP"

// ErrNotInstalled reports that Node or the pinned npm package is missing.
var ErrNotInstalled = errors.New("libsignal interop peer not installed: run `npm ci` in interop/libsignal")

// MessageType is libsignal's CiphertextMessageType. The zero value is invalid.
type MessageType int

// Message types, as libsignal numbers them.
const (
	TypeWhisper   MessageType = 2 // SignalMessage: a session exists
	TypePreKey    MessageType = 3 // PreKeySignalMessage: first messages of a session
	TypeSenderKey MessageType = 7 // SenderKeyMessage
)

// Error is a failure the peer reported for one request.
type Error struct {
	Op      string // the request's op
	Message string // libsignal's (or the peer's) message
	Code    string // libsignal's ErrorCode name ("Generic", "DuplicatedMessage", ...), or "" for the peer's own checks
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("libsignal %s: %s (%s)", e.Op, e.Message, e.Code)
	}
	return fmt.Sprintf("libsignal %s: %s", e.Op, e.Message)
}

// Peer is a running peer.mjs process. Its methods are safe for concurrent
// use; the peer executes requests one at a time in the order they arrive.
type Peer struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  *tail
	writeMu sync.Mutex // serializes request lines on stdin

	mu      sync.Mutex // guards nextID, pending, err
	nextID  uint64
	pending map[uint64]chan []byte
	err     error // set once the peer is gone; fails every later call

	exited    chan struct{} // closed when the process has exited and been reaped
	closeOnce sync.Once
}

// Dir returns the directory holding peer.mjs and its package.json: the
// directory of this source file.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Dir(file)
}

// Installed reports whether Node and the npm package are present for the
// peer in dir. The error wraps [ErrNotInstalled] and says what is missing.
func Installed(dir string) error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("%w (node not found in PATH)", ErrNotInstalled)
	}
	pkg := filepath.Join(dir, "node_modules", "@signalapp", "libsignal-client", "package.json")
	if _, err := os.Stat(pkg); err != nil {
		return fmt.Errorf("%w (%s missing)", ErrNotInstalled, pkg)
	}
	return nil
}

// Start runs `node peer.mjs` in dir and checks that it speaks and runs
// [PinnedVersion]. Cancelling ctx kills the process.
func Start(ctx context.Context, dir string) (*Peer, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("%w (node not found in PATH)", ErrNotInstalled)
	}
	cmd := exec.CommandContext(ctx, node, "peer.mjs")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("starting libsignal peer: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("starting libsignal peer: %w", err)
	}
	p := &Peer{
		cmd:     cmd,
		stdin:   stdin,
		stderr:  &tail{max: 8 << 10},
		pending: make(map[uint64]chan []byte),
		exited:  make(chan struct{}),
	}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting libsignal peer: %w", err)
	}
	go p.readLoop(stdout)

	var hello struct {
		LibsignalVersion string `json:"libsignal_version"`
	}
	if err := p.CallContext(ctx, "hello", nil, &hello); err != nil {
		p.Close()
		return nil, fmt.Errorf("starting libsignal peer: %w", err)
	}
	if hello.LibsignalVersion != PinnedVersion {
		p.Close()
		return nil, fmt.Errorf("libsignal peer runs libsignal-client %q, want %q: run `npm ci` in interop/libsignal",
			hello.LibsignalVersion, PinnedVersion)
	}
	return p, nil
}

// StartForTest starts the peer in [Dir] for t and closes it when t ends. If
// the peer is not installed it skips t, or fails it when the environment
// variable BASTION_REQUIRE_INTEROP is "1".
func StartForTest(t testing.TB) *Peer {
	t.Helper()
	dir := Dir()
	if err := Installed(dir); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	p, err := Start(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing libsignal peer: %v", err)
		}
	})
	return p
}

// Call sends one request and decodes the reply's fields into reply (which
// may be nil). args must marshal to a JSON object (or be nil) without "id"
// or "op" keys. A failure the peer reports is an [*Error].
func (p *Peer) Call(op string, args, reply any) error {
	return p.CallContext(context.Background(), op, args, reply)
}

// CallContext is [Peer.Call] with a context bounding the wait for the reply.
func (p *Peer) CallContext(ctx context.Context, op string, args, reply any) error {
	fields := map[string]json.RawMessage{}
	if args != nil {
		raw, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("libsignal %s: encoding args: %w", op, err)
		}
		if err := json.Unmarshal(raw, &fields); err != nil {
			return fmt.Errorf("libsignal %s: args are not a JSON object: %w", op, err)
		}
		if _, ok := fields["id"]; ok {
			return fmt.Errorf("libsignal %s: args may not set \"id\"", op)
		}
		if _, ok := fields["op"]; ok {
			return fmt.Errorf("libsignal %s: args may not set \"op\"", op)
		}
	}
	opJSON, err := json.Marshal(op)
	if err != nil {
		return fmt.Errorf("libsignal %s: encoding op: %w", op, err)
	}
	fields["op"] = opJSON

	ch := make(chan []byte, 1)
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return err
	}
	p.nextID++
	id := p.nextID
	p.pending[id] = ch
	p.mu.Unlock()

	fields["id"] = json.RawMessage(fmt.Sprint(id))
	line, err := json.Marshal(fields)
	if err != nil {
		p.forget(id)
		return fmt.Errorf("libsignal %s: encoding request: %w", op, err)
	}
	p.writeMu.Lock()
	_, err = p.stdin.Write(append(line, '\n'))
	p.writeMu.Unlock()
	if err != nil {
		p.forget(id)
		return fmt.Errorf("libsignal %s: writing request: %w", op, err)
	}

	var resp []byte
	select {
	case resp = <-ch:
	case <-ctx.Done():
		p.forget(id)
		return fmt.Errorf("libsignal %s: %w", op, ctx.Err())
	}
	if resp == nil {
		p.mu.Lock()
		err := p.err
		p.mu.Unlock()
		return fmt.Errorf("libsignal %s: %w", op, err)
	}
	var head struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.Unmarshal(resp, &head); err != nil {
		return fmt.Errorf("libsignal %s: decoding reply: %w", op, err)
	}
	if !head.OK {
		return &Error{Op: op, Message: head.Error, Code: head.Code}
	}
	if reply != nil {
		if err := json.Unmarshal(resp, reply); err != nil {
			return fmt.Errorf("libsignal %s: decoding reply: %w", op, err)
		}
	}
	return nil
}

func (p *Peer) forget(id uint64) {
	p.mu.Lock()
	delete(p.pending, id)
	p.mu.Unlock()
}

// readLoop hands each reply line to the call waiting for its id. When stdout
// ends it reaps the process and fails every pending and later call.
func (p *Peer) readLoop(stdout io.Reader) {
	r := bufio.NewReader(stdout)
	var loopErr error
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var head struct {
				ID *uint64 `json:"id"`
			}
			if jerr := json.Unmarshal(line, &head); jerr != nil || head.ID == nil {
				// The peer broke the protocol; nothing it says can be trusted any more.
				loopErr = fmt.Errorf("libsignal peer wrote a line without a request id: %.200q", line)
				break
			}
			p.mu.Lock()
			ch, ok := p.pending[*head.ID]
			delete(p.pending, *head.ID)
			p.mu.Unlock()
			if ok {
				ch <- line
			}
		}
		if err != nil {
			break
		}
	}
	if loopErr != nil {
		_ = p.cmd.Process.Kill()
		_, _ = io.Copy(io.Discard, r)
	}
	waitErr := p.cmd.Wait()
	p.mu.Lock()
	switch {
	case loopErr != nil:
		p.err = loopErr
	case waitErr != nil:
		p.err = fmt.Errorf("libsignal peer exited: %w; stderr: %s", waitErr, p.stderr.String())
	default:
		p.err = errors.New("libsignal peer exited")
	}
	for id, ch := range p.pending {
		close(ch)
		delete(p.pending, id)
	}
	p.mu.Unlock()
	close(p.exited)
}

// Close ends the peer: it closes its stdin, lets it finish the requests it
// has, and kills it if it has not exited within five seconds.
func (p *Peer) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.writeMu.Lock()
		_ = p.stdin.Close()
		p.writeMu.Unlock()
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			err = fmt.Errorf("libsignal peer did not exit when its input closed; killed it; stderr: %s", p.stderr.String())
			return
		}
		if state := p.cmd.ProcessState; state != nil && !state.Success() {
			err = fmt.Errorf("libsignal peer exited with %v; stderr: %s", state, p.stderr.String())
		}
	})
	return err
}

// tail keeps the last max bytes written to it, for error messages.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}
