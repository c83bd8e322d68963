// Package reliability drives a real bastiond from the outside, as a client on another
// machine would: it starts the binary on a loopback port with a data directory of its
// own, kills it (SIGKILL) and restarts it, registers devices through the public API with
// the development SMS codes the server prints, and sends, receives and acknowledges
// envelopes over HTTP and WebSocket. Its tests are the reliability proofs of issue 3
// (crash consistency, one-time prekeys across a kill, abuse against the real binary);
// cmd/bastion-bench builds its load on the same driver.
//
// What it protects: nothing at run time; it is test and benchmark machinery. Envelope
// bodies it sends are random bytes: the server cannot tell them from ciphertext. It keeps
// device passwords in memory only and never prints them.
package reliability

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/protocol/curve"
)

// Build compiles bastiond into dir and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "bastiond")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/bastionchat/bastion/cmd/bastiond")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building bastiond: %w\n%s", err, b)
	}
	return out, nil
}

// Server is a bastiond process (or a server run by someone else, see [Attach]).
type Server struct {
	URL  string // http://127.0.0.1:port
	Bin  string
	Data string
	Args []string // extra serve flags

	codes *codeBook

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	Log  *Buffer // standard output of every run: the JSON log
}

// Start runs bin serve on 127.0.0.1 with data as its data directory and extra flags, and
// waits until it logs the address it serves.
func Start(ctx context.Context, bin, data string, args ...string) (*Server, error) {
	s := &Server{Bin: bin, Data: data, Args: args, codes: newCodeBook(), Log: &Buffer{}}
	if err := s.start(ctx, "127.0.0.1:0"); err != nil {
		return nil, err
	}
	return s, nil
}

// Attach uses a server someone else runs at url. Registration then needs its development
// SMS console: console is the file its standard error goes to (may be empty when only
// existing credentials are used).
func Attach(url, console string) *Server {
	s := &Server{URL: strings.TrimSuffix(url, "/"), codes: newCodeBook()}
	if console != "" {
		go s.codes.tailFile(console)
	}
	return s
}

var servingAddr = regexp.MustCompile(`"msg":"serving","listen":"([^"]+)"`)

func (s *Server) start(ctx context.Context, listen string) error {
	args := append([]string{"serve", "--data", s.Data, "--listen", listen}, s.Args...)
	cmd := exec.Command(s.Bin, args...)
	pr, pw := io.Pipe()
	cmd.Stderr = s.codes.writer()
	cmd.Stdout = io.MultiWriter(s.Log, pw)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting bastiond: %w", err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		pw.Close()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(done)
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			if m := servingAddr.FindSubmatch(sc.Bytes()); m != nil && !found {
				found = true
				addr <- string(m[1])
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case a := <-addr:
		if s.URL == "" { // a restart serves the same address: URL is read concurrently
			s.URL = "http://" + a
		}
		return nil
	case <-done:
		return fmt.Errorf("bastiond exited before serving: %v\n%s", s.err, s.Log.Tail(2000))
	case <-time.After(30 * time.Second):
		s.Kill()
		return errors.New("bastiond did not log its address within 30 s")
	case <-ctx.Done():
		s.Kill()
		return ctx.Err()
	}
}

// Pid is the running process's id (0 when attached or stopped).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Kill ends the process with SIGKILL, as a power cut would, and waits for it.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Stop ends the process gracefully (SIGTERM) and waits up to 20 s, then kills it.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		s.Kill()
		return errors.New("bastiond did not stop within 20 s of SIGTERM")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Alive reports whether the process is still running.
