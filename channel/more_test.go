package channel

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestKeys(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	a, err := GenerateSigningKey(bytes.NewReader(seed))
	wantOK(t, "GenerateSigningKey", err)
	b, err := NewSigningKey(a.Bytes())
	wantOK(t, "NewSigningKey", err)
	if !a.Public().Equal(b.Public()) || !bytes.Equal(a.Bytes(), seed) {
		t.Errorf("NewSigningKey(Bytes()) = key %v, want %v", b.Public(), a.Public())
	}
	if _, err := GenerateSigningKey(bytes.NewReader(seed[:31])); err == nil {
		t.Errorf("GenerateSigningKey(31 bytes of rand) = nil error, want one")
	}
	if _, err := NewSigningKey(seed[:31]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("NewSigningKey(31 bytes) = %v, want ErrInvalidKey", err)
	}
	identity := append([]byte{1}, make([]byte, 31)...)
	order4 := append(make([]byte, 31), 0x80) // y = 0: (±sqrt(-1), 0), of order 4
	for _, in := range [][]byte{nil, make([]byte, 32), make([]byte, 33), identity, order4, bytes.Repeat([]byte{0xff}, 32)} {
		if _, err := NewPublicKey(in); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewPublicKey(%x) = %v, want ErrInvalidKey", in, err)
		}
	}
	p, err := NewPublicKey(a.Public().Bytes())
	if err != nil || !p.Equal(a.Public()) || p.String() != a.Public().String() {
		t.Errorf("NewPublicKey(Bytes()) = %v, %v, want %v", p, err, a.Public())
	}
	if (PublicKey{}).verify([]byte("m"), make([]byte, 64)) {
		t.Errorf("zero key verified a signature")
	}
}

