package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/google/uuid"
	"github.com/nyaruka/phonenumbers"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/legal"
	"github.com/bastionchat/bastion/internal/store"
)

// The lawful-request desk's server side (docs/lawful-access.md): its public endpoints,
// the registration refusal for withdrawn markets, the notifier that queues legal notices
// for an account's devices, and the adapter that gives the desk its narrow view of the
// store.
//
//	GET /v1/transparency     the transparency report (JSON), computed from the legal log
//	GET /transparency        the same as a page, with a chart and the markets withdrawn
//	GET /v1/markets          markets withdrawn, with dates and statements, and their history
//	GET /v1/legal/key        the server's Ed25519 key and the legal log's verifier key
//	GET /v1/legal/checkpoint the legal log's signed checkpoint (C2SP tlog-checkpoint)
//	GET /v1/legal/entries    ?start=&end=: entries of the legal log, base64, at most 1024

// maxSocketPath is the longest Unix socket path every platform takes (sun_path is 104
// bytes on the BSDs and macOS, 108 on Linux, both with the terminating NUL).
const maxSocketPath = 104

// CodeMarketWithdrawn is the stable error code (HTTP 451) of a registration refused
// because the service is withdrawn from the number's country.
const CodeMarketWithdrawn = api.CodeMarketWithdrawn

// StartLegal opens the desk's database (legal.db) and the server's Ed25519 key in the
// data directory, attaches the desk to the server, serves the admin socket
// (legal.sock) and delivers deferred notices when they fall due. Call it before serving;
// stop undoes it.
func (s *Server) StartLegal(ctx context.Context) (stop func(), err error) {
	db, err := legal.Open(ctx, filepath.Join(s.cfg.DataDir, "legal.db"))
	if err != nil {
		return nil, err
	}
	key, err := legal.LoadOrCreateKey(s.cfg.DataDir)
	if err != nil {
		db.Close()
		return nil, err
	}
	desk, err := s.newDesk(ctx, db, key)
	if err != nil {
		db.Close()
		return nil, err
	}
	stopAdmin := func() {}
	sock := filepath.Join(s.cfg.DataDir, legal.SocketFile)
	if len(sock) >= maxSocketPath {
		// The API must not fail to start over the operators' tool; the log says why the
		// desk commands cannot connect.
		s.log.Error("legal desk: admin socket path too long for a Unix socket; desk commands are unavailable (use a shorter --data path)",
			"path_bytes", len(sock), "max", maxSocketPath-1)
	} else if stopAdmin, err = desk.ServeAdmin(ctx, sock, s.log.With("component", "legal")); err != nil {
		db.Close()
		return nil, err
	}
	nctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); desk.RunNotices(nctx, s.cfg.JanitorInterval) }()
	return func() {
		stopAdmin()
		cancel()
		<-done
		db.Close()
	}, nil
}

// newDesk builds the desk on db and key and attaches it to the server.
func (s *Server) newDesk(ctx context.Context, db *legal.DB, key *legal.SigningKey) (*legal.Desk, error) {
	desk, err := legal.NewDesk(ctx, legal.Config{
		DB: db, Key: key,
		Subscribers:    legalView{accounts: s.store, conns: s.store},
		Notifier:       legalNotifier{s},
		Categories:     legalCategories(store.Inventory()),
		Retention:      time.Duration(s.cfg.IPRetentionDays) * 24 * time.Hour,
		Now:            s.now,
		Logger:         s.log.With("component", "legal"),
		CloseMarket:    s.closeMarket,
		MarketsChanged: s.syncMarkets,
		Channels:       deskChannels{s.store},
	})
	if err != nil {
		return nil, err
	}
	s.legal, s.noticeKey = desk, key
	// A crash between a desk commit and its mirror would leave the other nodes behind.
	if err := s.syncMarkets(ctx); err != nil {
		return nil, err
	}
	return desk, nil
}

// legalCategories hands the desk the data inventory's categories, from which it answers
// "not held".
func legalCategories(inv store.DataInventory) []legal.Category {
	cs := make([]legal.Category, len(inv.Categories))
	for i, c := range inv.Categories {
		cs[i] = legal.Category{ID: c.ID, Name: c.Name, Held: c.Held, Disclosable: c.Disclosable}
	}
	return cs
}

// legalView is the desk's whole view of user data: the account of a phone number and
// its connection log. It holds the store only through these two methods.
type legalView struct {
	accounts interface {
		AccountByNumber(ctx context.Context, number string) (store.Account, error)
	}
	conns interface {
		Connections(ctx context.Context, account uuid.UUID) ([]store.Connection, error)
	}
}

var _ legal.Subscribers = legalView{}

