package kt

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/bastionchat/bastion/kt/vrf"
)

// lookupLabel separates Bastion's VRF inputs from any other use of the same
// VRF key, and versions them.
const lookupLabel = "bastion kt lookup v1\x00"

// maxLookupKey bounds a lookup key: an E.164 number has at most 16
// characters and usernames are short; the bound keeps VRF inputs small.
const maxLookupKey = 256

// LookupAlpha returns the VRF input for a lookup key: a fixed label, the
// kind (so that a username can never collide with a phone number), then the
// key. The key must already be in canonical form: E.164 ("+" and digits)
// for a phone number, the normalized username for a username; this package
// does not normalize.
func LookupAlpha(kind LookupKind, key string) ([]byte, error) {
	if kind != KindPhoneNumber && kind != KindUsername {
		return nil, fmt.Errorf("kt: invalid lookup kind %d", kind)
	}
	if key == "" || len(key) > maxLookupKey || !utf8.ValidString(key) {
		return nil, errors.New("kt: invalid lookup key")
	}
	alpha := make([]byte, 0, len(lookupLabel)+1+len(key))
	alpha = append(alpha, lookupLabel...)
	alpha = append(alpha, byte(kind))
	alpha = append(alpha, key...)
	return alpha, nil
}

// LookupIndex computes the log index for a lookup key and the proof that
// it is right. Only the server, which holds the VRF private key, calls it.
func LookupIndex(sk *vrf.PrivateKey, kind LookupKind, key string) (index [LookupIndexSize]byte, proof []byte, err error) {
	alpha, err := LookupAlpha(kind, key)
	if err != nil {
		return index, nil, err
	}
	beta, pi := sk.Prove(alpha)
	copy(index[:], beta)
	return index, pi, nil
}

// VerifyLookup checks the server's VRF proof for a lookup key and returns
// the log index it proves, the value a [LookupBinding] for that key must
// carry.
func VerifyLookup(pk *vrf.PublicKey, kind LookupKind, key string, proof []byte) (index [LookupIndexSize]byte, err error) {
	alpha, err := LookupAlpha(kind, key)
	if err != nil {
		return index, err
	}
	beta, err := pk.Verify(alpha, proof)
	if err != nil {
		return index, fmt.Errorf("kt: lookup proof: %w", err)
	}
	copy(index[:], beta)
	return index, nil
}
