package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// SMS sends a verification code to a phone number.
type SMS interface {
	SendCode(ctx context.Context, number, code string) error
}

var (
	_ SMS = (*DevSMS)(nil)
	_ SMS = (*WebhookSMS)(nil)
)

// DevSMS is the development provider: it prints codes to a console, never to a network
// and never through the JSON log. Anyone watching that console can register any number,
// which is why it announces itself loudly.
type DevSMS struct {
	mu  sync.Mutex
	out io.Writer
}

// DevBanner is printed when the development provider starts.
const DevBanner = `
#####################################################################
##  DEVELOPMENT ONLY: the "dev" SMS provider prints verification   ##
##  codes on this console instead of sending them. Anyone who can   ##
##  read it can register any phone number. Use --sms webhook in     ##
##  production.                                                     ##
#####################################################################
`

// NewDevSMS returns the development provider writing to out, and prints the banner.
func NewDevSMS(out io.Writer) *DevSMS {
	fmt.Fprint(out, DevBanner)
	return &DevSMS{out: out}
}

// SendCode prints the code.
func (d *DevSMS) SendCode(_ context.Context, number, code string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, err := fmt.Fprintf(d.out, "DEVELOPMENT ONLY: verification code for %s: %s\n", number, code)
	return err
}

// WebhookSMS POSTs {"number","code","sent_at"} as JSON to an operator's URL, which relays
// it to an SMS gateway. The X-Bastion-Signature header is "sha256=" and the hex
// HMAC-SHA256 of the body under the shared secret; sent_at (ms since epoch) inside the
// signed body lets the receiver refuse replays.
type WebhookSMS struct {
	url    string
	secret []byte
	client *http.Client
	now    func() time.Time
}

// WebhookSignatureHeader carries the body's HMAC.
const WebhookSignatureHeader = "X-Bastion-Signature"

// NewWebhookSMS returns a webhook provider. secret must not be empty.
func NewWebhookSMS(url string, secret []byte) *WebhookSMS {
	return &WebhookSMS{url: url, secret: secret, client: &http.Client{Timeout: 10 * time.Second}, now: time.Now}
}

type webhookBody struct {
	Number string `json:"number"`
	Code   string `json:"code"`
	SentAt int64  `json:"sent_at"`
}

// SendCode posts the code and expects a 2xx answer.
func (w *WebhookSMS) SendCode(ctx context.Context, number, code string) error {
	body, err := json.Marshal(webhookBody{Number: number, Code: code, SentAt: w.now().UnixMilli()})
	if err != nil {
		return fmt.Errorf("encoding webhook body: %w", err)
	}
	m := hmac.New(sha256.New, w.secret)
	m.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(WebhookSignatureHeader, "sha256="+hex.EncodeToString(m.Sum(nil)))
	resp, err := w.client.Do(req)
	if err != nil {
		// The error names the URL (the operator's), never the number.
		return fmt.Errorf("posting to SMS webhook: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("SMS webhook answered %s", resp.Status)
	}
	return nil
}
