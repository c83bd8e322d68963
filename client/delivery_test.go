package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
)

// sendRecorder wraps the server: it records every send to a chosen account, can answer
// the first one with a canned error instead of passing it on, and can replay a recorded
// send later, byte for byte, as a client retrying after a lost answer would.
type sendRecorder struct {
	mu     sync.Mutex
	target string // account id whose sends are recorded
	fail   []byte // JSON api.Error body for the first send, 409; nil passes it on
	// lose: the next send is passed on, but its answer is lost (the connection drops).
	lose  bool
	sends []recordedSend
	next  http.Handler
}

type recordedSend struct {
	auth string
	body []byte
	ids  []uuid.UUID
}

func (s *sendRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	target := s.target
	s.mu.Unlock()
	if r.Method != http.MethodPut || target == "" || r.URL.Path != "/v1/messages/"+target {
		s.next.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req api.SendRequest
	json.Unmarshal(body, &req)
	rec := recordedSend{auth: r.Header.Get("Authorization"), body: body}
	for _, m := range req.Messages {
		rec.ids = append(rec.ids, m.ID)
	}
	s.mu.Lock()
	s.sends = append(s.sends, rec)
	fail, lose := s.fail, s.lose
	s.fail, s.lose = nil, false
	s.mu.Unlock()
	if fail != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		w.Write(fail)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if lose {
		s.next.ServeHTTP(httptest.NewRecorder(), r)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	s.next.ServeHTTP(w, r)
}

// newRecordedServer starts a test server behind a sendRecorder; it is closed when t ends.
func newRecordedServer(t *testing.T) (*testServer, *sendRecorder) {
	t.Helper()
	rec := &sendRecorder{}
	s, err := newServerWith(func(h http.Handler) http.Handler { rec.next = h; return rec })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, rec
}

func (s *sendRecorder) replay(t *testing.T, url string, i int) {
	t.Helper()
	s.mu.Lock()
	rec := s.sends[i]
	s.mu.Unlock()
	req, _ := http.NewRequest(http.MethodPut, url+"/v1/messages/"+s.target, bytes.NewReader(rec.body))
	req.Header.Set("Authorization", rec.auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replayed send: HTTP %d, want 200", resp.StatusCode)
	}
}

func TestSendRetryKeepsEnvelopeIDs(t *testing.T) {
	s, rec := newRecordedServer(t)
	ctx := context.Background()
	alice, _ := register(t, s, "+14155550141", nil)
	bob, _ := register(t, s, "+14155550142", nil)
	bobAcct, _ := bob.Whoami(ctx)

	// The server says the device list is wrong (an extra device 9): Alice drops it and
	// retries with the same envelope id.
	rec.mu.Lock()
	rec.target = bobAcct.AccountID.String()
	rec.fail = []byte(`{"code":"mismatched_devices","message":"x","extra_devices":[9]}`)
	rec.mu.Unlock()
	if _, err := alice.Send(ctx, "+14155550142", "once only"); err != nil {
		t.Fatalf("Send() = %v", err)
	}
	rec.mu.Lock()
	sends := append([]recordedSend(nil), rec.sends...)
	rec.mu.Unlock()
	if len(sends) != 2 || len(sends[0].ids) != 1 || len(sends[1].ids) != 1 || sends[0].ids[0] != sends[1].ids[0] {
		t.Fatalf("sends = %+v, want two attempts with the same single envelope id", sends)
	}
	if got, want := receiveTexts(t, bob), []string{"once only"}; !equal(got, want) {
		t.Fatalf("bob.Receive() = %q, want %q", got, want)
	}

	// The same send arrives again after Bob acknowledged it (a retry whose first answer
	// was lost): the server queues it anew, and Bob drops it by its id.
	rec.replay(t, s.URL, 1)
	if got := receiveTexts(t, bob); len(got) != 0 {
		t.Errorf("bob.Receive() after a resend = %q, want nothing", got)
	}
	// The conversation goes on.
	if _, err := alice.Send(ctx, "+14155550142", "next"); err != nil {
		t.Fatal(err)
	}
	if got, want := receiveTexts(t, bob), []string{"next"}; !equal(got, want) {
		t.Errorf("bob.Receive() = %q, want %q", got, want)
	}
}

// A send whose answer is lost is repeated with the same bytes; the server queues it once.
func TestSendRepeatedAfterLostAnswer(t *testing.T) {
	s, rec := newRecordedServer(t)
	ctx := context.Background()
	alice, _ := register(t, s, "+14155550191", nil)
	bob, _ := register(t, s, "+14155550192", nil)
	bobAcct, _ := bob.Whoami(ctx)
	rec.mu.Lock()
	rec.target, rec.lose = bobAcct.AccountID.String(), true
	rec.mu.Unlock()
	if _, err := alice.Send(ctx, "+14155550192", "said once"); err != nil {
		t.Fatalf("Send() with a lost answer = %v, want success on the repeat", err)
	}
	rec.mu.Lock()
	sends := append([]recordedSend(nil), rec.sends...)
	rec.mu.Unlock()
	if len(sends) != 2 || !bytes.Equal(sends[0].body, sends[1].body) {
		t.Fatalf("recorded %d sends, want 2 with the same bytes", len(sends))
	}
	if got, want := receiveTexts(t, bob), []string{"said once"}; !equal(got, want) {
		t.Errorf("bob.Receive() = %q, want %q", got, want)
	}
}

// TestServerSeesNoSender checks what sealed sender promises: the envelope body the
// server stores names neither the sender's account nor carries its identity key.
func TestServerSeesNoSender(t *testing.T) {
	s, rec := newRecordedServer(t)
	ctx := context.Background()
	alice, _ := register(t, s, "+14155550151", nil)
	bob, _ := register(t, s, "+14155550152", nil)
	aliceAcct, _ := alice.Whoami(ctx)
	bobAcct, _ := bob.Whoami(ctx)
	rec.mu.Lock()
	rec.target = bobAcct.AccountID.String()
	rec.mu.Unlock()
	for _, text := range []string{"first, a PreKeySignalMessage", "second"} {
		if _, err := alice.Send(ctx, "+14155550152", text); err != nil {
			t.Fatal(err)
		}
		receiveTexts(t, bob)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.sends) != 2 {
		t.Fatalf("recorded %d sends, want 2", len(rec.sends))
	}
	for i, snd := range rec.sends {
		var req api.SendRequest
		if err := json.Unmarshal(snd.body, &req); err != nil {
			t.Fatal(err)
		}
		for _, m := range req.Messages {
			for what, needle := range map[string][]byte{
				"account id bytes":  aliceAcct.AccountID[:],
				"account id string": []byte(aliceAcct.AccountID.String()),
				"identity key":      aliceAcct.IdentityKey[1:],
				"phone number":      []byte(strings.TrimPrefix(aliceAcct.Number, "+")),
			} {
				if bytes.Contains(m.Body, needle) {
					t.Errorf("send %d: envelope body holds the sender's %s", i, what)
				}
			}
			if m.Body[0] != 0x11 {
				t.Errorf("send %d: body starts with %#x, want sealed sender v1 (0x11)", i, m.Body[0])
			}
		}
	}
}