func (v legalView) AccountByNumber(ctx context.Context, number string) (uuid.UUID, bool, error) {
	a, err := v.accounts.AccountByNumber(ctx, number)
	if errors.Is(err, store.ErrNotFound) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, err
	}
	return a.ID, true, nil
}

func (v legalView) Connections(ctx context.Context, account uuid.UUID) ([]legal.Connection, error) {
	cs, err := v.conns.Connections(ctx, account)
	if err != nil {
		return nil, err
	}
	out := make([]legal.Connection, len(cs))
	for i, c := range cs {
		out[i] = legal.Connection{IP: c.IP, FirstSeen: c.FirstSeen, LastSeen: c.LastSeen}
	}
	return out, nil
}

// legalNotifier queues a notice from the operator to every device of an account: a
// server-originated envelope whose body is an [api.ServerNotice], the notice's JSON
// signed with the server's key (any user could queue an unsigned look-alike), and wakes
// the devices.
type legalNotifier struct{ s *Server }

var _ legal.Notifier = legalNotifier{}

func (n legalNotifier) NotifyAccount(ctx context.Context, account uuid.UUID, notice []byte) error {
	devs, err := n.s.store.Devices(ctx, account)
	if errors.Is(err, store.ErrNotFound) {
		return nil // the account was deleted since: nobody to tell
	}
	if err != nil {
		return fmt.Errorf("listing devices: %w", err)
	}
	if n.s.noticeKey == nil {
		return errors.New("queueing notice: no signing key")
	}
	body, err := json.Marshal(api.ServerNotice{
		Notice:    notice,
		Signature: n.s.noticeKey.Sign(append([]byte(api.NoticeContext), notice...)),
	})
	if err != nil {
		return fmt.Errorf("encoding notice: %w", err)
	}
	now := n.s.now()
	envs := make([]*store.Envelope, len(devs))
	for i, d := range devs {
		envs[i] = &store.Envelope{ID: uuid.New(), Account: account, Device: d.ID, ServerTime: now, Body: body}
	}
	if err := n.s.enqueue(ctx, envs); err != nil {
		return fmt.Errorf("queueing notice: %w", err)
	}
	return nil
}

// marketNotice is what an account's devices receive before their connection is closed
// because the service withdrew from their country.
type marketNotice struct {
	Type      string `json:"type"` // "market_withdrawn"
	From      string `json:"from"` // "operator"
	Country   string `json:"country"`
	Statement string `json:"statement"`
	Link      string `json:"link"`
}

// closeMarket sends a notice to, then closes, this node's connections of accounts whose
// number is in country.
func (s *Server) closeMarket(ctx context.Context, country string) error {
	w, ok, err := s.legal.DB().Withdrawn(ctx, country)
	if err != nil || !ok {
		return err
	}
	s.wsMu.Lock()
	byAccount := map[uuid.UUID][]*wsConn{}
	for c := range s.ws {
		byAccount[c.account] = append(byAccount[c.account], c)
	}
	s.wsMu.Unlock()
	body, _ := json.Marshal(marketNotice{Type: "market_withdrawn", From: "operator", Country: w.Country,
		Statement: w.Reason, Link: "/transparency#market-" + w.Country})
	var errs []error
	for acct, conns := range byAccount {
		a, err := s.store.Account(ctx, acct)
		if err != nil {
			continue // deleted meanwhile
		}
		if numberCountry(a.Number) != w.Country {
			continue
		}
		if err := (legalNotifier{s}).NotifyAccount(ctx, acct, body); err != nil {
			errs = append(errs, err)
		}
		for _, c := range conns {
			c.close(ws.StatusPolicyViolation, "service withdrawn from this country")
		}
	}
	return errors.Join(errs...)
}

// numberCountry returns the ISO 3166-1 region of an E.164 number, "" if unknown.
func numberCountry(e164 string) string {
	n, err := phonenumbers.Parse(e164, "ZZ")
	if err != nil {
		return ""
	}
	return phonenumbers.GetRegionCodeForNumber(n)
}

// checkMarket refuses a registration with a number from a withdrawn market: 451, with
// the published statement and where to read it.
func (s *Server) checkMarket(ctx context.Context, e164 string) error {
	cc := numberCountry(e164)
	if cc == "" {
		return nil
	}
	// The shared mirror, not the desk's database: the desk runs on one node, and every
	// node must refuse.
	ws, err := s.store.MarketWithdrawals(ctx)
	if err != nil {
		return fmt.Errorf("reading markets: %w", err)
	}
	for _, w := range ws {
		if w.Country == cc {
			return newError(http.StatusUnavailableForLegalReasons, CodeMarketWithdrawn, fmt.Sprintf(
				"Bastion is not available for numbers from %s since %s: %s Statement: /transparency#market-%s",
				w.Country, w.Since.Format("2006-01-02"), w.Reason, w.Country))
		}
	}
	return nil
}

