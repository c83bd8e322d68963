package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/legal"
	"github.com/bastionchat/bastion/internal/server"
	"github.com/bastionchat/bastion/internal/store/sqlite"
)

// Only a notice signed by the server's key, under the notice context, is shown; anything
// a user could queue that looks like one is dropped.
func TestOperatorNotices(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "bastion.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.DataDir = dir
	sms := &smsCodes{codes: map[string]string{}}
	srv, err := server.New(cfg, server.Options{Store: st, SMS: sms})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := srv.StartLegal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close(); stop(); st.Close() })
	h := &harness{t: t, url: ts.URL, sms: sms}
	bob := h.register("+14155550181", nil)

	key, err := legal.LoadOrCreateKey(dir) // the key the running server signs with
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	notice := []byte(`{"type":"legal_notice","from":"operator","issuing_authority":"Juge d'instruction",` +
		`"court":"Tribunal de Lyon","jurisdiction":"FR","legal_basis":"Art. 99","case_reference":"JI-7",` +
		`"categories_requested":["message_content","phone_number"],"categories_disclosed":["phone_number"]}`)
	body := func(notice, sig []byte) []byte {
		b, _ := json.Marshal(api.ServerNotice{Notice: notice, Signature: sig})
		return b
	}
	withContext := append([]byte(api.NoticeContext), notice...)
	cases := []struct {
		name string
		body []byte
		want bool
	}{
		{"signed by the server", body(notice, key.Sign(withContext)), true},
		{"unsigned", body(notice, nil), false},
		{"signed by another key", body(notice, ed25519.Sign(otherKey, withContext)), false},
		{"signed without the context", body(notice, key.Sign(notice)), false},
		{"plain JSON a user could send", notice, false},
		{"altered after signing", body([]byte(strings.Replace(string(notice), "Art. 99", "Art. 98", 1)), key.Sign(withContext)), false},
	}
	root, err := bob.trustRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		env := api.Envelope{ID: uuid.New(), ServerTime: time.Now().UnixMilli(), Body: c.body}
		stored, err := bob.handleEnvelope(ctx, root, env)
		if err != nil || stored != c.want {
			t.Errorf("handleEnvelope(%s) = %v, %v; want %v, nil", c.name, stored, err, c.want)
		}
	}
	msgs, err := bob.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("Receive() = %d messages, want the one signed notice", len(msgs))
	}
	m := msgs[0]
	if !m.FromOperator || m.From != uuid.Nil || !strings.Contains(m.Text, "Juge d'instruction") ||
		!strings.Contains(m.Text, "Disclosed: phone_number") {
		t.Errorf("notice message = %+v, want from the operator with the order's details", m)
	}
}
