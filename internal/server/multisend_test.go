package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
)

func (h *harness) multiSend(from *client, recips ...api.Recipient) response {
	h.t.Helper()
	return h.do("PUT", "/v1/messages", api.MultiSendRequest{Recipients: recips}, from)
}

func recipient(account uuid.UUID, envs ...api.OutgoingEnvelope) api.Recipient {
	return api.Recipient{Account: account, Messages: envs}
}

// multiGroup is a small group as the multi-send tests use it: alice sends, with a second
// device of her own; bob has three devices, carol and dave one each.
type multiGroup struct {
	alice, bob, carol, dave *client
	aliceSecond, bob2, bob3 uint32
	all                     []struct {
		c   *client
		dev uint32
	}
}

func newMultiGroup(h *harness, base int) *multiGroup {
	h.t.Helper()
	g := &multiGroup{
		alice: h.register(fmt.Sprintf("+1415555%04d", base), 0),
		bob:   h.register(fmt.Sprintf("+1415555%04d", base+1), 0),
		carol: h.register(fmt.Sprintf("+1415555%04d", base+2), 0),
		dave:  h.register(fmt.Sprintf("+1415555%04d", base+3), 0),
	}
	g.aliceSecond = h.addDevice(g.alice, 701)
	g.bob2 = h.addDevice(g.bob, 702)
	g.bob3 = h.addDevice(g.bob, 703)
	for _, c := range []*client{g.alice, g.bob, g.carol, g.dave} {
		h.secret(c.account.String()) // no account id may reach the log
	}
	add := func(c *client, dev uint32) {
		g.all = append(g.all, struct {
			c   *client
			dev uint32
		}{c, dev})
	}
	add(g.alice, 1)
	add(g.alice, g.aliceSecond)
	add(g.bob, 1)
	add(g.bob, g.bob2)
	add(g.bob, g.bob3)
	add(g.carol, 1)
	add(g.dave, 1)
	return g
}

// right is the correct request for the group: every device but alice's first.
func (g *multiGroup) right(body []byte) []api.Recipient {
	return []api.Recipient{
		recipient(g.bob.account, envelope(1, g.bob.regID, body), envelope(g.bob2, 702, body), envelope(g.bob3, 703, body)),
		recipient(g.carol.account, envelope(1, g.carol.regID, body)),
		recipient(g.alice.account, envelope(g.aliceSecond, 701, body)),
		recipient(g.dave.account, envelope(1, g.dave.regID, body)),
	}
}

// queued counts the envelopes waiting for every device of the group.
func (h *harness) queued(g *multiGroup) int {
	h.t.Helper()
	n := 0
	for _, d := range g.all {
		n += len(h.pending(d.c, d.dev))
	}
	return n
}

func TestMultiSend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	g := newMultiGroup(h, 8100)
	body := []byte("sender key ciphertext, sealed per device")
	req := g.right(body)
	r := h.multiSend(g.alice, req...)
	h.want(r, 200, "", "multi-send")
	if got, want := decodeBody[api.SendResponse](t, r).ServerTime, h.clock.Now().UnixMilli(); got != want {
		t.Errorf("server_time = %d, want %d", got, want)
	}
	for _, d := range g.all {
		p := h.pending(d.c, d.dev)
		want := 1
		if d.c == g.alice && d.dev == 1 {
			want = 0 // the sending device
		}
		if len(p) != want {
			t.Errorf("queue of %s device %d = %d envelopes, want %d", d.c.number, d.dev, len(p), want)
			continue
		}
		if want == 1 && (!bytes.Equal(p[0].Body, body) || p[0].ServerTime.UnixMilli() != h.clock.Now().UnixMilli()) {
			t.Errorf("queue of %s device %d = %q at %v, want %q at the server time", d.c.number, d.dev, p[0].Body, p[0].ServerTime, body)
		}
	}
	// Each envelope went to the device it names, with its own id.
	for _, rc := range req {
		for _, m := range rc.Messages {
			c := map[uuid.UUID]*client{g.alice.account: g.alice, g.bob.account: g.bob, g.carol.account: g.carol, g.dave.account: g.dave}[rc.Account]
			if p := h.pending(c, m.DeviceID); len(p) != 1 || p[0].ID != m.ID {
				t.Errorf("queue of %s device %d = %v, want the envelope %v", c.number, m.DeviceID, p, m.ID)
			}
		}
	}

	// Only one's own account, with no other device: nothing to do, and fine.
	h.want(h.multiSend(g.carol, recipient(g.carol.account)), 200, "", "multi-send to own account with no other device")
	if n := len(h.pending(g.carol, 1)); n != 1 {
		t.Errorf("carol's queue = %d, want 1 (unchanged)", n)
	}
}

