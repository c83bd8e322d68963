// Package server is bastiond's HTTP and WebSocket front: registration by phone number,
// prekey upload and bundle fetch, store-and-forward delivery of ciphertext envelopes,
// the janitors that enforce retention, and the operational endpoints. docs/api.md is the
// specification it implements; the wire types are in package api.
//
// What it protects: the boundary of what the service holds. It relays envelope bodies
// without reading them, records no sender for an envelope, keeps device secrets and
// verification codes only as SHA-256 digests, records the connection log only within the
// configured window, and logs no phone number, token, key, IP address or
// sender-recipient pair. Rate limits hold phone numbers, addresses and pairs only as
// keyed digests, in memory or (shared by the nodes of a PostgreSQL deployment) in the
// store, under a key the database does not hold.
//
// What it does not protect: message confidentiality and authenticity (the clients' Signal
// Protocol does that; the only cryptography here is checking a prekey's XEdDSA signature,
// through protocol/curve), metadata visible to the network (use TLS, which [Run]
// terminates or a proxy in front does), and the timing of deliveries.
package server

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/legal"
	"github.com/bastionchat/bastion/internal/store"
)

// Server is bastiond's request handling over one [store.Store].
type Server struct {
	cfg    Config
	store  store.Store
	sms    SMS
	notify Notifier
	log    *slog.Logger
	now    func() time.Time

	mux       *http.ServeMux
	metrics   *metrics
	certs     *CertificateKeys  // sealed sender's trust root and server key
	legal     *legal.Desk       // the lawful-request desk; nil when not started (legal.go)
	noticeKey *legal.SigningKey // signs notices queued for users (legal.go)
	kt        *ktLog            // the key transparency log (kt.go)
	chans     *channelHub       // broadcast channels (channels.go)

	devices deviceCache // device lists for sends (cache.go)
	creds   credCache   // recently verified credential digests (cache.go)

	multiSlots sendSlots // bounds the multi-recipient sends running at once (multisend.go)

	verifyNumber, verifyPrefix, verifyIP, bundlePair, lookup *limiter
	codeAttempts                                             *limiter       // shared limits only: the attempt cap across nodes
	sessionLocks                                             [64]sync.Mutex // serialise code checks per verification session

	wsMu      sync.Mutex
	ws        map[*wsConn]struct{}
	wsWG      sync.WaitGroup
	wsClosing bool
}

// Options are a [Server]'s collaborators. Nil Notifier means in-process, nil Logger
// discards, nil Now means time.Now.
type Options struct {
	Store    store.Store
	SMS      SMS
	Notifier Notifier
	Logger   *slog.Logger
	Now      func() time.Time
	// Certificates sign sealed-sender delivery certificates; nil generates a fresh set
	// in memory (tests). Run loads them from the data directory.
	Certificates *CertificateKeys
	// KT is the key transparency log's keys and storage (kt.go).
	KT KTOptions
	// RateLimitKey keys the rate limits' digests (ratelimit.go); nil draws one in memory.
	// RateLimits, if set, holds the buckets instead of this process's memory, shared by
	// every node that has the same key.
	RateLimitKey []byte
	RateLimits   store.RateLimits
}

// New returns a server over o.Store. cfg must be valid.
func New(cfg Config, o Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Store == nil || o.SMS == nil {
		return nil, errors.New("server needs a store and an SMS provider")
	}
	s := &Server{
		cfg: cfg, store: o.Store, sms: o.SMS, notify: o.Notifier, log: o.Logger, now: o.Now,
		ws: make(map[*wsConn]struct{}), certs: o.Certificates,
	}
	if s.certs == nil {
		var err error
		if s.certs, err = GenerateCertificateKeys(); err != nil {
			return nil, err
		}
	}
	if s.notify == nil {
		s.notify = NewLocalNotifier()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.initKT(o.KT); err != nil {
		return nil, err
	}
	hashKey := o.RateLimitKey
	if hashKey == nil {
		hashKey = make([]byte, 32)
		rand.Read(hashKey)
	}
	l := cfg.Limits
	s.verifyNumber = newLimiter(l.VerifyPerNumber, hashKey, s.now)
	s.verifyPrefix = newLimiter(l.VerifyPerPrefix, hashKey, s.now)
	s.verifyIP = newLimiter(l.VerifyPerIP, hashKey, s.now)
	s.bundlePair = newLimiter(l.BundlePerPair, hashKey, s.now)
	s.lookup = newLimiter(l.LookupPerAcct, hashKey, s.now)
	if o.RateLimits != nil {
		s.verifyNumber.share("verify_number", o.RateLimits)
		s.verifyPrefix.share("verify_prefix", o.RateLimits)
		s.verifyIP.share("verify_ip", o.RateLimits)
		s.bundlePair.share("bundle_pair", o.RateLimits)
		s.lookup.share("lookup", o.RateLimits)
		// One token per code guessed in a session, one back per refill: a refill longer
		// than a session lives gives none back, so this caps guesses on all nodes
		// together, where sessionLocks only serialise one node's.
		s.codeAttempts = newLimiter(Rate{N: l.CodeAttempts, Per: time.Duration(l.CodeAttempts) * (l.CodeLifetime + time.Second)}, hashKey, s.now)
		s.codeAttempts.share("code_attempts", o.RateLimits)
	}
	s.metrics = newMetrics()
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	s.mux = m
	h := s.handle
	m.Handle("GET /healthz", h(s.healthz))
	m.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	m.Handle("GET /v1/inventory", h(s.inventory))
	s.legalRoutes(m)
	s.reportRoutes(m)
	s.ktRoutes(m)
	m.Handle("POST /v1/verification", h(s.createVerification))
	m.Handle("GET /v1/verification/{session}", h(s.getVerification))
	m.Handle("PUT /v1/verification/{session}/code", h(s.submitCode))
	m.Handle("POST /v1/accounts", h(s.register))
	m.Handle("PUT /v1/keys", h(s.authed(s.setKeys)))
	m.Handle("GET /v1/keys", h(s.authed(s.preKeyCount)))
	m.Handle("GET /v1/keys/{account}/{device}", h(s.authed(s.bundle)))
	m.Handle("POST /v1/directory", h(s.authed(s.lookupNumber)))
	m.Handle("PUT /v1/messages/{account}", h(s.authed(s.send)))
	s.multiSendRoutes(m)
	s.channelRoutes(m, h)
	m.Handle("GET /v1/websocket", h(s.authed(s.websocket)))
	m.Handle("GET /v1/certificate/trust-root", h(s.trustRoot))
	m.Handle("GET /v1/certificate/delivery", h(s.authed(s.deliveryCertificate)))
	m.Handle("/", h(func(http.ResponseWriter, *http.Request) error {
		return newError(http.StatusNotFound, api.CodeNotFound, "no such endpoint")
	}))
}

// Handler returns the HTTP handler with metrics, panic recovery and request logging.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// A panic is a broken invariant of ours; the stack says where, not who.
				s.log.Error("handler panic", "route", r.Pattern, "panic", v, "stack", string(debug.Stack()))
				if !sw.wrote {
					writeError(sw, newError(http.StatusInternalServerError, api.CodeInternal, "internal error"))
				}
			}
			route := r.Pattern
			if route == "" || route == "/" {
				route = "unmatched"
			}
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
			s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
			// The route is a pattern ("/v1/messages/{account}"): it names no account.
			s.log.Debug("request", "route", route, "status", sw.status, "duration", time.Since(start))
		}()
		s.mux.ServeHTTP(sw, r)
	})
}

