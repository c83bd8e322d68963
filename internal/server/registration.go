package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"math/big"
	"net/http"
	"net/netip"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/phone"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/protocol/curve"
)

// Registration (docs/api.md "Registration"):
//
//	POST /v1/verification              {number} -> session, code sent by SMS
//	PUT  /v1/verification/{id}/code    {code}   -> verified
//	POST /v1/accounts                  {session_id, keys...} -> account id, device secret
//
// Whether a number is registered is never consulted before the code is verified, so the
// first two steps answer the same, in the same time, for registered and new numbers.

const smallBody = 64 << 10 // every request but key uploads and sends

// errInvalidNumber answers a number phone.Normalise refuses.
var errInvalidNumber = newError(http.StatusBadRequest, api.CodeInvalidNumber,
	"not a valid phone number; give it in international form, e.g. +14155550100")

// numberBlock is the number without its last four digits: the block of 10,000 numbers an
// SMS-pumping attack walks through (premium ranges are allocated in such blocks).
func numberBlock(e164 string) string {
	if len(e164) <= 6 {
		return e164
	}
	return e164[:len(e164)-4]
}

// clientAddr is the peer's address; IPv6 peers are grouped by /64, the block one
// subscriber usually holds, so rotating addresses within it does not escape a limit.
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func limitKey(a netip.Addr) []byte {
	if a.Is6() {
		p, _ := a.Prefix(64)
		a = p.Addr()
	}
	b, _ := a.MarshalBinary()
	return b
}

func (s *Server) limit(ctx context.Context, name string, l *limiter, parts ...[]byte) error {
	ok, wait, err := l.take(ctx, parts...)
	if err != nil {
		return err
	}
	if !ok {
		s.metrics.limited.WithLabelValues(name).Inc()
		return rateLimited(wait)
	}
	return nil
}

// randomCode draws a uniform decimal code from crypto/rand.
func randomCode() string {
	max := big.NewInt(1_000_000) // 10^VerificationCodeDigits
	n, err := rand.Int(rand.Reader, max)
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // crypto/rand does not fail
	}
	return fmt.Sprintf("%0*d", api.VerificationCodeDigits, n)
}

// randomToken returns n random bytes in unpadded base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) createVerification(w http.ResponseWriter, r *http.Request) error {
	var req api.CreateVerificationRequest
	if err := decodeJSON(w, r, smallBody, &req); err != nil {
		return err
	}
	number, err := phone.Normalise(req.Number)
	if err != nil {
		return errInvalidNumber
	}
	if err := s.checkMarket(r.Context(), number); err != nil {
		return err
	}
	if err := s.limit(r.Context(), "verify_ip", s.verifyIP, limitKey(clientAddr(r))); err != nil {
		return err
	}
	if err := s.limit(r.Context(), "verify_prefix", s.verifyPrefix, []byte("block"), []byte(numberBlock(number))); err != nil {
		return err
	}
	if err := s.limit(r.Context(), "verify_number", s.verifyNumber, []byte("number"), []byte(number)); err != nil {
		return err
	}
	code := randomCode()
	sum := sha256.Sum256([]byte(code))
	now := s.now()
	v := store.Verification{
		ID:        randomToken(16), // 128 bits: unguessable, it stands for the number until registration
		Number:    number,
		CodeHash:  sum[:],
		CreatedAt: now,
		ExpiresAt: now.Add(s.cfg.Limits.CodeLifetime),
	}
	if err := s.store.CreateVerification(r.Context(), v); err != nil {
		return fmt.Errorf("creating verification: %w", err)
	}
	if err := s.sms.SendCode(r.Context(), number, code); err != nil {
		s.store.DeleteVerification(r.Context(), v.ID)
		e := newError(http.StatusServiceUnavailable, api.CodeSMSUnavailable, "the code could not be sent; try again later")
		e.cause = err
		return e
	}
	writeJSON(w, http.StatusOK, api.VerificationResponse{SessionID: v.ID, ExpiresAt: v.ExpiresAt.UnixMilli()})
	return nil
}

var errSessionNotFound = newError(http.StatusNotFound, api.CodeSessionNotFound,
	"no such verification session, or it expired; request a new code")

// verification loads a live session.
func (s *Server) verification(r *http.Request, id string) (store.Verification, error) {
	if id == "" || len(id) > 64 {
		return store.Verification{}, errSessionNotFound
	}
	v, err := s.store.Verification(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return v, errSessionNotFound
	}
	if err != nil {
		return v, fmt.Errorf("loading verification: %w", err)
	}
	if !s.now().Before(v.ExpiresAt) {
		return v, errSessionNotFound
	}
	return v, nil
}

func (s *Server) lockSession(id string) func() {
	m := &s.sessionLocks[maphash.String(sessionSeed, id)%uint64(len(s.sessionLocks))]
	m.Lock()
	return m.Unlock
}

var sessionSeed = maphash.MakeSeed()