func (s *Server) Alive() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Restart starts the process again on the same address and data directory (after Kill
// or Stop).
func (s *Server) Restart(ctx context.Context) error {
	return s.start(ctx, strings.TrimPrefix(s.URL, "http://"))
}

// Buffer collects a process's output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Tail returns the last n bytes written.
func (b *Buffer) Tail(n int) string {
	s := b.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// codeBook reads the development SMS console and hands out the codes it prints.
type codeBook struct {
	mu    sync.Mutex
	cond  *sync.Cond
	codes map[string]string
}

func newCodeBook() *codeBook {
	c := &codeBook{codes: make(map[string]string)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

var codeLine = regexp.MustCompile(`verification code for (\+[0-9]+): ([0-9]+)`)

func (c *codeBook) line(l string) {
	if m := codeLine.FindStringSubmatch(l); m != nil {
		c.mu.Lock()
		c.codes[m[1]] = m[2]
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

func (c *codeBook) writer() io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.line(sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	return pw
}

func (c *codeBook) tailFile(path string) {
	var off int64
	var rest string
	for {
		f, err := os.Open(path)
		if err == nil {
			f.Seek(off, io.SeekStart)
			b, _ := io.ReadAll(f)
			f.Close()
			off += int64(len(b))
			lines := strings.Split(rest+string(b), "\n")
			rest = lines[len(lines)-1]
			for _, l := range lines[:len(lines)-1] {
				c.line(l)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// take waits for the code printed for number and forgets it.
func (c *codeBook) take(ctx context.Context, number string) (string, error) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if code, ok := c.codes[number]; ok {
			delete(c.codes, number)
			return code, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("waiting for the code: %w", ctx.Err())
		}
		c.cond.Wait()
	}
}

// HTTPClient is shared by every device: keep-alive connections, many per host.
var HTTPClient = &http.Client{
	Transport: &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 90 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	},
	Timeout: 60 * time.Second,
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Status     int
	Body       api.Error
	RetryAfter string // the Retry-After header, if any
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("status %d %s: %s", e.Status, e.Body.Code, e.Body.Message)
}

// Do sends a JSON request (body nil for none) with basic credentials when user is not
// empty, and decodes a 2xx answer into out (when not nil).
func (s *Server) Do(ctx context.Context, method, path string, body any, user, pass string, out any) error {
	var rd io.Reader
	if body != nil {
		p, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(p)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	p, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		e := &StatusError{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
		json.Unmarshal(p, &e.Body)
		return e
	}
	if out != nil && len(p) > 0 {
		return json.Unmarshal(p, out)
	}
	return nil
}

// Device is a registered device as the driver holds it.
type Device struct {
	Account  uuid.UUID
	ID       uint32
	Password string
	RegID    uint32
	Number   string
	identity *curve.PrivateKey
	keyID    uint32
}

// User is the Basic user name: "<account>.<device>".
func (d *Device) User() string { return fmt.Sprintf("%s.%d", d.Account, d.ID) }

// KeyOptions says how many one-time keys of each kind a registration uploads.
type KeyOptions struct{ PreKeys, KyberPreKeys int }

// RequestCode starts a verification for number and returns its session id.
func (s *Server) RequestCode(ctx context.Context, number string) (string, error) {
	var v api.VerificationResponse
	if err := s.Do(ctx, "POST", "/v1/verification", api.CreateVerificationRequest{Number: number}, "", "", &v); err != nil {
		return "", err
	}
	return v.SessionID, nil
}

// Code waits for the development console to print the code for number.
func (s *Server) Code(ctx context.Context, number string) (string, error) {
	return s.codes.take(ctx, number)
}

// Register registers number through the API: code request, the code from the console,
// code proof, account creation with freshly generated keys.
func (s *Server) Register(ctx context.Context, number string, k KeyOptions) (*Device, error) {
	var v api.VerificationResponse
	if err := s.Do(ctx, "POST", "/v1/verification", api.CreateVerificationRequest{Number: number}, "", "", &v); err != nil {
		return nil, fmt.Errorf("requesting a code: %w", err)
	}
	code, err := s.codes.take(ctx, number)
	if err != nil {
		return nil, err
	}
	if err := s.Do(ctx, "PUT", "/v1/verification/"+v.SessionID+"/code", api.SubmitCodeRequest{Code: code}, "", "", nil); err != nil {
		return nil, fmt.Errorf("proving the code: %w", err)
	}
	ik, err := curve.GeneratePrivateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	d := &Device{Number: number, identity: ik, RegID: 1 + uint32(randUint16()%16380)}
	keys, err := d.newKeys(k)
	if err != nil {
		return nil, err
	}
	req := api.RegisterRequest{
		SessionID: v.SessionID, IdentityKey: ik.PublicKey().Bytes(), RegistrationID: d.RegID,
		SignedPreKey: *keys.SignedPreKey, KyberLastResort: *keys.KyberLastResort,
		PreKeys: keys.PreKeys, KyberPreKeys: keys.KyberPreKeys,
	}
	var r api.RegisterResponse
	if err := s.Do(ctx, "POST", "/v1/accounts", req, "", "", &r); err != nil {
		return nil, fmt.Errorf("registering: %w", err)
	}
	d.Account, d.ID, d.Password = r.AccountID, r.DeviceID, r.Password
	return d, nil
}

// UploadKeys adds one-time keys (and a new signed prekey) to d.
func (s *Server) UploadKeys(ctx context.Context, d *Device, k KeyOptions) error {
	keys, err := d.newKeys(k)
	if err != nil {
		return err
	}
	return s.Do(ctx, "PUT", "/v1/keys", keys, d.User(), d.Password, nil)
}

func randUint16() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return uint16(b[0])<<8 | uint16(b[1])
}

// kyberKey is a serialized Kyber-1024 public key as the server sees it: the type byte
// and 1568 bytes. The server checks the encoding's length and the signature, not the
// lattice, so random bytes load it exactly as a real key does.
func kyberKey() []byte {
	k := make([]byte, 1+1568)
	rand.Read(k)
	k[0] = 0x08
	return k
}

func (d *Device) signed(pub []byte) (api.SignedPreKey, error) {
	d.keyID++
	sig, err := d.identity.Sign(rand.Reader, pub)
	if err != nil {
		return api.SignedPreKey{}, err
	}
	return api.SignedPreKey{KeyID: d.keyID, PublicKey: pub, Signature: sig}, nil
}

func (d *Device) newKeys(k KeyOptions) (api.SetKeysRequest, error) {
	ec := func() ([]byte, error) {
		p, err := curve.GeneratePrivateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return p.PublicKey().Bytes(), nil
	}
	pub, err := ec()
	if err != nil {
		return api.SetKeysRequest{}, err
	}
	spk, err := d.signed(pub)
	if err != nil {
		return api.SetKeysRequest{}, err
	}
	lr, err := d.signed(kyberKey())
	if err != nil {
		return api.SetKeysRequest{}, err
	}
	req := api.SetKeysRequest{SignedPreKey: &spk, KyberLastResort: &lr}
	for range k.PreKeys {
		pub, err := ec()
		if err != nil {
			return req, err
		}
		d.keyID++
		req.PreKeys = append(req.PreKeys, api.PreKey{KeyID: d.keyID, PublicKey: pub})
	}
	for range k.KyberPreKeys {
		kp, err := d.signed(kyberKey())
		if err != nil {
			return req, err
		}
		req.KyberPreKeys = append(req.KyberPreKeys, kp)
	}
	return req, nil
}

// Send sends one envelope with id and body from d to device to over HTTP
// (PUT /v1/messages), returning once the server says it is durable.
func (s *Server) Send(ctx context.Context, from, to *Device, id uuid.UUID, body []byte) error {
	req := api.SendRequest{Messages: []api.OutgoingEnvelope{{DeviceID: to.ID, RegistrationID: to.RegID, ID: id, Body: body}}}
	return s.Do(ctx, "PUT", "/v1/messages/"+to.Account.String(), req, from.User(), from.Password, nil)
}

// Bundle fetches a bundle of every device of target.
func (s *Server) Bundle(ctx context.Context, from, target *Device) (api.BundleResponse, error) {
	var b api.BundleResponse
	err := s.Do(ctx, "GET", "/v1/keys/"+target.Account.String()+"/*", nil, from.User(), from.Password, &b)
	return b, err
}

// Conn is a device's WebSocket. Next and Ack may be used from different goroutines; each
// from one goroutine at a time.
type Conn struct {
	c   net.Conn
	wmu sync.Mutex
}

// Dial opens d's WebSocket.
func (s *Server) Dial(ctx context.Context, d *Device) (*Conn, error) {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(d.User(), d.Password)
	dl := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": req.Header["Authorization"]}), Timeout: 10 * time.Second}
	c, br, _, err := dl.Dial(ctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/v1/websocket")
	if err != nil {
		return nil, fmt.Errorf("dialing the websocket: %w", err)
	}
	if br != nil {
		// The server wrote frames behind the handshake; keep them in front of the socket.
		c = &prefixConn{Conn: c, r: io.MultiReader(br, c)}
	}
	return &Conn{c: c}, nil
}

type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// Next reads the next frame from the server (answering pings on the way). A deadline of
// zero waits forever.
func (c *Conn) Next(deadline time.Time) (api.Frame, error) {
	c.c.SetReadDeadline(deadline)
	for {
		p, op, err := wsutil.ReadServerData(c.lockedRW())
		if err != nil {
			return api.Frame{}, err
		}
		if op != ws.OpText {
			continue
		}
		var f api.Frame
		if err := json.Unmarshal(p, &f); err != nil {
			return f, fmt.Errorf("decoding a frame: %w", err)
		}
		return f, nil
	}
}

// lockedRW writes (the pongs ReadServerData sends) under the write lock.
func (c *Conn) lockedRW() io.ReadWriter { return lockedRW{c} }

type lockedRW struct{ c *Conn }

func (l lockedRW) Read(p []byte) (int, error) { return l.c.c.Read(p) }
func (l lockedRW) Write(p []byte) (int, error) {
	l.c.wmu.Lock()
	defer l.c.wmu.Unlock()
	return l.c.c.Write(p)
}

// WriteFrame sends a JSON text frame.
func (c *Conn) WriteFrame(v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return wsutil.WriteClientMessage(c.c, ws.OpText, p)
}

// Ack acknowledges envelopes.
func (c *Conn) Ack(ids []uuid.UUID) error {
	return c.WriteFrame(api.Frame{Type: api.FrameAck, IDs: ids})
}

// Raw is the underlying connection, for tests that misbehave on purpose.
func (c *Conn) Raw() net.Conn { return c.c }

// Close closes the connection without a close frame.
func (c *Conn) Close() error { return c.c.Close() }

// WSSender sends over a device's WebSocket (the "send" frame) and pairs each
// send_result with its send. Envelopes delivered to the device are acked and dropped.
type WSSender struct {
	c      *Conn
	mu     sync.Mutex
	nextID uint64
	wait   map[uint64]chan api.Frame
	err    error
}

// DialSender opens d's WebSocket for sending.
func (s *Server) DialSender(ctx context.Context, d *Device) (*WSSender, error) {
	c, err := s.Dial(ctx, d)
	if err != nil {
		return nil, err
	}
	w := &WSSender{c: c, wait: make(map[uint64]chan api.Frame)}
	go w.read()
	return w, nil
}

func (w *WSSender) read() {
	for {
		f, err := w.c.Next(time.Time{})
		if err != nil {
			w.mu.Lock()
			w.err = err
			for id, ch := range w.wait {
				close(ch)
				delete(w.wait, id)
			}
			w.mu.Unlock()
			return
		}
		switch f.Type {
		case api.FrameSendResult:
			w.mu.Lock()
			ch := w.wait[f.RequestID]
			delete(w.wait, f.RequestID)
			w.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		case api.FrameEnvelopes:
			ids := make([]uuid.UUID, len(f.Envelopes))
			for i, e := range f.Envelopes {
				ids[i] = e.ID
			}
			w.c.Ack(ids)
		}
	}
}

// Send sends one envelope to device to and waits for the server's answer.
func (w *WSSender) Send(ctx context.Context, to *Device, id uuid.UUID, body []byte) error {
	ch := make(chan api.Frame, 1)
	w.mu.Lock()
	if w.err != nil {
		w.mu.Unlock()
		return w.err
	}
	w.nextID++
	rid := w.nextID
	w.wait[rid] = ch
	w.mu.Unlock()
	dest := to.Account
	err := w.c.WriteFrame(api.Frame{Type: api.FrameSend, RequestID: rid, Destination: &dest,
		Messages: []api.OutgoingEnvelope{{DeviceID: to.ID, RegistrationID: to.RegID, ID: id, Body: body}}})
	if err != nil {
		w.mu.Lock()
		delete(w.wait, rid)
		w.mu.Unlock()
		return err
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return errors.New("connection lost before the answer")
		}
		if f.Status != http.StatusOK {
			e := &StatusError{Status: f.Status}
			if f.Error != nil {
				e.Body = *f.Error
			}
			return e
		}
		return nil
	case <-ctx.Done():
		w.mu.Lock()
		delete(w.wait, rid)
		w.mu.Unlock()
		return ctx.Err()
	}
}

// Close closes the connection.
func (w *WSSender) Close() error { return w.c.Close() }
