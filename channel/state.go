package channel

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"slices"
)

// Saved state layout (big-endian), for the Verifier's own storage:
//
//	version 1 || len(4) genesis || len(1) operator key || last(8) || lastHash(32) ||
//	fresh(8) || wantOK(1) || wantSeq(8) || wantHash(32) || count(2) grants(56 each) ||
//	count(4) signers(32 each) || count(4) entries (seq(8) hash(32) kind(1) signer(4),
//	ascending seq) || count(4) deleted seqs(8 each, ascending)
const stateVersion = 1

// MarshalBinary saves the Verifier's state, so that a client or server can resume
// without verifying the history again. The state is as sensitive as the
// subscriber's list of channels: keep it in the client's own storage.
func (v *Verifier) MarshalBinary() ([]byte, error) {
	g := v.genesis.Bytes()
	b := []byte{stateVersion}
	b = binary.BigEndian.AppendUint32(b, uint32(len(g)))
	b = append(b, g...)
	b = append(b, byte(len(v.operator)))
	b = append(b, v.operator...)
	b = binary.BigEndian.AppendUint64(b, v.last)
	b = append(b, v.lastHash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(v.fresh))
	var want byte
	if v.wantOK {
		want = 1
	}
	b = append(b, want)
	b = binary.BigEndian.AppendUint64(b, v.wantSeq)
	b = append(b, v.wantHash[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v.grants)))
	for _, gr := range v.grants {
		b = append(b, gr.Key.k[:]...)
		b = binary.BigEndian.AppendUint64(b, gr.From)
		b = binary.BigEndian.AppendUint64(b, gr.Until)
		b = binary.BigEndian.AppendUint64(b, gr.RevokedFrom)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(v.signers)))
	for _, k := range v.signers {
		b = append(b, k.k[:]...)
	}
	seqs := make([]uint64, 0, len(v.entries))
	for s := range v.entries {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	b = binary.BigEndian.AppendUint32(b, uint32(len(seqs)))
	for _, s := range seqs {
		e := v.entries[s]
		b = binary.BigEndian.AppendUint64(b, s)
		b = append(b, e.hash[:]...)
		b = append(b, byte(e.kind))
		b = binary.BigEndian.AppendUint32(b, e.signer)
	}
	del := make([]uint64, 0, len(v.deleted))
	for s := range v.deleted {
		del = append(del, s)
	}
	slices.Sort(del)
	b = binary.BigEndian.AppendUint32(b, uint32(len(del)))
	for _, s := range del {
		b = binary.BigEndian.AppendUint64(b, s)
	}
	return b, nil
}

// stateReader reads the saved state, remembering the first error.
type stateReader struct {
	b   []byte
	bad bool
}

func (r *stateReader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		// Zeros for the fixed-size readers; the caller checks r.bad. Never n of
		// them: n may be a corrupt length of gigabytes.
		r.bad = true
		return make([]byte, 64)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *stateReader) u8() byte       { return r.take(1)[0] }
func (r *stateReader) u16() uint16    { return binary.BigEndian.Uint16(r.take(2)) }
func (r *stateReader) u32() uint32    { return binary.BigEndian.Uint32(r.take(4)) }
func (r *stateReader) u64() uint64    { return binary.BigEndian.Uint64(r.take(8)) }
func (r *stateReader) hash() (h Hash) { copy(h[:], r.take(32)); return h }

// count reads a count of items of size each and refuses one larger than the rest
// of the input, so that a corrupt count cannot make it allocate.
func (r *stateReader) count(n uint32, size int) int {
	if uint64(n)*uint64(size) > uint64(len(r.b)) {
		r.bad = true
		return 0
	}
	return int(n)
}

// UnmarshalVerifier restores a Verifier saved by [Verifier.MarshalBinary]. It
// checks the genesis signature and the state's consistency, not the history the
// state summarises: that was verified before it was saved.
func UnmarshalVerifier(b []byte) (*Verifier, error) {
	bad := fmt.Errorf("%w: verifier state", ErrMalformed)
	r := &stateReader{b: b}
	if r.u8() != stateVersion {
		return nil, bad
	}
	gb := r.take(int(r.u32()))
	if r.bad {
		return nil, bad
	}
	g, err := ParsePost(gb)
	if err != nil {
		return nil, fmt.Errorf("verifier state: %w", err)
	}
	v, err := NewVerifier(g)
	if err != nil {
		return nil, fmt.Errorf("verifier state: %w", err)
	}
	v.signers, v.signerIx = nil, map[PublicKey]uint32{}
	delete(v.entries, 0)
	if op := r.take(int(r.u8())); len(op) > 0 {
		if len(op) != ed25519.PublicKeySize {
			return nil, bad
		}
		v.operator = slices.Clone(op)
	}
	v.last, v.lastHash = r.u64(), r.hash()
	if v.last >= MaxSeq {
		return nil, bad
	}
	v.fresh = int64(r.u64())
	switch r.u8() {
	case 0:
	case 1:
		v.wantOK = true
	default:
		return nil, bad
	}
	v.wantSeq, v.wantHash = r.u64(), r.hash()
	for range r.count(uint32(r.u16()), grantSize) {
		k, err := NewPublicKey(r.take(PublicKeySize))
		if err != nil {
			return nil, bad
		}
		v.grants = append(v.grants, Grant{Key: k, From: r.u64(), Until: r.u64(), RevokedFrom: r.u64()})
	}
	for range r.count(r.u32(), PublicKeySize) {
		k, err := NewPublicKey(r.take(PublicKeySize))
		if err != nil {
			return nil, bad
		}
		if _, dup := v.signerIx[k]; dup {
			return nil, bad
		}
		v.signerIndex(k)
	}
	prev := int64(-1)
	for range r.count(r.u32(), 8+32+1+4) {
		s, h, kind, signer := r.u64(), r.hash(), Kind(r.u8()), r.u32()
		if int64(s) <= prev || s > v.last || int(signer) >= len(v.signers) || kind > KindRevoke {
			return nil, bad
		}
		prev = int64(s)
		v.entries[s] = entry{hash: h, kind: kind, signer: signer}
	}
	prev = -1
	for range r.count(r.u32(), 8) {
		s := r.u64()
		if int64(s) <= prev {
			return nil, bad
		}
		prev = int64(s)
		v.deleted[s] = true
	}
	if r.bad || len(r.b) != 0 || len(v.signers) == 0 || !v.signers[0].Equal(v.owner) {
		return nil, bad
	}
	if e, ok := v.entries[0]; ok && e.hash != g.hash {
		return nil, bad
	}
	if e, ok := v.entries[v.last]; !ok || e.hash != v.lastHash {
		return nil, bad
	}
	return v, nil
}