func TestErrorText(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{postErr(7, ErrAltered, ""), "channel post 7: altered post: signature does not match"},
		{postErr(7, ErrForged, "key %s", "ab"), "channel post 7: forged post: not signed by the channel: key ab"},
		{&GapError{From: 3, To: 3}, "channel post 3: posts missing"},
		{&GapError{From: 3, To: 5}, "channel posts 3 to 5: posts missing"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestNoticeInvalid(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	ok := Notice{Seq: 1, Action: ActionRestrict, Jurisdiction: "FR", Reason: "r", Time: time.Unix(1, 0)}
	n, err := SignNotice(key, ok)
	wantOK(t, "SignNotice", err)
	if n.Action.String() != "restricted" || ActionRemove.String() != "removed" || Action(0).String() != "action(0)" {
		t.Errorf("Action.String() = %q, %q, %q", n.Action, ActionRemove, Action(0))
	}
	for _, tt := range []struct {
		name string
		f    func(*Notice)
	}{
		{"no action", func(n *Notice) { n.Action = 0 }},
		{"lowercase jurisdiction", func(n *Notice) { n.Jurisdiction = "fr" }},
		{"three-letter jurisdiction", func(n *Notice) { n.Jurisdiction = "FRA" }},
		{"removal with a jurisdiction", func(n *Notice) { n.Action = ActionRemove }},
		{"no reason", func(n *Notice) { n.Reason = "" }},
		{"long reason", func(n *Notice) { n.Reason = strings.Repeat("x", MaxReasonLen+1) }},
		{"genesis", func(n *Notice) { n.Seq = 0 }},
	} {
		n := ok
		tt.f(&n)
		if _, err := SignNotice(key, n); !errors.Is(err, ErrMalformed) {
			t.Errorf("SignNotice(%s) = %v, want ErrMalformed", tt.name, err)
		}
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), nil)
	if _, err := SignNotice(ec, ok); err == nil {
		t.Errorf("SignNotice(ECDSA key) = nil error, want one")
	}
	b := n.Bytes()
	for name, in := range map[string][]byte{
		"truncated":     b[:len(b)-1],
		"trailing byte": append(append([]byte{}, b...), 0),
		"version 0":     append([]byte{0}, b[1:]...),
	} {
		if _, err := ParseNotice(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseNotice(%s) = %v, want ErrMalformed", name, err)
		}
	}
}

func TestHead(t *testing.T) {
	f := newFixture(t)
	admin := newKey(t)
	f.publish(f.owner, Delegation{Key: admin.Public(), From: 2}.Draft(f.clock))
	f.text(admin, "hi")
	head, err := f.author.SignHead(f.owner, f.clock)
	wantOK(t, "SignHead", err)
	if head.Channel() != f.author.ID() || head.Seq() != 2 || head.Hash() != f.server.get(2).Hash() ||
		!head.Time().Equal(f.clock) || len(head.Grants()) != 1 || !head.Grants()[0].Key.Equal(admin.Public()) {
		t.Errorf("SignHead() = %v %d %v %v %v, want the newest post and the admin", head.Channel(), head.Seq(), head.Hash(), head.Time(), head.Grants())
	}

	// The owner's own head, naming other admin keys at the newest post: a fork.
	other := *head
	other.grants = nil
	other.sig = f.owner.sign(other.signed())
	v := f.subscriber()
	wantOK(t, "AcceptPage", second(v.AcceptPage(f.server.page(1, 2), nil)))
	wantErr(t, "CheckHead(other admins)", v.CheckHead(&other), ErrFork)
	wantOK(t, "CheckHead", v.CheckHead(head))

	b := head.Bytes()
	for name, in := range map[string][]byte{
		"truncated":       b[:len(b)-1],
		"trailing byte":   append(append([]byte{}, b...), 0),
		"count too large": func() []byte { c := bytes.Clone(b); c[66] = 2; return c }(),
		"zero grant key":  func() []byte { c := bytes.Clone(b); copy(c[67:99], make([]byte, 32)); return c }(),
		"grant from 0":    func() []byte { c := bytes.Clone(b); copy(c[99:107], make([]byte, 8)); return c }(),
		"time past 2^63":  func() []byte { c := bytes.Clone(b); c[57] = 0x80; return c }(),
		"another version": append([]byte{2}, b[1:]...),
	} {
		if _, err := ParseHead(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHead(%s) = %v, want ErrMalformed", name, err)
		}
	}

	// A head at the genesis starts a full Verifier; one naming another genesis is a fork.
	g := f.server.get(0)
	v0 := f.subscriber()
	h0, err := v0.SignHead(f.owner, f.clock)
	wantOK(t, "SignHead(0)", err)
	v, err = NewVerifierAt(g, h0)
	wantOK(t, "NewVerifierAt(head 0)", err)
	wantOK(t, "AcceptPage", second(v.AcceptPage(f.server.page(1, 2), nil)))
	bad := *h0
	bad.hash[0] ^= 1
	bad.sig = f.owner.sign(bad.signed())
	wantErr(t, "NewVerifierAt(head of another genesis)", second(NewVerifierAt(g, &bad)), ErrFork)
}

func TestNewVerifierInvalid(t *testing.T) {
	f := newFixture(t)
	f.text(f.owner, "x")
	wantErr(t, "NewVerifier(post 1)", second(NewVerifier(f.server.get(1))), ErrMalformed)
	b := f.server.stored[0]
	b = append(bytes.Clone(b[:len(b)-1]), b[len(b)-1]^1)
	g, err := ParsePost(b)
	wantOK(t, "ParsePost", err)
	wantErr(t, "NewVerifier(altered genesis)", second(NewVerifier(g)), ErrAltered)
}

func TestPostFields(t *testing.T) {
	f := newFixture(t)
	admin := newKey(t)
	p1 := f.text(f.owner, "x")
	d := f.publish(f.owner, Delegation{Key: admin.Public(), From: 4, Until: 9}.Draft(f.clock))
	r := f.publish(f.owner, Revocation{Key: admin.Public(), From: 4}.Draft(f.clock))
	if d.Prev() != p1.Hash() || !d.Time().Equal(f.clock.Add(-2*time.Minute)) || d.Signer() != f.owner.Public() {
		t.Errorf("delegation post: prev %v, time %v, want %v, %v", d.Prev(), d.Time(), p1.Hash(), f.clock.Add(-2*time.Minute))
	}
	if got := d.Delegation(); got == nil || *got != (Delegation{Key: admin.Public(), From: 4, Until: 9}) {
		t.Errorf("Delegation() = %+v", got)
	}
	if got := r.Revocation(); got == nil || *got != (Revocation{Key: admin.Public(), From: 4}) {
		t.Errorf("Revocation() = %+v", got)
	}
	if p1.Delegation() != nil || p1.Revocation() != nil || p1.Info() != nil || p1.Withheld() || !p1.Withhold().Withheld() {
		t.Errorf("post 1 has control fields, or Withhold does not withhold")
	}
	if KindRevoke.String() != "revoke" || Kind(9).String() != "kind(9)" {
		t.Errorf("Kind.String() = %q, %q", KindRevoke, Kind(9))
	}
	if _, err := f.author.Next(f.owner, Draft{Kind: KindPost, Body: make([]byte, MaxBodySize+1), Time: f.clock}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Next(body over the limit) = %v, want ErrMalformed", err)
	}
	if _, err := f.author.Next(f.owner, Draft{Kind: KindPost}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Next(no time) = %v, want ErrMalformed", err)
	}

	// AcceptWithheld takes a withheld post with its notice directly.
	opPub, op, _ := ed25519.GenerateKey(nil)
	v := f.subscriber()
	v.SetOperatorKey(opPub)
	n, err := SignNotice(op, Notice{Channel: p1.Channel(), Seq: 1, Post: p1.Hash(), Action: ActionRemove, Reason: "spam", Time: f.clock})
	wantOK(t, "SignNotice", err)
	wantOK(t, "AcceptWithheld", second(v.AcceptWithheld(p1.Withhold(), n)))
	if v.Owner() != f.owner.Public() || v.Genesis().Hash() != f.server.get(0).Hash() || v.Info().Handle != "bastion_news" {
		t.Errorf("Verifier accessors disagree with the genesis")
	}
}