func (s *Server) getVerification(w http.ResponseWriter, r *http.Request) error {
	v, err := s.verification(r, r.PathValue("session"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.VerificationResponse{SessionID: v.ID, ExpiresAt: v.ExpiresAt.UnixMilli(), Verified: v.Verified})
	return nil
}

func (s *Server) submitCode(w http.ResponseWriter, r *http.Request) error {
	var req api.SubmitCodeRequest
	if err := decodeJSON(w, r, smallBody, &req); err != nil {
		return err
	}
	id := r.PathValue("session")
	// Attempts are read, checked and written under one lock, so concurrent guesses cannot
	// overrun the cap. The lock is per process: with shared limits, codeAttempts holds
	// the cap for every node together.
	defer s.lockSession(id)()
	v, err := s.verification(r, id)
	if err != nil {
		return err
	}
	resp := api.VerificationResponse{SessionID: v.ID, ExpiresAt: v.ExpiresAt.UnixMilli(), Verified: true}
	if v.Verified {
		writeJSON(w, http.StatusOK, resp)
		return nil
	}
	capN := s.cfg.Limits.CodeAttempts
	if v.Attempts >= capN {
		return s.tooManyAttempts(v)
	}
	if s.codeAttempts != nil {
		ok, _, err := s.codeAttempts.take(r.Context(), []byte(v.ID))
		if err != nil {
			return err
		}
		if !ok {
			return s.tooManyAttempts(v)
		}
	}
	sum := sha256.Sum256([]byte(req.Code))
	// Constant-time on the digests: the comparison's timing says nothing about the code.
	if subtle.ConstantTimeCompare(sum[:], v.CodeHash) != 1 {
		v.Attempts++
		if err := s.store.UpdateVerification(r.Context(), v); err != nil {
			return fmt.Errorf("counting attempt: %w", err)
		}
		if v.Attempts >= capN {
			return s.tooManyAttempts(v)
		}
		left := capN - v.Attempts
		e := newError(http.StatusForbidden, api.CodeIncorrectCode, "incorrect code")
		e.body.AttemptsLeft = &left
		return e
	}
	v.Verified = true
	if err := s.store.UpdateVerification(r.Context(), v); err != nil {
		return fmt.Errorf("marking verified: %w", err)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) tooManyAttempts(v store.Verification) error {
	e := newError(http.StatusTooManyRequests, api.CodeTooManyAttempts,
		"too many incorrect codes for this session; request a new code after Retry-After")
	e.retryAfter = max(v.ExpiresAt.Sub(s.now()), time.Second)
	return e
}

// Registration ids are 14 bits in libsignal; 0 means "none" there.
const maxRegistrationID = 0x3fff

func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	var req api.RegisterRequest
	if err := decodeJSON(w, r, keysBody, &req); err != nil {
		return err
	}
	ik, err := curve.NewPublicKey(req.IdentityKey)
	if err != nil {
		return badRequest("identity_key is not a 33-byte Curve25519 public key")
	}
	if req.RegistrationID == 0 || req.RegistrationID > maxRegistrationID {
		return badRequest("registration_id must be between 1 and 16383")
	}
	up, err := s.checkKeys(ik, api.SetKeysRequest{
		SignedPreKey: &req.SignedPreKey, KyberLastResort: &req.KyberLastResort,
		PreKeys: req.PreKeys, KyberPreKeys: req.KyberPreKeys,
	})
	if err != nil {
		return err
	}

	defer s.lockSession(req.SessionID)()
	v, err := s.verification(r, req.SessionID)
	if err != nil {
		return err
	}
	if !v.Verified {
		return newError(http.StatusForbidden, api.CodeNotVerified, "the session's code has not been verified")
	}
	// Again here, not only when the code is sent: a session opened before a withdrawal
	// must not complete after it.
	if err := s.checkMarket(r.Context(), v.Number); err != nil {
		return err
	}
	password := randomToken(32) // 256 bits
	// SHA-256, not a slow password hash: the secret is 256 random bits, so there is
	// nothing to brute-force, and a slow hash would tax every authenticated request.
	sum := sha256.Sum256([]byte(password))
	acct, replaced, err := s.store.Register(r.Context(), v.Number, req.IdentityKey, store.Device{
		ID: 1, RegistrationID: req.RegistrationID, CredentialHash: sum[:], CreatedAt: s.now(),
	})
	if err != nil {
		return fmt.Errorf("registering: %w", err)
	}
	if replaced {
		// The old devices are gone; their connections must not receive what is queued for
		// the new device 1 (same account, same device id) from now on.
		s.disconnectAccount(acct.ID, "account re-registered")
	}
	if err := s.store.SetKeys(r.Context(), acct.ID, 1, up); err != nil {
		return fmt.Errorf("storing registration keys: %w", err)
	}
	// Logged before the answer: a contact must never be shown a key the log lacks.
	if err := s.kt.syncAccount(r.Context(), acct.ID); err != nil {
		return err
	}
	// One registration per verified code.
	if err := s.store.DeleteVerification(r.Context(), v.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("closing verification: %w", err)
	}
	writeJSON(w, http.StatusOK, api.RegisterResponse{AccountID: acct.ID, DeviceID: 1, Password: password, Reregistered: replaced})
	return nil
}