// handle turns a handlerFunc's error into an answer: an *httpError as it says, anything
// else as 500 with the cause in the log only.
func (s *Server) handle(f handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := f(w, r)
		if err == nil {
			return
		}
		var he *httpError
		if !errors.As(err, &he) {
			he = &httpError{status: http.StatusInternalServerError,
				body: api.Error{Code: api.CodeInternal, Message: "internal error"}, cause: err}
		}
		if he.status >= 500 {
			s.log.Error("request failed", "route", r.Pattern, "status", he.status, "err", he.cause)
		} else if he.cause != nil {
			s.log.Debug("request refused", "route", r.Pattern, "status", he.status, "err", he.cause)
		}
		writeError(w, he)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController and the WebSocket upgrade reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack passes through for the WebSocket upgrade, which records 101.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.status, w.wrote = http.StatusSwitchingProtocols, true
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
	return nil
}

// inventory serves the data inventory exactly as shipped in the binary, so that anyone
// can compare what a server says it stores with the document of its release.
func (s *Server) inventory(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(store.InventoryJSON())
	return nil
}

// device is the authenticated caller of a request.
type device struct {
	account uuid.UUID
	id      uint32
}

type authedFunc func(w http.ResponseWriter, r *http.Request, d device) error

// authed checks HTTP Basic credentials: user "<account id>.<device id>", password the
// device's secret from registration.
func (s *Server) authed(f authedFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="bastion"`)
			return err
		}
		return f(w, r, d)
	}
}

func (s *Server) authenticate(r *http.Request) (device, error) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return device{}, errUnauthorized
	}
	acct, dev, ok := strings.Cut(user, ".")
	if !ok {
		return device{}, errUnauthorized
	}
	id, err := uuid.Parse(acct)
	if err != nil {
		return device{}, errUnauthorized
	}
	n, err := strconv.ParseUint(dev, 10, 32)
	if err != nil {
		return device{}, errUnauthorized
	}
	// The digest is computed before the lookup so that an unknown device costs the same.
	sum := sha256.Sum256([]byte(pass))
	caller := device{account: id, id: uint32(n)}
	if s.creds.check(caller, &sum) {
		return caller, nil
	}
	gen := s.creds.generation()
	d, err := s.store.Device(r.Context(), id, uint32(n))
	if errors.Is(err, store.ErrNotFound) {
		return device{}, errUnauthorized
	}
	if err != nil {
		return device{}, err
	}
	if subtle.ConstantTimeCompare(sum[:], d.CredentialHash) != 1 {
		return device{}, errUnauthorized
	}
	s.creds.put(caller, &sum, gen)
	return caller, nil
}

type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	queued    prometheus.Counter
	delivered prometheus.Counter
	expired   prometheus.Counter
	wsConns   prometheus.Gauge
	limited   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bastion_http_requests_total", Help: "HTTP requests by route pattern and status.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bastion_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		queued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bastion_envelopes_queued_total", Help: "Envelopes stored durably for delivery.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bastion_envelopes_delivered_total", Help: "Envelopes acknowledged by their device.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bastion_envelopes_expired_total", Help: "Envelopes deleted by the queue TTL.",
		}),
		wsConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bastion_websocket_connections", Help: "Open WebSocket connections.",
		}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bastion_rate_limited_total", Help: "Requests refused by a rate limit, by limit.",
		}, []string{"limit"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.queued, m.delivered, m.expired, m.wsConns, m.limited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
