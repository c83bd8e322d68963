package reliability

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
)

// wantStatus checks that err is an API error with status and code.
func wantStatus(t *testing.T, what string, err error, status int, code string) *StatusError {
	t.Helper()
	var se *StatusError
	if !errors.As(err, &se) || se.Status != status || se.Body.Code != code {
		t.Fatalf("%s = %v, want %d %s", what, err, status, code)
	}
	return se
}

// TestAbuse runs the abuse cases of issue 3 against the real binary with its default
// limits (the unit tests in internal/server cover them in process, with a fake clock).
func TestAbuse(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	t.Run("code guessing stops at the cap", func(t *testing.T) {
		const number = "+14155554001"
		sid, err := s.RequestCode(ctx, number)
		if err != nil {
			t.Fatal(err)
		}
		code, err := s.Code(ctx, number)
		if err != nil {
			t.Fatal(err)
		}
		wrong := fmt.Sprintf("%06d", (mustAtoi(code)+1)%1000000)
		put := func(c string) error {
			return s.Do(ctx, "PUT", "/v1/verification/"+sid+"/code", api.SubmitCodeRequest{Code: c}, "", "", nil)
		}
		for left := 4; left >= 1; left-- { // --code-attempts defaults to 5
			se := wantStatus(t, "wrong code", put(wrong), 403, api.CodeIncorrectCode)
			if se.Body.AttemptsLeft == nil || *se.Body.AttemptsLeft != left {
				t.Errorf("wrong code: attempts_left = %v, want %d", se.Body.AttemptsLeft, left)
			}
		}
		wantStatus(t, "fifth wrong code", put(wrong), 429, api.CodeTooManyAttempts)
		if se := wantStatus(t, "the right code after the cap", put(code), 429, api.CodeTooManyAttempts); se.RetryAfter == "" {
			t.Errorf("429 without Retry-After")
		}
	})

	t.Run("prekey draining is throttled", func(t *testing.T) {
		target := register(t, s, "+14155554002", KeyOptions{PreKeys: 20, KyberPreKeys: 20})
		a := register(t, s, "+14155564003", KeyOptions{})
		b := register(t, s, "+14155574004", KeyOptions{})
		for i := range 10 { // --rate-bundle-pair defaults to 10 an hour
			if _, err := s.Bundle(ctx, a, target); err != nil {
				t.Fatalf("bundle %d = %v", i+1, err)
			}
		}
		_, err := s.Bundle(ctx, a, target)
		if se := wantStatus(t, "bundle 11", err, 429, api.CodeRateLimited); se.RetryAfter == "" {
			t.Errorf("429 without Retry-After")
		}
		// The limit is per pair: another requester still gets a bundle with one-time keys.
		bd, err := s.Bundle(ctx, b, target)
		if err != nil || bd.Devices[0].PreKey == nil {
			t.Fatalf("another requester's bundle = %+v, %v, want one with a one-time key", bd, err)
		}
	})

	t.Run("a 10 MiB frame closes the connection", func(t *testing.T) {
		d := register(t, s, "+14155584005", KeyOptions{})
		c, err := s.Dial(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if f, err := c.Next(time.Now().Add(10 * time.Second)); err != nil || f.Type != api.FrameQueueEmpty {
			t.Fatalf("first frame = %q, %v", f.Type, err)
		}
		var mask [4]byte
		rand.Read(mask[:])
		if err := ws.WriteHeader(c.Raw(), ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask, Length: 10 << 20}); err != nil {
			t.Fatal(err)
		}
		// No payload: the server refuses on the header, and bytes it never reads would turn
		// its close into a reset that can swallow the close frame.
		// Read raw frames up to the server's close frame (its reply would hit a closed pipe).
		c.Raw().SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			f, err := ws.ReadFrame(c.Raw())
			if err != nil {
				t.Fatalf("after a 10 MiB frame header: %v, want a close frame", err)
			}
			if f.Header.OpCode == ws.OpClose {
				if code, _ := ws.ParseCloseFrameData(f.Payload); code != ws.StatusMessageTooBig {
					t.Fatalf("close code = %d, want 1009", code)
				}
				break
			}
		}
		if err := s.Do(ctx, "GET", "/healthz", nil, "", "", nil); err != nil || !s.Alive() {
			t.Fatalf("server after the oversized frame: healthz %v, alive %v", err, s.Alive())
		}
	})

	t.Run("a thousand half-open connections", func(t *testing.T) {
		bob := register(t, s, "+14155594006", KeyOptions{})
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		addr := strings.TrimPrefix(s.URL, "http://")
		for i := range 1000 {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("half-open connection %d: %v", i, err)
			}
			held = append(held, c)
			switch i % 3 {
			case 1: // headers begun, never finished
				c.Write([]byte("POST /v1/verification HTTP/1.1\r\nHost: x\r\n"))
			case 2: // a WebSocket upgrade begun, never finished
				c.Write([]byte("GET /v1/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"))
			}
		}
		// A normal client registers, connects and sends meanwhile.
		alice := register(t, s, "+14155504007", KeyOptions{})
		c, err := s.Dial(ctx, bob)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		id := uuid.New()
		if err := s.Send(ctx, alice, bob, id, []byte("opaque")); err != nil {
			t.Fatalf("send beside half-open connections = %v", err)
		}
		for {
			f, err := c.Next(time.Now().Add(10 * time.Second))
			if err != nil {
				t.Fatalf("receiving beside half-open connections: %v", err)
			}
			if f.Type == api.FrameEnvelopes && f.Envelopes[0].ID == id {
				break
			}
		}
	})
}

// TestPrefixBurst: code requests to many numbers of one 10,000-number block are refused
// after the per-prefix limit (20 an hour by default), with the per-number and per-address
// limits raised so that only the prefix limit can refuse; another block is unaffected.
func TestPrefixBurst(t *testing.T) {
	s := start(t, "--rate-verify-ip", "1000/1h", "--rate-verify-number", "1000/1h")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := s.RequestCode(ctx, fmt.Sprintf("+1415555%04d", 5000+i)); err != nil {
			t.Fatalf("code request %d = %v", i+1, err)
		}
	}
	for i := range 5 {
		_, err := s.RequestCode(ctx, fmt.Sprintf("+1415555%04d", 6000+i))
		if se := wantStatus(t, fmt.Sprintf("code request %d to the same block", 21+i), err, http.StatusTooManyRequests, api.CodeRateLimited); se.RetryAfter == "" {
			t.Errorf("429 without Retry-After")
		}
	}
	if _, err := s.RequestCode(ctx, "+14155565000"); err != nil {
		t.Fatalf("code request to another block = %v", err)
	}
}

func mustAtoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
