package legal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// SocketFile is the desk's admin socket in the data directory. It is a Unix socket, mode
// 0600, in a directory only the server's user can enter: reaching it needs the server's
// user, and every request on it also needs an operator's token.
const SocketFile = "legal.sock"

// AdminHandler is the desk's admin API, served on the admin socket only. Every request
// carries "Authorization: Bearer <operator token>".
//
//	POST /desk/orders                      order JSON -> Record
//	GET  /desk/orders                      -> []Summary
//	GET  /desk/orders/{id}                 -> Record
//	POST /desk/orders/{id}/approve         -> Record
//	POST /desk/orders/{id}/reject          {"reason"} -> Record
//	POST /desk/orders/{id}/disclose        -> {"package", "signature"} (base64)
//	POST /desk/markets/{cc}/withdraw       {"reason", "close_existing"} -> Withdrawal
//	POST /desk/markets/{cc}/restore        -> {}
//	GET  /desk/reports[?all=1]             -> []ReportSummary (moderation_admin.go)
//	GET  /desk/reports/{id}                -> ReportRecord
//	POST /desk/reports/{id}/decide         Decision -> ReportRecord
func (d *Desk) AdminHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("POST /desk/orders", d.admin(func(r *http.Request, op Operator, body []byte) (any, error) {
		return d.Intake(r.Context(), op, body)
	}))
	m.HandleFunc("GET /desk/orders", d.admin(func(r *http.Request, op Operator, _ []byte) (any, error) {
		return d.List(r.Context())
	}))
	m.HandleFunc("GET /desk/orders/{id}", d.admin(func(r *http.Request, op Operator, _ []byte) (any, error) {
		id, err := orderID(r)
		if err != nil {
			return nil, err
		}
		return d.Show(r.Context(), id)
	}))
	m.HandleFunc("POST /desk/orders/{id}/approve", d.admin(func(r *http.Request, op Operator, _ []byte) (any, error) {
		id, err := orderID(r)
		if err != nil {
			return nil, err
		}
		return d.Approve(r.Context(), op, id)
	}))
	m.HandleFunc("POST /desk/orders/{id}/reject", d.admin(func(r *http.Request, op Operator, body []byte) (any, error) {
		id, err := orderID(r)
		if err != nil {
			return nil, err
		}
		var req struct {
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("reading request: %w", err)
		}
		return d.Reject(r.Context(), op, id, req.Reason)
	}))
	m.HandleFunc("POST /desk/orders/{id}/disclose", d.admin(func(r *http.Request, op Operator, _ []byte) (any, error) {
		id, err := orderID(r)
		if err != nil {
			return nil, err
		}
		pkg, sig, err := d.Disclose(r.Context(), op, id)
		if err != nil {
			return nil, err
		}
		return disclosed{Package: pkg, Signature: sig}, nil
	}))
	m.HandleFunc("POST /desk/markets/{cc}/withdraw", d.admin(func(r *http.Request, op Operator, body []byte) (any, error) {
		var req struct {
			Reason        string `json:"reason"`
			CloseExisting bool   `json:"close_existing"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("reading request: %w", err)
		}
		return d.Withdraw(r.Context(), op, r.PathValue("cc"), req.Reason, req.CloseExisting)
	}))
	m.HandleFunc("POST /desk/markets/{cc}/restore", d.admin(func(r *http.Request, op Operator, _ []byte) (any, error) {
		return struct{}{}, d.Restore(r.Context(), op, r.PathValue("cc"))
	}))
	d.moderationRoutes(m)
	return m
}

type disclosed struct {
	Package   []byte `json:"package"`
	Signature []byte `json:"signature"`
}

type adminError struct {
	Error string `json:"error"`
}

func orderID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("order id %q: %w", r.PathValue("id"), ErrNotFound)
	}
	return id, nil
}

// maxAdminBody bounds an admin request (an order file is at most 64 KiB).
const maxAdminBody = 128 << 10

func (d *Desk) admin(f func(r *http.Request, op Operator, body []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeAdmin(w, http.StatusUnauthorized, adminError{"missing operator token"})
			return
		}
		op, err := d.Authenticate(r.Context(), token)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, ErrUnauthorized) {
				status = http.StatusUnauthorized
			}
			writeAdmin(w, status, adminError{err.Error()})
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
		if err != nil || len(body) > maxAdminBody {
			writeAdmin(w, http.StatusRequestEntityTooLarge, adminError{"request too large"})
			return
		}
		v, err := f(r, op, body)
		if err != nil {
			status := http.StatusBadRequest
			switch {
			case errors.Is(err, ErrNotFound), errors.Is(err, ErrNoReport):
				status = http.StatusNotFound
			case errors.Is(err, ErrNeedsApproval), errors.Is(err, ErrAlreadyApproved), errors.Is(err, ErrConcluded), errors.Is(err, ErrDecided):
				status = http.StatusConflict
			}
			// The desk's errors are for its operators: they name no user data.
			writeAdmin(w, status, adminError{err.Error()})
			return
		}
		writeAdmin(w, http.StatusOK, v)
	}
}

func writeAdmin(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ServeAdmin listens on the Unix socket at path (mode 0600, replacing a stale one) and
// serves the admin API until ctx is done.
func (d *Desk) ServeAdmin(ctx context.Context, path string, logger *slog.Logger) (stop func(), err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// A socket left by a server that died: a live one would answer.
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s is in use by another server", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket permissions: %w", err)
	}
	hs := &http.Server{Handler: d.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("legal admin socket", "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
		<-done
		os.Remove(path)
	}, nil
}

// Client talks to a running server's desk over its admin socket.
type Client struct {
	hc    *http.Client
	token string
}

// NewClient returns a client for the socket at path, authenticating with token.
func NewClient(path, token string) *Client {
	return &Client{
		token: token,
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}},
	}
}

// Do sends one admin request and decodes the answer into out.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://legal"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the desk (is bastiond serve running on this data directory?): %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e adminError
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("desk answered %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// Intake sends an order file.
func (c *Client) Intake(ctx context.Context, order []byte) (Record, error) {
	var r Record
	return r, c.Do(ctx, "POST", "/desk/orders", order, &r)
}

// List lists orders.
func (c *Client) List(ctx context.Context) ([]Summary, error) {
	var s []Summary
	return s, c.Do(ctx, "GET", "/desk/orders", nil, &s)
}

// Show returns one order.
func (c *Client) Show(ctx context.Context, id int64) (Record, error) {
	var r Record
	return r, c.Do(ctx, "GET", fmt.Sprintf("/desk/orders/%d", id), nil, &r)
}

// Approve approves an order as this client's operator.
func (c *Client) Approve(ctx context.Context, id int64) (Record, error) {
	var r Record
	return r, c.Do(ctx, "POST", fmt.Sprintf("/desk/orders/%d/approve", id), nil, &r)
}

// Reject rejects an order with a reason.
func (c *Client) Reject(ctx context.Context, id int64, reason string) (Record, error) {
	b, _ := json.Marshal(map[string]string{"reason": reason})
	var r Record
	return r, c.Do(ctx, "POST", fmt.Sprintf("/desk/orders/%d/reject", id), b, &r)
}

// Disclose returns the signed package of an approved order.
func (c *Client) Disclose(ctx context.Context, id int64) (pkg, sig []byte, err error) {
	var d disclosed
	if err := c.Do(ctx, "POST", fmt.Sprintf("/desk/orders/%d/disclose", id), nil, &d); err != nil {
		return nil, nil, err
	}
	return d.Package, d.Signature, nil
}

// Withdraw withdraws a market.
func (c *Client) Withdraw(ctx context.Context, cc, reason string, closeExisting bool) (Withdrawal, error) {
	b, _ := json.Marshal(map[string]any{"reason": reason, "close_existing": closeExisting})
	var w Withdrawal
	return w, c.Do(ctx, "POST", "/desk/markets/"+url.PathEscape(cc)+"/withdraw", b, &w)
}

// Restore restores a market.
func (c *Client) Restore(ctx context.Context, cc string) error {
	return c.Do(ctx, "POST", "/desk/markets/"+url.PathEscape(cc)+"/restore", nil, nil)
}