func TestMultiSendIsIdempotentPerEnvelopeID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	g := newMultiGroup(h, 8110)
	req := g.right([]byte("once"))
	for i := range 2 {
		h.want(h.multiSend(g.alice, req...), 200, "", fmt.Sprintf("multi-send %d", i+1))
	}
	if n := h.queued(g); n != 6 {
		t.Errorf("queued after a resend = %d, want 6 (one per device but the sender's)", n)
	}
	// The same envelope resent 1:1 (a client falling back) is a no-op too.
	h.want(h.send(g.alice, g.carol.account, req[1].Messages...), 200, "", "1:1 resend of carol's envelope")
	if n := h.queued(g); n != 6 {
		t.Errorf("queued after a 1:1 resend of the same id = %d, want 6", n)
	}
}

func TestMultiSendRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	g := newMultiGroup(h, 8120)
	body := []byte("ciphertext")
	stranger := uuid.New()
	h.secret(stranger.String())
	with := func(edit func(r []api.Recipient) []api.Recipient) []api.Recipient {
		return edit(g.right(body))
	}
	tests := []struct {
		name     string
		recips   []api.Recipient
		status   int
		code     string
		accounts []api.AccountMismatch
	}{
		{"no recipients", nil, 400, api.CodeBadRequest, nil},
		{"nil account", with(func(r []api.Recipient) []api.Recipient {
			return append(r, recipient(uuid.Nil, envelope(1, 1, body)))
		}), 400, api.CodeBadRequest, nil},
		{"account twice", with(func(r []api.Recipient) []api.Recipient {
			return append(r, recipient(g.carol.account, envelope(1, g.carol.regID, body)))
		}), 400, api.CodeBadRequest, nil},
		{"device twice", with(func(r []api.Recipient) []api.Recipient {
			r[0].Messages = append(r[0].Messages, envelope(g.bob2, 702, body))
			return r
		}), 400, api.CodeBadRequest, nil},
		{"empty body", with(func(r []api.Recipient) []api.Recipient {
			r[3].Messages[0].Body = nil
			return r
		}), 400, api.CodeBadRequest, nil},
		{"missing id", with(func(r []api.Recipient) []api.Recipient {
			r[1].Messages[0].ID = uuid.Nil
			return r
		}), 400, api.CodeBadRequest, nil},
		{"body over 96 KiB", with(func(r []api.Recipient) []api.Recipient {
			r[2].Messages[0].Body = make([]byte, api.MaxEnvelopeBody+1)
			return r
		}), 413, api.CodeTooLarge, nil},
		{"unknown account", with(func(r []api.Recipient) []api.Recipient {
			return append(r, recipient(stranger, envelope(1, 1, body)))
		}), 409, api.CodeMismatchedDevices, []api.AccountMismatch{{Account: stranger, Unknown: true}}},
		{"every kind of mismatch, each account listed", with(func(r []api.Recipient) []api.Recipient {
			r[0].Messages = r[0].Messages[:2]                           // bob: bob3 missing
			r[1].Messages = append(r[1].Messages, envelope(5, 1, body)) // carol: device 5 extra
			r[3].Messages[0].RegistrationID++                           // dave: stale
			return append(r, recipient(stranger, envelope(1, 1, body)))
		}), 409, api.CodeMismatchedDevices, []api.AccountMismatch{
			{Account: g.bob.account, MissingDevices: []uint32{g.bob3}},
			{Account: g.carol.account, ExtraDevices: []uint32{5}},
			{Account: g.dave.account, StaleDevices: []uint32{1}},
			{Account: stranger, Unknown: true},
		}},
		{"only stale", with(func(r []api.Recipient) []api.Recipient {
			r[0].Messages[1].RegistrationID = 1
			r[3].Messages[0].RegistrationID++
			return r
		}), 410, api.CodeStaleDevices, []api.AccountMismatch{
			{Account: g.bob.account, StaleDevices: []uint32{g.bob2}},
			{Account: g.dave.account, StaleDevices: []uint32{1}},
		}},
		{"the sending device itself", with(func(r []api.Recipient) []api.Recipient {
			r[2].Messages = append(r[2].Messages, envelope(1, g.alice.regID, body))
			return r
		}), 409, api.CodeMismatchedDevices, []api.AccountMismatch{{Account: g.alice.account, ExtraDevices: []uint32{1}}}},
		{"own account left out", with(func(r []api.Recipient) []api.Recipient {
			return append(r[:2], r[3])
		}), 200, "", nil},
		{"an account with no envelopes", with(func(r []api.Recipient) []api.Recipient {
			r[1].Messages = nil
			return r
		}), 409, api.CodeMismatchedDevices, []api.AccountMismatch{{Account: g.carol.account, MissingDevices: []uint32{1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.multiSend(g.alice, tt.recips...)
			h.want(r, tt.status, tt.code, "multi-send")
			if got := r.apiError().Accounts; !reflect.DeepEqual(got, tt.accounts) {
				t.Errorf("multi-send accounts = %+v, want %+v", got, tt.accounts)
			}
			// All or nothing: a refusal queues nothing for anyone, the right accounts
			// included. (Leaving one's own account out is not a refusal: the server
			// cannot know the client meant to include it.)
			want := 0
			if tt.status == 200 {
				want = 5
			}
			if n := h.queued(g); n != want {
				t.Errorf("queued after %s = %d, want %d", tt.name, n, want)
			}
			for _, d := range g.all {
				envs := h.pending(d.c, d.dev)
				ids := make([]uuid.UUID, len(envs))
				for i, e := range envs {
					ids[i] = e.ID
				}
				if err := h.st.Ack(context.Background(), d.c.account, d.dev, ids); err != nil {
					t.Fatalf("Ack() = %v", err)
				}
			}
		})
	}
	h.want(h.multiSend(nil, g.right(body)...), 401, api.CodeUnauthorized, "multi-send without credentials")
}

// storePassword is the password of device 1 of storeAccounts' accounts.
const storePassword = "store account password"

var storePasswordHash = sha256.Sum256([]byte(storePassword))

// storeAccounts creates n accounts straight in the store, concurrently (they share group
// commits), each with devices 1..perAccount: device 1 with registration id 1234, the
// others with 1000. Numbers are +1416 and base+i in seven digits.
func (h *harness) storeAccounts(base, n, perAccount int) []uuid.UUID {
	h.t.Helper()
	ids := make([]uuid.UUID, n)
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = ecKey(h.t)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 256)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			number := fmt.Sprintf("+1416%07d", base+i)
			h.secret(number)
			a, _, err := h.st.Register(context.Background(), number, keys[i],
				store.Device{ID: 1, RegistrationID: 1234, CredentialHash: storePasswordHash[:]})
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
			ids[i] = a.ID
		})
	}
	wg.Wait()
	if first != nil {
		h.t.Fatalf("Register() = %v", first)
	}
	for _, a := range ids {
		h.secret(a.String())
	}
	if perAccount > 1 {
		h.addDevices(ids, perAccount)
	}
	return ids
}

