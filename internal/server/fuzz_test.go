package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/gobwas/ws"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/internal/phone"
	"github.com/bastionchat/bastion/internal/store"
)

// ackOnly is a store that accepts acks; anything else would be a bug in the read loop.
type ackOnly struct{ store.Store }

func (ackOnly) Ack(context.Context, uuid.UUID, uint32, []uuid.UUID) error { return nil }

func clientFrame(op ws.OpCode, fin bool, p []byte) []byte {
	var b bytes.Buffer
	f := ws.NewFrame(op, fin, p)
	f = ws.MaskFrame(f)
	ws.WriteFrame(&b, f)
	return b.Bytes()
}

// FuzzReadLoop feeds arbitrary client bytes to a connection's read loop: it must end with
// a valid close code (or none, when the stream just ends) and never panic.
func FuzzReadLoop(f *testing.F) {
	ack := []byte(`{"type":"ack","ids":["0b6c5b0e-5d2a-4c38-9f43-6b1f1c7d2a11"]}`)
	f.Add(clientFrame(ws.OpText, true, ack))
	f.Add(append(clientFrame(ws.OpText, false, ack[:10]), clientFrame(ws.OpContinuation, true, ack[10:])...))
	f.Add(clientFrame(ws.OpPing, true, []byte("hi")))
	f.Add(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))
	f.Add(clientFrame(ws.OpText, true, []byte("{")))
	f.Add(clientFrame(ws.OpBinary, true, bytes.Repeat([]byte("x"), 70000)))
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0xa0, 0, 0, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := testConfig()
		s := &Server{cfg: cfg, store: ackOnly{}, log: slog.New(slog.DiscardHandler), metrics: newMetrics(), ws: map[*wsConn]struct{}{}}
		srv, cli := net.Pipe()
		defer srv.Close()
		go io.Copy(io.Discard, cli)
		go func() { cli.Write(data); cli.Close() }()
		c := &wsConn{s: s, conn: srv, r: srv, ctx: context.Background(), closed: true} // closed: no drain
		code, _ := c.readLoop()
		if code != 0 && !code.IsApplicationSpec() && !code.IsPrivateSpec() && (!code.IsProtocolDefined() || code.IsProtocolReserved()) {
			t.Fatalf("readLoop() close code = %d, not one that may be sent", code)
		}
	})
}

// FuzzAuthenticate: any Authorization header is refused cleanly by a store that knows
// no device.
func FuzzAuthenticate(f *testing.F) {
	f.Add("Basic NWYwYzZiMGUtNWQyYS00YzM4LTlmNDMtNmIxZjFjN2QyYTExLjE6c2VjcmV0")
	f.Add("Basic Og==")
	f.Add("Bearer x")
	f.Fuzz(func(t *testing.T, header string) {
		s := &Server{store: noDevices{}}
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", header)
		if _, err := s.authenticate(r); err != errUnauthorized {
			t.Fatalf("authenticate(%q) = %v, want unauthorized", header, err)
		}
	})
}

type noDevices struct{ store.Store }

func (noDevices) Device(context.Context, uuid.UUID, uint32) (store.Device, error) {
	return store.Device{}, store.ErrNotFound
}

func FuzzNormaliseNumber(f *testing.F) {
	for _, s := range []string{"+14155550100", "+1 (415) 555-0100", "+442079460958", "+", "++1", "+1 415 555 0100 ext. 12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := phone.Normalise(s)
		if err != nil {
			return
		}
		// E.164 is a fixed point.
		if again, err := phone.Normalise(n); err != nil || again != n {
			t.Fatalf("phone.Normalise(%q) = %q, then %q, %v; want a fixed point", s, n, again, err)
		}
	})
}