// syncMarkets makes the store's mirror of withdrawn markets (read by every node) equal
// to the desk's own record, which is the authority.
func (s *Server) syncMarkets(ctx context.Context) error {
	want, err := s.legal.DB().Withdrawals(ctx)
	if err != nil {
		return fmt.Errorf("reading the desk's markets: %w", err)
	}
	have, err := s.store.MarketWithdrawals(ctx)
	if err != nil {
		return fmt.Errorf("reading the shared markets: %w", err)
	}
	keep := map[string]bool{}
	for _, w := range want {
		keep[w.Country] = true
		if err := s.store.SetMarketWithdrawal(ctx, store.MarketWithdrawal{Country: w.Country, Since: w.WithdrawnAt, Reason: w.Reason}); err != nil {
			return err
		}
	}
	for _, w := range have {
		if !keep[w.Country] {
			if err := s.store.ClearMarketWithdrawal(ctx, w.Country); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Server) legalRoutes(m *http.ServeMux) {
	h := s.handle
	m.Handle("GET /v1/transparency", h(s.needLegal(s.transparencyJSON)))
	m.Handle("GET /transparency", h(s.needLegal(s.transparencyPage)))
	m.Handle("GET /v1/markets", h(s.needLegal(s.markets)))
	m.Handle("GET /v1/legal/key", h(s.needLegal(s.legalKey)))
	m.Handle("GET /v1/legal/checkpoint", h(s.needLegal(s.legalCheckpoint)))
	m.Handle("GET /v1/legal/entries", h(s.needLegal(s.legalEntries)))
}

func (s *Server) needLegal(f handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.legal == nil {
			return newError(http.StatusNotFound, "not_found", "the legal desk is not running on this server")
		}
		return f(w, r)
	}
}

func (s *Server) transparencyJSON(w http.ResponseWriter, r *http.Request) error {
	rep, err := s.legal.Report(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *Server) transparencyPage(w http.ResponseWriter, r *http.Request) error {
	rep, err := s.legal.Report(r.Context())
	if err != nil {
		return err
	}
	ws, err := s.legal.DB().Withdrawals(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page is self-contained: no script, no external asset.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'")
	return legal.RenderPage(w, rep, ws)
}

// MarketsResponse is the body of GET /v1/markets.
type MarketsResponse struct {
	Withdrawn []legal.Withdrawal  `json:"withdrawn"`
	History   []legal.MarketEvent `json:"history"`
}

func (s *Server) markets(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.legal.DB().Withdrawals(r.Context())
	if err != nil {
		return err
	}
	h, err := s.legal.DB().MarketHistory(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, MarketsResponse{Withdrawn: ws, History: h})
	return nil
}

// LegalKeyResponse is the body of GET /v1/legal/key.
type LegalKeyResponse struct {
	Ed25519PublicKey string `json:"ed25519_public_key"` // base64; signs disclosure packages
	LogVerifierKey   string `json:"log_verifier_key"`   // signed-note verifier key of the legal log
}

func (s *Server) legalKey(w http.ResponseWriter, r *http.Request) error {
	pub := s.legal.PublicKey()
	vkey, err := legal.VerifierKey(pub)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, LegalKeyResponse{Ed25519PublicKey: base64.StdEncoding.EncodeToString(pub), LogVerifierKey: vkey})
	return nil
}

func (s *Server) legalCheckpoint(w http.ResponseWriter, r *http.Request) error {
	cp, err := s.legal.Log().Checkpoint(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(cp)
	return nil
}

// LegalEntriesResponse is the body of GET /v1/legal/entries.
type LegalEntriesResponse struct {
	Start   int64    `json:"start"`
	Entries [][]byte `json:"entries"` // base64 of each entry's exact bytes
}

func (s *Server) legalEntries(w http.ResponseWriter, r *http.Request) error {
	tree, err := s.legal.Log().Tree(r.Context())
	if err != nil {
		return err
	}
	start, err1 := strconv.ParseInt(r.URL.Query().Get("start"), 10, 64)
	end, err2 := strconv.ParseInt(r.URL.Query().Get("end"), 10, 64)
	if r.URL.Query().Get("start") == "" {
		start, err1 = 0, nil
	}
	if r.URL.Query().Get("end") == "" {
		end, err2 = tree.N, nil
	}
	end = min(end, tree.N, start+1024)
	if err1 != nil || err2 != nil || start < 0 || (start >= end && !(start == 0 && tree.N == 0)) {
		return badRequest(fmt.Sprintf("want 0 <= start < end <= %d", tree.N))
	}
	resp := LegalEntriesResponse{Start: start, Entries: [][]byte{}}
	if tree.N > 0 {
		es, err := s.legal.Log().Entries(r.Context(), start, end)
		if err != nil {
			return err
		}
		resp.Entries = es
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
