package fingerprint_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/bastionchat/bastion/interop/libsignal"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/fingerprint"
)

// Go and libsignal compute the same safety numbers for the same inputs, displayable and
// scannable, and each accepts the other's scannable form from the other side.
func TestInteropSafetyNumbers(t *testing.T) {
	p := libsignal.StartForTest(t)
	type input struct {
		version, iterations int
		localID, remoteID   []byte
	}
	aci := func() []byte {
		b := make([]byte, 16)
		rand.Read(b)
		return b
	}
	inputs := []input{
		{fingerprint.Version, fingerprint.Iterations, aci(), aci()},
		{fingerprint.Version, fingerprint.Iterations, aci(), aci()},
		{1, fingerprint.Iterations, []byte("+14152222222"), []byte("+14153333333")},
		{fingerprint.Version, 2, aci(), aci()},
		{fingerprint.Version, 1024, []byte{}, aci()},
	}
	for i, in := range inputs {
		t.Run(fmt.Sprintf("%d_v%d_%d", i, in.version, in.iterations), func(t *testing.T) {
			lk, _ := curve.GeneratePrivateKey(nil)
			rk, _ := curve.GeneratePrivateKey(nil)
			ours, err := fingerprint.New(in.version, in.iterations, in.localID, lk.PublicKey(), in.remoteID, rk.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := p.Fingerprint(libsignal.FingerprintArgs{
				Version: in.version, Iterations: in.iterations,
				LocalID: in.localID, LocalKey: lk.PublicKey().Bytes(),
				RemoteID: in.remoteID, RemoteKey: rk.PublicKey().Bytes(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := ours.Displayable(); got != theirs.Displayable {
				t.Errorf("Displayable() = %s, libsignal %s", got, theirs.Displayable)
			}
			if got := ours.Scannable(); !bytes.Equal(got, theirs.Scannable) {
				t.Errorf("Scannable() = %s, libsignal %s", hex.EncodeToString(got), hex.EncodeToString(theirs.Scannable))
			}

			// The other side, as libsignal computes it, compared both ways.
			other, err := p.Fingerprint(libsignal.FingerprintArgs{
				Version: in.version, Iterations: in.iterations,
				LocalID: in.remoteID, LocalKey: rk.PublicKey().Bytes(),
				RemoteID: in.localID, RemoteKey: lk.PublicKey().Bytes(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := ours.Compare(other.Scannable); err != nil || !ok {
				t.Errorf("Compare(libsignal's other side) = %v, %v, want true", ok, err)
			}
			var eq struct {
				Equal bool `json:"equal"`
			}
			if err := p.Call("fingerprint_compare", map[string]any{"a": other.Scannable, "b": ours.Scannable()}, &eq); err != nil || !eq.Equal {
				t.Errorf("libsignal compare(our scannable) = %v, %v, want true", eq.Equal, err)
			}
			if err := p.Call("fingerprint_compare", map[string]any{"a": other.Scannable, "b": other.Scannable}, &eq); err != nil || eq.Equal {
				t.Errorf("libsignal compare(its own scannable) = %v, %v, want false", eq.Equal, err)
			}
		})
	}
}