// addDevices gives each account n-1 more devices, with registration id 1000, in
// concurrent store writes (they share group commits).
func (h *harness) addDevices(accounts []uuid.UUID, n int) {
	h.t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 256)
	for _, a := range accounts {
		for range n - 1 {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				_, err := h.st.AddDevice(context.Background(), a, store.Device{RegistrationID: 1000, CredentialHash: make([]byte, 32)})
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if first != nil {
		h.t.Fatalf("AddDevice() = %v", first)
	}
}

// fanOut is the request for every device of accounts (each with devices 1..n, device 1
// with registration id first, the others with 1000), body shared.
func fanOut(accounts []uuid.UUID, n int, first uint32, body []byte) []api.Recipient {
	recips := make([]api.Recipient, len(accounts))
	for i, a := range accounts {
		recips[i].Account = a
		recips[i].Messages = make([]api.OutgoingEnvelope, n)
		for d := 1; d <= n; d++ {
			reg := uint32(1000)
			if d == 1 {
				reg = first
			}
			recips[i].Messages[d-1] = envelope(uint32(d), reg, body)
		}
	}
	return recips
}

func TestMultiSendEnvelopeLimit(t *testing.T) {
	t.Parallel()
	// An account has at most 127 devices: 100 accounts of 100.
	const accounts, perAccount = 100, api.MaxMultiRecipientDevices / 100
	h := newHarness(t, nil)
	sender := h.register("+14155558130", 0)
	ids := h.storeAccounts(0, accounts, perAccount)
	body := []byte("group message")
	recips := fanOut(ids, perAccount, 1234, body)

	over := append([]api.Recipient(nil), recips...)
	extra := h.register("+14155558149", 0)
	over = append(over, recipient(extra.account, envelope(1, extra.regID, body)))
	h.want(h.multiSend(sender, over...), 413, api.CodeTooLarge, "multi-send of 10,001 envelopes")
	if n := len(h.pending(extra, 1)); n != 0 {
		t.Errorf("queued after a refused multi-send = %d, want 0", n)
	}

	h.want(h.multiSend(sender, recips...), 200, "", "multi-send of 10,000 envelopes")
	total := 0
	for _, a := range ids {
		for d := 1; d <= perAccount; d += 33 { // a sample of each account's devices
			envs, err := h.st.Pending(context.Background(), a, uint32(d), 0, 10)
			if err != nil {
				t.Fatalf("Pending() = %v", err)
			}
			if len(envs) != 1 {
				t.Errorf("queue of device %d = %d envelopes, want 1", d, len(envs))
			}
			total += len(envs)
		}
	}
	if total == 0 {
		t.Errorf("no envelope found in the sampled queues")
	}
}

var aaaa = [4096]byte(bytes.Repeat([]byte("A"), 4096))

// countingReader is an endless request body that counts what the server read of it.
type countingReader struct {
	mu     sync.Mutex
	prefix []byte
	n      int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	if c.n < int64(len(c.prefix)) {
		n = copy(p, c.prefix[c.n:])
	}
	for n < len(p) {
		n += copy(p[n:], aaaa[:]) // inside the body string: valid base64 to the end
	}
	c.n += int64(n)
	return n, nil
}

func (c *countingReader) read() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func TestMultiSendByteLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	alice := h.register("+14155558150", 0)
	bob := h.register("+14155558151", 0)
	prefix := fmt.Sprintf(`{"recipients":[{"account":%q,"messages":[{"device_id":1,"registration_id":%d,"id":%q,"body":"`,
		bob.account, bob.regID, uuid.New())
	tests := []struct {
		name     string
		length   int64 // Content-Length; -1 for chunked
		maxRead  int64
		testLong bool
	}{
		// A declared length over the limit is refused before the body is read.
		{"declared length", api.MaxMultiSendBytes + 1, 0, false},
		// An undeclared one is read only up to the limit (and a read buffer).
		{"chunked", -1, api.MaxMultiSendBytes + 64<<10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.testLong && testing.Short() {
				t.Skip("reads 32 MiB")
			}
			body := &countingReader{prefix: []byte(prefix)}
			req := httptest.NewRequest("PUT", "/v1/messages", io.NopCloser(body))
			req.ContentLength = tt.length
			req.SetBasicAuth(alice.user(), alice.password)
			rec := httptest.NewRecorder()
			h.srv.Handler().ServeHTTP(rec, req)
			r := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
			h.want(r, http.StatusRequestEntityTooLarge, api.CodeTooLarge, "multi-send over the byte limit")
			if n := body.read(); n > tt.maxRead {
				t.Errorf("server read %d bytes of an oversized multi-send, want at most %d", n, tt.maxRead)
			}
			if !strings.Contains(r.apiError().Message, fmt.Sprint(api.MaxMultiSendBytes)) {
				t.Errorf("message = %q, want the limit named", r.apiError().Message)
			}
		})
	}
	if n := len(h.pending(bob, 1)); n != 0 {
		t.Errorf("queued after refused multi-sends = %d, want 0", n)
	}
}

