package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bastionchat/bastion/api"
)

// APIError is an error answer from the server: its HTTP status and its body. Programs
// branch on Body.Code (the api.Code* constants).
type APIError struct {
	Status int
	Body   api.Error
}

func (e *APIError) Error() string {
	if e.Body.Message != "" {
		return fmt.Sprintf("server: %s (%s)", e.Body.Message, e.Body.Code)
	}
	return fmt.Sprintf("server: HTTP %d", e.Status)
}

// isCode reports whether err is an [APIError] with the given code.
func isCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Body.Code == code
}

// maxResponse bounds what is read from the server: the largest answer is a bundle for
// every device of an account, a few KiB each.
const maxResponse = 4 << 20

// credentials authenticate a device (HTTP Basic, docs/api.md "Authentication").
type credentials struct {
	user, password string
}

// httpAPI speaks docs/api.md.
type httpAPI struct {
	base   *url.URL
	client *http.Client
}

func newHTTPAPI(server string, hc *http.Client) (*httpAPI, error) {
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q: want an http:// or https:// URL", server)
	}
	if hc == nil {
		// A server that accepts a connection and never answers must not hang the
		// caller: every request here is small.
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &httpAPI{base: u, client: hc}, nil
}

// do sends in as JSON (when not nil) and decodes a 2xx answer into out (when not nil).
func (h *httpAPI) do(ctx context.Context, method, path string, cred *credentials, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base.String()+path, body)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cred != nil {
		req.SetBasicAuth(cred.user, cred.password)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return unreachable(h.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return unreachable(h.base, err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Status: resp.StatusCode}
		json.Unmarshal(data, &ae.Body) // a body that is not an api.Error leaves the status
		return ae
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding %s answer: %w", path, err)
	}
	return nil
}

// unreachable wraps a transport failure as [ErrUnreachable], naming the server but not
// the request (whose path may hold an account id).
func unreachable(base *url.URL, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, base.Redacted(), rootCause(err))
	}
	return fmt.Errorf("talking to %s: %w", base.Redacted(), err)
}

// rootCause drops the url.Error wrapper, which repeats the method and the full URL.
func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
