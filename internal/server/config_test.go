package server

import (
	"github.com/bastionchat/bastion/internal/phone"

	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"loopback v6", func(c *Config) { c.Listen = "[::1]:8080" }, ""},
		{"localhost", func(c *Config) { c.Listen = "localhost:0" }, ""},
		{"plain HTTP on all interfaces", func(c *Config) { c.Listen = ":8080" }, "not loopback"},
		{"plain HTTP on a public address", func(c *Config) { c.Listen = "192.0.2.1:80" }, "not loopback"},
		{"insecure HTTP allowed explicitly", func(c *Config) { c.Listen = ":8080"; c.InsecureHTTP = true }, ""},
		{"TLS on all interfaces", func(c *Config) { c.Listen = ":443"; c.TLSCert, c.TLSKey = "c", "k" }, ""},
		{"autocert", func(c *Config) { c.Listen = ":443"; c.AutocertDomain = "chat.example" }, ""},
		{"cert without key", func(c *Config) { c.TLSCert = "c" }, "go together"},
		{"cert and autocert", func(c *Config) { c.TLSCert, c.TLSKey, c.AutocertDomain = "c", "k", "x" }, "exclude"},
		{"bad listen", func(c *Config) { c.Listen = "8080" }, "listen address"},
		{"bad port", func(c *Config) { c.Listen = "127.0.0.1:http2" }, "bad port"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data directory"},
		{"unknown SMS", func(c *Config) { c.SMS = "carrier-pigeon" }, "unknown SMS"},
		{"webhook without URL", func(c *Config) { c.SMS = "webhook"; c.SMSWebhookSecretFile = "s" }, "webhook-url"},
		{"webhook without secret", func(c *Config) { c.SMS = "webhook"; c.SMSWebhookURL = "https://sms.example/send" }, "secret-file"},
		{"webhook", func(c *Config) {
			c.SMS, c.SMSWebhookURL, c.SMSWebhookSecretFile = "webhook", "https://sms.example/send", "s"
		}, ""},
		{"zero TTL", func(c *Config) { c.QueueTTL = 0 }, "TTL"},
		{"negative retention", func(c *Config) { c.IPRetentionDays = -1 }, "retention"},
		{"zero retention", func(c *Config) { c.IPRetentionDays = 0 }, ""},
		{"zero attempts", func(c *Config) { c.Limits.CodeAttempts = 0 }, "code attempts"},
		{"zero rate", func(c *Config) { c.Limits.BundlePerPair = Rate{} }, "bundle-per-pair"},
		{"tiny send limit", func(c *Config) { c.Limits.MaxSendBytes = 1000 }, "send limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"5/1h", Rate{5, time.Hour}, true},
		{"100/30s", Rate{100, 30 * time.Second}, true},
		{"5", Rate{}, false},
		{"0/1h", Rate{}, false},
		{"-1/1h", Rate{}, false},
		{"5/0s", Rate{}, false},
		{"5/hour", Rate{}, false},
		{"x/1h", Rate{}, false},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != "" {
			if back, err := ParseRate(got.String()); err != nil || back != got {
				t.Errorf("ParseRate(%q.String()) = %v, %v; want %v", tt.in, back, err, got)
			}
		}
	}
}

func TestLimiter(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	l := newLimiter(Rate{N: 3, Per: 3 * time.Minute}, []byte("key"), clock.Now)
	for i := range 3 {
		if ok, _ := l.allow([]byte("a")); !ok {
			t.Fatalf("allow #%d = false, want true (burst of 3)", i+1)
		}
	}
	ok, wait := l.allow([]byte("a"))
	if ok || wait != time.Minute {
		t.Fatalf("allow #4 = %v, %v; want false, 1m0s", ok, wait)
	}
	if ok, _ := l.allow([]byte("b")); !ok {
		t.Errorf("allow(other key) = false, want true")
	}
	// Parts are length-prefixed: ("a","bc") is not ("ab","c").
	l2 := newLimiter(Rate{N: 1, Per: time.Hour}, []byte("key"), clock.Now)
	l2.allow([]byte("a"), []byte("bc"))
	if ok, _ := l2.allow([]byte("ab"), []byte("c")); !ok {
		t.Errorf("allow(ab, c) after allow(a, bc) = false, want true")
	}
	clock.Advance(time.Minute)
	if ok, _ := l.allow([]byte("a")); !ok {
		t.Errorf("allow after refill = false, want true")
	}
	clock.Advance(3 * time.Minute)
	l.sweep()
	if n := len(l.buckets); n != 0 {
		t.Errorf("buckets after sweep = %d, want 0", n)
	}
}

func TestWebhookSMS(t *testing.T) {
	secret := []byte("0123456789abcdef-shared")
	var got webhookBody
	var sigOK bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m := hmac.New(sha256.New, secret)
		m.Write(body)
		sigOK = hmac.Equal([]byte(r.Header.Get(WebhookSignatureHeader)), []byte("sha256="+hex.EncodeToString(m.Sum(nil))))
		json.Unmarshal(body, &got)
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer ts.Close()
	w := NewWebhookSMS(ts.URL+"/send", secret)
	w.now = func() time.Time { return time.UnixMilli(1234) }
	if err := w.SendCode(context.Background(), "+14155550100", "123456"); err != nil {
		t.Fatalf("SendCode() = %v", err)
	}
	if !sigOK {
		t.Errorf("webhook signature does not verify")
	}
	if got != (webhookBody{Number: "+14155550100", Code: "123456", SentAt: 1234}) {
		t.Errorf("webhook body = %+v", got)
	}
	w = NewWebhookSMS(ts.URL+"/fail", secret)
	if err := w.SendCode(context.Background(), "+14155550100", "123456"); err == nil {
		t.Errorf("SendCode() to a failing gateway = nil, want an error")
	} else if strings.Contains(err.Error(), "+14155550100") {
		t.Errorf("SendCode() error %q names the number", err)
	}
}

func TestDevSMS(t *testing.T) {
	var b strings.Builder
	d := NewDevSMS(&b)
	d.SendCode(context.Background(), "+14155550100", "654321")
	out := b.String()
	if !strings.Contains(out, "DEVELOPMENT ONLY") || !strings.Contains(out, "654321") {
		t.Errorf("dev SMS output = %q, want the banner and the code", out)
	}
}

func TestRandomCode(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c := randomCode()
		if len(c) != 6 || strings.Trim(c, "0123456789") != "" {
			t.Fatalf("randomCode() = %q, want 6 digits", c)
		}
		seen[c] = true
	}
	if len(seen) < 190 {
		t.Errorf("randomCode() gave %d distinct codes in 200, want nearly all distinct", len(seen))
	}
}

func TestNormaliseNumber(t *testing.T) {
	tests := []struct{ in, want string }{
		{"+14155550100", "+14155550100"},
		{"+1 (415) 555-0100", "+14155550100"},
		{"+44 20 7946 0958", "+442079460958"},
		{"+33 6 12 34 56 78", "+33612345678"},
		{"4155550100", ""},
		{"+1 555", ""},
		{"hello", ""},
	}
	for _, tt := range tests {
		got, err := phone.Normalise(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("phone.Normalise(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("phone.Normalise(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if got := numberBlock("+14155550100"); got != "+1415555" {
		t.Errorf("numberBlock(+14155550100) = %q, want +1415555", got)
	}
}
