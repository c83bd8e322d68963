package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/phone"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/protocol/curve"
)

// keysBody bounds a key upload: 100 Kyber prekeys of 1,569 bytes with signatures, in
// base64, are about 220 KB.
const keysBody = 1 << 20

const (
	kyberKeyType = 0x08     // libsignal's key-type byte for Kyber-1024
	kyberKeySize = 1 + 1568 // type byte and the Kyber-1024 public key
)

// checkKeys validates an upload against the account's identity key: every key's encoding,
// and every signed key's XEdDSA signature. It is the only cryptography the server does.
func (s *Server) checkKeys(ik *curve.PublicKey, req api.SetKeysRequest) (store.KeyUpload, error) {
	var up store.KeyUpload
	maxN := s.cfg.Limits.MaxPreKeys
	if len(req.PreKeys) > maxN || len(req.KyberPreKeys) > maxN {
		return up, badRequest(fmt.Sprintf("at most %d one-time prekeys of each kind per upload", maxN))
	}
	if k := req.SignedPreKey; k != nil {
		if err := checkSigned(ik, *k, false); err != nil {
			return up, fieldError("signed_prekey", err)
		}
		up.SignedPreKey = &store.SignedPreKey{ID: k.KeyID, PublicKey: k.PublicKey, Signature: k.Signature}
	}
	if k := req.KyberLastResort; k != nil {
		if err := checkSigned(ik, *k, true); err != nil {
			return up, fieldError("kyber_last_resort", err)
		}
		up.LastResortKyber = &store.SignedPreKey{ID: k.KeyID, PublicKey: k.PublicKey, Signature: k.Signature}
	}
	for i, k := range req.PreKeys {
		if _, err := curve.NewPublicKey(k.PublicKey); err != nil {
			return up, badRequest(fmt.Sprintf("prekeys[%d]: not a 33-byte Curve25519 public key", i))
		}
		up.PreKeys = append(up.PreKeys, store.PreKey{ID: k.KeyID, PublicKey: k.PublicKey})
	}
	for i, k := range req.KyberPreKeys {
		if err := checkSigned(ik, k, true); err != nil {
			return up, fieldError(fmt.Sprintf("kyber_prekeys[%d]", i), err)
		}
		up.KyberPreKeys = append(up.KyberPreKeys, store.SignedPreKey{ID: k.KeyID, PublicKey: k.PublicKey, Signature: k.Signature})
	}
	return up, nil
}

var errBadSignature = errors.New("signature does not verify under the identity key")

func checkSigned(ik *curve.PublicKey, k api.SignedPreKey, kyber bool) error {
	if kyber {
		if len(k.PublicKey) != kyberKeySize || k.PublicKey[0] != kyberKeyType {
			return errors.New("not a 1569-byte Kyber-1024 public key (type byte 0x08)")
		}
	} else if _, err := curve.NewPublicKey(k.PublicKey); err != nil {
		return errors.New("not a 33-byte Curve25519 public key")
	}
	if len(k.Signature) != curve.SignatureSize || !ik.Verify(k.PublicKey, k.Signature) {
		return errBadSignature
	}
	return nil
}

func fieldError(field string, err error) *httpError {
	if errors.Is(err, errBadSignature) {
		return newError(http.StatusBadRequest, api.CodeBadSignature, field+": "+err.Error())
	}
	return badRequest(field + ": " + err.Error())
}

