package protocol

import (
	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"

	"github.com/bastionchat/bastion/protocol/curve"
)

// invEight is 8⁻¹ mod ℓ, the order of Curve25519's prime-order subgroup.
var invEight = func() *edwards25519.Scalar {
	var b [32]byte
	b[0] = 8
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		panic("protocol: bad scalar constant")
	}
	return s.Invert(s)
}()

// torsionFree reports whether k is in Curve25519's prime-order subgroup, the check
// libsignal makes on an initiator's base key before running PQXDH as the responder
// (PublicKey::is_canonical in rust/core/src/curve.rs). X25519 clamping would hide a
// small-order component, so without this check one base key would have eight
// encodings that all give the same session: a malleability libsignal refuses, and so
// do we.
//
// The u-coordinate is mapped to the Edwards point with y = (u-1)/(u+1) and a positive
// x; P is torsion-free exactly when P = [8⁻¹]([8]P).
func torsionFree(k *curve.PublicKey) bool {
	var u, one, num, den, y field.Element
	if _, err := u.SetBytes(k.U()); err != nil {
		return false
	}
	one.One()
	den.Add(&u, &one)
	if den.Equal(new(field.Element)) == 1 {
		return false // u = -1 has no Edwards image
	}
	num.Subtract(&u, &one)
	y.Multiply(&num, den.Invert(&den))
	p, err := new(edwards25519.Point).SetBytes(y.Bytes())
	if err != nil {
		return false // on the twist, not the curve
	}
	q := new(edwards25519.Point).MultByCofactor(p)
	q.ScalarMult(invEight, q)
	return q.Equal(p) == 1
}