// strictMulti decodes p as readMultiSend's fallback does.
func strictMulti(p []byte) (api.MultiSendRequest, bool) {
	var req api.MultiSendRequest
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, false
	}
	_, err := dec.Token()
	return req, err == io.EOF
}

func TestParseMultiSend(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	canonical := func(recips ...api.Recipient) string {
		p, _ := json.Marshal(api.MultiSendRequest{Recipients: recips})
		return string(p)
	}
	one := canonical(recipient(a, envelope(1, 1234, []byte("opaque"))))
	tests := []struct {
		in   string
		fast bool
	}{
		{one, true},
		{canonical(recipient(a, envelope(1, 1, []byte{0}), envelope(4294967295, 16380, make([]byte, 1000))), recipient(b, envelope(2, 2, []byte("yy")))), true},
		{canonical(recipient(a, envelope(1, 1, []byte("x"))), recipient(b, envelope(1, 1, []byte("x"))), recipient(a, envelope(1, 1, []byte("x")))), true},
		{strings.Replace(one, `"body":"b3BhcXVl"`, `"body":""`, 1), true},
		{canonical(), false},             // no recipients: null
		{canonical(recipient(a)), false}, // no envelopes: null
		{`{"recipients":[]}`, false},     // no recipients: empty
		{canonical(api.Recipient{Account: a, Messages: []api.OutgoingEnvelope{}}), false},
		{strings.Replace(one, `"device_id":1`, `"device_id":4294967296`, 1), false},
		{strings.Replace(one, `"device_id":1`, `"device_id":01`, 1), false},
		{strings.Replace(one, `"device_id":1`, `"device_id":-1`, 1), false},
		{strings.Replace(one, `"body":"b3BhcXVl"`, `"body":"b3BhcXVl\n"`, 1), false},
		{strings.Replace(one, `"body":"b3BhcXVl"`, `"body":"b3BhcXV"`, 1), false},
		{strings.Replace(one, `"body":"b3BhcXVl"`, `"body":null`, 1), false},
		{strings.Replace(one, `"account":"`+a.String(), `"account":"`+b.String()[:35]+"g", 1), false},
		{strings.Replace(one, `{"recipients":`, `{"recipients": `, 1), false},
		{strings.Replace(one, `]}]}`, `],"x":1}]}`, 1), false},
		{one + " ", false},
		{one + "{}", false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			got, ok := parseMultiSend([]byte(tt.in))
			if ok != tt.fast {
				t.Fatalf("parseMultiSend(%.100s) ok = %v, want %v", tt.in, ok, tt.fast)
			}
			if !ok {
				return
			}
			want, valid := strictMulti([]byte(tt.in))
			if !valid || !reflect.DeepEqual(got, want) {
				t.Errorf("parseMultiSend(%.100s) = %+v, want the decoder's %+v (valid %v)", tt.in, got, want, valid)
			}
		})
	}
}

