package protocol

import (
	"encoding/hex"
	"testing"

	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/internal/primitives"
)

// Known answers for a chain step and the message keys it yields, from libsignal
// rust/protocol/src/ratchet/keys.rs (test_chain_key_derivation) at v0.90.0.
func TestChainKeyDerivation(t *testing.T) {
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	seed := unhex("8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f")
	wantCipher := "bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217"
	wantMAC := "c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b"
	wantNext := "28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d"

	mac := primitives.NewMAC()
	msgSeed, next := chainStep(mac, seed)
	keys := deriveMessageKeys(mac, msgSeed[:])
	if got := hex.EncodeToString(keys.cipherKey[:]); got != wantCipher {
		t.Errorf("cipher key = %s, want %s", got, wantCipher)
	}
	if got := hex.EncodeToString(keys.macKey[:]); got != wantMAC {
		t.Errorf("mac key = %s, want %s", got, wantMAC)
	}
	if got := hex.EncodeToString(next[:]); got != wantNext {
		t.Errorf("next chain key = %s, want %s", got, wantNext)
	}
}

func TestTorsionFree(t *testing.T) {
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		u, _ := hex.DecodeString(h)
		k, err := curve.NewPublicKey(append([]byte{curve.TypeDjb}, u...))
		if err != nil {
			t.Fatal(err)
		}
		if torsionFree(k) {
			t.Errorf("torsionFree(low order %s) = true, want false", h)
		}
	}
	for range 20 {
		k, err := curve.GeneratePrivateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !torsionFree(k.PublicKey()) {
			t.Errorf("torsionFree(%x) = false for a generated key, want true", k.PublicKey().Bytes())
		}
	}
}