func (s *Server) setKeys(w http.ResponseWriter, r *http.Request, d device) error {
	var req api.SetKeysRequest
	if err := decodeJSON(w, r, keysBody, &req); err != nil {
		return err
	}
	acct, err := s.store.Account(r.Context(), d.account)
	if err != nil {
		return fmt.Errorf("loading account: %w", err)
	}
	ik, err := curve.NewPublicKey(acct.IdentityKey)
	if err != nil {
		return fmt.Errorf("stored identity key: %w", err)
	}
	up, err := s.checkKeys(ik, req)
	if err != nil {
		return err
	}
	if err := s.store.SetKeys(r.Context(), d.account, d.id, up); err != nil {
		return fmt.Errorf("storing keys: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) preKeyCount(w http.ResponseWriter, r *http.Request, d device) error {
	ec, ky, err := s.store.PreKeyCounts(r.Context(), d.account, d.id)
	if err != nil {
		return fmt.Errorf("counting prekeys: %w", err)
	}
	writeJSON(w, http.StatusOK, api.PreKeyCount{Count: ec, KyberCount: ky})
	return nil
}

var errNoAccount = newError(http.StatusNotFound, api.CodeNotFound, "no such account or device")

func (s *Server) bundle(w http.ResponseWriter, r *http.Request, d device) error {
	target, err := uuid.Parse(r.PathValue("account"))
	if err != nil {
		return badRequest("account is not a UUID")
	}
	dev := r.PathValue("device")
	var only uint32
	if dev != "*" {
		n, err := strconv.ParseUint(dev, 10, 32)
		if err != nil || n == 0 {
			return badRequest(`device is a positive integer or "*"`)
		}
		only = uint32(n)
	}
	// Per (requester, target) pair: each fetch consumes one-time keys, and a requester
	// draining someone's keys would degrade their sessions to the last-resort key.
	if err := s.limit(r.Context(), "bundle_pair", s.bundlePair, d.account[:], target[:]); err != nil {
		return err
	}
	acct, err := s.store.Account(r.Context(), target)
	if errors.Is(err, store.ErrNotFound) {
		return errNoAccount
	}
	if err != nil {
		return fmt.Errorf("loading account: %w", err)
	}
	var ids []uint32
	if only != 0 {
		ids = []uint32{only}
	} else {
		devs, err := s.store.Devices(r.Context(), target)
		if err != nil {
			return fmt.Errorf("listing devices: %w", err)
		}
		for _, dv := range devs {
			ids = append(ids, dv.ID)
		}
	}
	resp := api.BundleResponse{IdentityKey: acct.IdentityKey, Devices: []api.DeviceBundle{}}
	for _, id := range ids {
		b, err := s.store.TakeBundle(r.Context(), target, id)
		switch {
		case errors.Is(err, store.ErrNoPreKeys) && only == 0:
			continue // a device that has not uploaded keys yet cannot be reached
		case errors.Is(err, store.ErrNoPreKeys):
			return newError(http.StatusNotFound, api.CodeNoPreKeys, "the device has no prekeys")
		case errors.Is(err, store.ErrNotFound):
			return errNoAccount
		case err != nil:
			return fmt.Errorf("taking bundle: %w", err)
		}
		db := api.DeviceBundle{
			DeviceID:        b.DeviceID,
			RegistrationID:  b.RegistrationID,
			SignedPreKey:    signedOut(b.SignedPreKey),
			KyberPreKey:     signedOut(b.KyberPreKey),
			KyberLastResort: b.KyberLastResort,
		}
		if b.PreKey != nil {
			db.PreKey = &api.PreKey{KeyID: b.PreKey.ID, PublicKey: b.PreKey.PublicKey}
		}
		if db.KT, err = s.kt.deviceBinding(r.Context(), target, b.DeviceID, acct.IdentityKey); err != nil {
			return err
		}
		resp.Devices = append(resp.Devices, db)
	}
	if len(resp.Devices) == 0 {
		return newError(http.StatusNotFound, api.CodeNoPreKeys, "no device of the account has prekeys")
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func signedOut(k store.SignedPreKey) api.SignedPreKey {
	return api.SignedPreKey{KeyID: k.ID, PublicKey: k.PublicKey, Signature: k.Signature}
}

// lookupNumber maps a phone number to its account id, for a registered caller, at a rate
// that makes enumerating the directory impractical.
func (s *Server) lookupNumber(w http.ResponseWriter, r *http.Request, d device) error {
	var req api.LookupRequest
	if err := decodeJSON(w, r, smallBody, &req); err != nil {
		return err
	}
	number, err := phone.Normalise(req.Number)
	if err != nil {
		return errInvalidNumber
	}
	if err := s.limit(r.Context(), "lookup", s.lookup, d.account[:]); err != nil {
		return err
	}
	acct, err := s.store.AccountByNumber(r.Context(), number)
	if errors.Is(err, store.ErrNotFound) {
		return newError(http.StatusNotFound, api.CodeNotFound, "no account has this number")
	}
	if err != nil {
		return fmt.Errorf("looking up number: %w", err)
	}
	ktl, err := s.kt.lookupBinding(r.Context(), acct.ID, number)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.LookupResponse{AccountID: acct.ID, KT: ktl})
	return nil
}