// FuzzParseMultiSend: whatever the fast path accepts, the strict decoder accepts as the
// same request.
func FuzzParseMultiSend(f *testing.F) {
	p, _ := json.Marshal(api.MultiSendRequest{Recipients: []api.Recipient{
		recipient(uuid.New(), envelope(1, 2, []byte("opaque ciphertext")), envelope(3, 4, []byte{0xff})),
		recipient(uuid.New(), envelope(1, 5, []byte("x"))),
	}})
	f.Add(p)
	f.Fuzz(func(t *testing.T, p []byte) {
		got, ok := parseMultiSend(p)
		if !ok {
			return
		}
		want, valid := strictMulti(p)
		if !valid || !reflect.DeepEqual(got, want) {
			t.Errorf("parseMultiSend(%q) = %+v, want the decoder's %+v (valid %v)", p, got, want, valid)
		}
	})
}

// A device removed after its list was cached is refused by the store's enqueue (or, once
// the cache has expired, by the device check): either way 409, and nothing is queued for
// anyone, the other accounts included.
func TestMultiSendDeviceGoneAfterCheck(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	g := newMultiGroup(h, 8160)
	body := []byte("ciphertext")
	h.want(h.multiSend(g.alice, g.right(body)...), 200, "", "multi-send that fills the device cache")
	for _, d := range g.all {
		envs := h.pending(d.c, d.dev)
		ids := make([]uuid.UUID, len(envs))
		for i, e := range envs {
			ids[i] = e.ID
		}
		if err := h.st.Ack(context.Background(), d.c.account, d.dev, ids); err != nil {
			t.Fatalf("Ack() = %v", err)
		}
	}
	if err := h.st.RemoveDevice(context.Background(), g.bob.account, g.bob3); err != nil {
		t.Fatalf("RemoveDevice() = %v", err)
	}
	h.want(h.multiSend(g.alice, g.right(body)...), 409, api.CodeMismatchedDevices, "multi-send to a removed device")
	if n := h.queued(g); n != 0 {
		t.Errorf("queued after a multi-send to a removed device = %d, want 0", n)
	}
	// The refusal forgot the cached lists: the retry sees bob's two devices.
	r := h.multiSend(g.alice, g.right(body)...)
	h.want(r, 409, api.CodeMismatchedDevices, "the same multi-send again")
	want := []api.AccountMismatch{{Account: g.bob.account, ExtraDevices: []uint32{g.bob3}}}
	if got := r.apiError().Accounts; !reflect.DeepEqual(got, want) {
		t.Errorf("retry accounts = %+v, want %+v", got, want)
	}
}

// TestMultiSendTimeToTheSecond checks that envelopes carry the server time to the whole
// second: two unrelated multi-sends and a 1:1 send in one second are stamped alike, so the
// time does not tell a copy of the queue which envelopes were one fan-out; the next second
// is stamped as such.
func TestMultiSendTimeToTheSecond(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	g := newMultiGroup(h, 8900)
	second := h.clock.Now().Add(time.Second) // a whole second: the harness clock is at one
	h.clock.Advance(time.Second + 250*time.Millisecond)
	r := h.multiSend(g.alice, g.right([]byte("first"))...)
	h.want(r, 200, "", "first multi-send")
	if got := decodeBody[api.SendResponse](t, r).ServerTime; got != second.UnixMilli() {
		t.Errorf("first multi-send: server_time = %d, want %d", got, second.UnixMilli())
	}
	h.clock.Advance(500 * time.Millisecond)
	r = h.multiSend(g.carol,
		recipient(g.dave.account, envelope(1, g.dave.regID, []byte("second"))),
		recipient(g.bob.account, envelope(1, g.bob.regID, []byte("second")), envelope(g.bob2, 702, []byte("second")), envelope(g.bob3, 703, []byte("second"))))
	h.want(r, 200, "", "second multi-send")
	h.clock.Advance(100 * time.Millisecond)
	r = h.send(g.dave, g.carol.account, envelope(1, g.carol.regID, []byte("one to one")))
	h.want(r, 200, "", "1:1 send")
	if got := decodeBody[api.SendResponse](t, r).ServerTime; got != second.UnixMilli() {
		t.Errorf("1:1 send: server_time = %d, want %d", got, second.UnixMilli())
	}
	h.clock.Advance(400 * time.Millisecond) // into the next second
	next := second.Add(time.Second)
	r = h.multiSend(g.dave, recipient(g.carol.account, envelope(1, g.carol.regID, []byte("third"))))
	h.want(r, 200, "", "third multi-send")
	if got := decodeBody[api.SendResponse](t, r).ServerTime; got != next.UnixMilli() {
		t.Errorf("third multi-send: server_time = %d, want %d", got, next.UnixMilli())
	}

	n := 0
	for _, d := range g.all {
		for _, e := range h.pending(d.c, d.dev) {
			n++
			want := second
			if string(e.Body) == "third" {
				want = next
			}
			if !e.ServerTime.Equal(want) {
				t.Errorf("envelope %q for %s device %d at %v, want %v", e.Body, d.c.number, d.dev, e.ServerTime, want)
			}
		}
	}
	if want := 6 + 4 + 1 + 1; n != want {
		t.Errorf("%d envelopes queued, want %d", n, want)
	}
}

// TestMultiSendSlots checks the bound on multi-sends at once: with every slot taken a
// request waits and is then refused with 503 and Retry-After, queuing nothing; a slot
// freed lets a waiting request through; every request gives its slot back, refused or not.
func TestMultiSendSlots(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	g := newMultiGroup(h, 8950)
	slots := &h.srv.multiSlots
	var held []func()
	for range maxConcurrentMultiSends {
		release, err := slots.acquire(context.Background())
		if err != nil {
			t.Fatalf("acquire() with free slots = %v", err)
		}
		held = append(held, release)
	}

	slots.wait.Store(int64(20 * time.Millisecond))
	r := h.multiSend(g.alice, g.right([]byte("refused"))...)
	h.want(r, http.StatusServiceUnavailable, api.CodeBusy, "multi-send with every slot taken")
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want %q", got, "1")
	}
	if n := h.queued(g); n != 0 {
		t.Errorf("a refused multi-send queued %d envelopes, want 0", n)
	}

	// A request waiting for a slot goes through once one is freed.
	slots.wait.Store(int64(time.Minute))
	done := make(chan response, 1)
	go func() { done <- h.multiSend(g.alice, g.right([]byte("waited"))...) }()
	held[0]()
	h.want(<-done, 200, "", "multi-send after a slot was freed")
	if n, want := h.queued(g), 6; n != want {
		t.Errorf("queued %d envelopes, want %d", n, want)
	}
	for _, release := range held[1:] {
		release()
	}

	// Refused and accepted requests alike give their slot back.
	h.want(h.multiSend(g.alice), 400, "", "empty multi-send")
	h.want(h.multiSend(g.alice, recipient(g.bob.account, envelope(1, g.bob.regID, []byte("x")))), 409, "", "incomplete multi-send")
	h.want(h.multiSend(g.alice, g.right([]byte("again"))...), 200, "", "multi-send")
	if n := len(slots.ch()); n != 0 {
		t.Errorf("%d slots still taken after every request ended, want 0", n)
	}
}
