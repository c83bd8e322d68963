package channel

import (
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
)

// TestAttacks serves a subscriber a history with one misbehaviour each and checks
// that the subscriber refuses it with the error a client shows.
func TestAttacks(t *testing.T) {
	f := newFixture(t)
	f.posts(f.owner, 6)
	mallory := newKey(t) // the server's own key
	last := f.server.last()
	other := newFixture(t)
	other.text(other.owner, "elsewhere")

	tests := []struct {
		name string
		page []*Post
		want error
		// wantSeq is the post the error names (for a gap: the first missing one).
		wantSeq uint64
	}{
		{"forged", append(f.server.page(1, 3), f.server.forge(mallory, 4, "buy now")), ErrForged, 4},
		{"impersonated", append(f.server.page(1, 3), f.server.impersonate(mallory, 4, "buy now")), ErrAltered, 4},
		{"altered", append(f.server.page(1, 2), f.server.alter(3)), ErrAltered, 3},
		{"dropped", f.server.drop(1, last, 4), ErrGap, 4},
		{"reordered", f.server.swap(1, last, 3, 4), ErrReordered, 3},
		{"wrong channel", []*Post{other.server.get(1)}, ErrWrongChannel, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := f.subscriber()
			_, err := v.AcceptPage(tt.page, nil)
			wantErr(t, "AcceptPage", err, tt.want)
			if got := errSeq(err); got != tt.wantSeq {
				t.Errorf("AcceptPage error names post %d, want %d", got, tt.wantSeq)
			}
			// The posts before the bad one are accepted, nothing after it.
			if got, _ := v.Last(); got != tt.wantSeq-1 {
				t.Errorf("Last() = %d, want %d", got, tt.wantSeq-1)
			}
			// The honest rest of the history still verifies.
			_, err = v.AcceptPage(f.server.page(1, last), nil)
			wantOK(t, "AcceptPage(honest)", err)
		})
	}
}

func errSeq(err error) uint64 {
	var pe *Error
	var ge *GapError
	switch {
	case errors.As(err, &pe):
		return pe.Seq
	case errors.As(err, &ge):
		return ge.From
	}
	return 0
}

// TestStream delivers posts one by one, as a WebSocket push does.
func TestStream(t *testing.T) {
	f := newFixture(t)
	f.posts(f.owner, 4)
	v := f.subscriber()
	p1, p2, p3, p4 := f.server.get(1), f.server.get(2), f.server.get(3), f.server.get(4)

	wantOK(t, "Accept(1)", second(v.Accept(p1)))
	// 3 before 2: a gap of exactly post 2, until it arrives.
	_, err := v.Accept(p3)
	var gap *GapError
	if !errors.As(err, &gap) || gap.From != 2 || gap.To != 2 {
		t.Fatalf("Accept(3) after 1 = %v, want a gap of post 2", err)
	}
	wantOK(t, "Accept(2)", second(v.Accept(p2)))
	wantOK(t, "Accept(3)", second(v.Accept(p3)))
	// A redelivery is a harmless duplicate.
	wantErr(t, "Accept(3) again", second(v.Accept(p3)), ErrDuplicate)
	// An altered copy of a post already held is caught as altered.
	wantErr(t, "Accept(altered 2)", second(v.Accept(f.server.alter(2))), ErrAltered)
	wantOK(t, "Accept(4)", second(v.Accept(p4)))
}

func second[T any](_ T, err error) error { return err }

// TestFork: the owner's device (or a stolen owner key) signs two different posts
// at one place, and the server shows each to different subscribers.
func TestFork(t *testing.T) {
	f := newFixture(t)
	f.posts(f.owner, 2)
	// Branch B: the same key signs another post 3 onto post 2.
	prev := f.server.get(2)
	other, err := Sign(f.owner, prev.Channel(), 3, prev.Hash(), Draft{Kind: KindPost, Body: []byte("other"), Time: f.clock})
	wantOK(t, "Sign", err)
	f.posts(f.owner, 2) // branch A continues: 3, 4

	t.Run("two posts at one place", func(t *testing.T) {
		v := f.subscriber()
		wantOK(t, "AcceptPage(1..3)", second(v.AcceptPage(f.server.page(1, 3), nil)))
		wantErr(t, "Accept(other 3)", second(v.Accept(other)), ErrFork)
	})
	t.Run("post on another branch", func(t *testing.T) {
		v := f.subscriber()
		wantOK(t, "AcceptPage(1..2)", second(v.AcceptPage(f.server.page(1, 2), nil)))
		wantOK(t, "Accept(other 3)", second(v.Accept(other)))
		wantErr(t, "Accept(4 of branch A)", second(v.Accept(f.server.get(4))), ErrFork)
	})
	t.Run("owner head names another post", func(t *testing.T) {
		v := f.subscriber()
		wantOK(t, "AcceptPage(1..2)", second(v.AcceptPage(f.server.page(1, 2), nil)))
		wantOK(t, "Accept(other 3)", second(v.Accept(other)))
		head, err := f.author.SignHead(f.owner, f.clock)
		wantOK(t, "SignHead", err)
		wantErr(t, "CheckHead(owner's head)", v.CheckHead(head), ErrGap)
		head3 := signHeadAt(t, f, 3)
		wantErr(t, "CheckHead(owner's head at 3)", v.CheckHead(head3), ErrFork)
	})
}

// signHeadAt signs the owner's head as of post seq, using a Verifier that
// accepted the honest history up to it.
func signHeadAt(t *testing.T, f *fixture, seq uint64) *Head {
	t.Helper()
	v := f.subscriber()
	wantOK(t, "AcceptPage", second(v.AcceptPage(f.server.page(1, seq), nil)))
	h, err := v.SignHead(f.owner, f.clock)
	wantOK(t, "SignHead", err)
	return h
}

func TestDelegation(t *testing.T) {
	f := newFixture(t)
	alice, bob, stranger := newKey(t), newKey(t), newKey(t)
	f.text(f.owner, "hello")                                                            // 1
	f.publish(f.owner, Delegation{Key: alice.Public(), From: 3}.Draft(f.clock))         // 2
	f.publish(f.owner, Delegation{Key: bob.Public(), From: 4, Until: 6}.Draft(f.clock)) // 3
	f.text(alice, "alice at 4")                                                         // 4
	f.text(bob, "bob at 5")                                                             // 5
	v := f.subscriber()
	wantOK(t, "AcceptPage(1..5)", second(v.AcceptPage(f.server.page(1, 5), nil)))

	// Bob's window ended at 6; a stranger was never delegated; only the owner
	// delegates.
	for _, tt := range []struct {
		name string
		key  *SigningKey
		d    Draft
		want error
	}{
		{"expired delegation", bob, Draft{Kind: KindPost, Body: []byte("late")}, ErrForged},
		{"never delegated", stranger, Draft{Kind: KindPost, Body: []byte("hi")}, ErrForged},
		{"admin delegates", alice, Delegation{Key: stranger.Public(), From: 7}.Draft(f.clock), ErrForged},
		{"admin revokes", alice, Revocation{Key: bob.Public(), From: 6}.Draft(f.clock), ErrForged},
		{"revoke unknown key", f.owner, Revocation{Key: stranger.Public(), From: 6}.Draft(f.clock), ErrInvalidEntry},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.d.Time = f.clock
			p, err := v.Next(tt.key, tt.d)
			wantOK(t, "Next", err)
			wantErr(t, "Accept", second(v.Accept(p)), tt.want)
		})
	}

	// Alice's key is stolen: the thief posts at 6 and the server, colluding, serves
	// it. The owner revokes Alice from 6 at 7; after that her key is refused, and
	// post 6 is reported void.
	f.text(alice, "thief at 6")                                                        // 6
	rev := f.publish(f.owner, Revocation{Key: alice.Public(), From: 6}.Draft(f.clock)) // 7
	wantOK(t, "Accept(6)", second(v.Accept(f.server.get(6))))
	res, err := v.Accept(rev)
	wantOK(t, "Accept(revocation)", err)
	if !slices.Equal(res.Voided, []uint64{6}) {
		t.Errorf("Accept(revocation).Voided = %v, want [6]", res.Voided)
	}
	p, err := v.Next(alice, Draft{Kind: KindPost, Body: []byte("thief at 8"), Time: f.clock})
	wantOK(t, "Next", err)
	wantErr(t, "Accept(revoked admin)", second(v.Accept(p)), ErrRevoked)
	// Post 4, before the revocation point, stays valid.
	if err := v.authorizeKey(alice.Public(), 4); err != nil {
		t.Errorf("authorizeKey(alice, 4) = %v, want nil", err)
	}
	// A re-delegation gives the key back its power from its own start.
	f.publish(f.owner, Delegation{Key: alice.Public(), From: 9}.Draft(f.clock)) // 8
	f.text(alice, "alice again")                                                // 9
	wantOK(t, "AcceptPage(8..9)", second(v.AcceptPage(f.server.page(8, 9), nil)))
	wantOK(t, "CheckHead", v.CheckHead(signHeadAt(t, f, 9)))
}

func TestEditDelete(t *testing.T) {
	f := newFixture(t)
	admin := newKey(t)
	f.text(f.owner, "typo")                                                      // 1
	f.publish(f.owner, Delegation{Key: admin.Public(), From: 3}.Draft(f.clock))  // 2
	f.publish(f.owner, Draft{Kind: KindEdit, Ref: 1, Body: []byte("fixed")})     // 3
	f.publish(admin, Draft{Kind: KindEdit, Ref: 1, Body: []byte("fixed again")}) // 4
	f.text(admin, "spam")                                                        // 5
	f.publish(admin, Draft{Kind: KindDelete, Ref: 5})                            // 6
	v := f.subscriber()
	wantOK(t, "AcceptPage", second(v.AcceptPage(f.server.page(1, 6), nil)))
	if got := f.server.get(3); got.Kind() != KindEdit || got.Ref() != 1 || string(got.Body()) != "fixed" {
		t.Errorf("post 3 = %v of %d %q, want edit of 1 \"fixed\"", got.Kind(), got.Ref(), got.Body())
	}

	for _, tt := range []struct {
		name string
		key  *SigningKey
		d    Draft
		want error
	}{
		{"edit deleted", f.owner, Draft{Kind: KindEdit, Ref: 5, Body: []byte("x")}, ErrInvalidEntry},
		{"delete deleted", f.owner, Draft{Kind: KindDelete, Ref: 5}, ErrInvalidEntry},
		{"edit a delegation", f.owner, Draft{Kind: KindEdit, Ref: 2, Body: []byte("x")}, ErrInvalidEntry},
		{"delete an edit", f.owner, Draft{Kind: KindDelete, Ref: 3}, ErrInvalidEntry},
		{"delete the genesis", f.owner, Draft{Kind: KindDelete, Ref: 0}, ErrMalformed},
		{"edit the future", f.owner, Draft{Kind: KindEdit, Ref: 7, Body: []byte("x")}, ErrMalformed},
		{"stranger edits", newKey(t), Draft{Kind: KindEdit, Ref: 1, Body: []byte("x")}, ErrForged},
		{"stranger deletes", newKey(t), Draft{Kind: KindDelete, Ref: 1}, ErrForged},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.d.Time = f.clock
			p, err := v.Next(tt.key, tt.d)
			if errors.Is(tt.want, ErrMalformed) {
				wantErr(t, "Next", err, ErrMalformed)
				return
			}
			wantOK(t, "Next", err)
			wantErr(t, "Accept", second(v.Accept(p)), tt.want)
		})
	}
	// A tampered edit is as detectable as a tampered post.
	v2 := f.subscriber()
	wantOK(t, "AcceptPage(1..2)", second(v2.AcceptPage(f.server.page(1, 2), nil)))
	wantErr(t, "Accept(altered edit)", second(v2.Accept(f.server.alter(3))), ErrAltered)
}

// TestWithheld: notice and action. The operator restricts a post; the subscriber
// gets the signed header and a statement of reasons instead of a silent hole.
func TestWithheld(t *testing.T) {
	f := newFixture(t)
	f.posts(f.owner, 3)
	opPub, opKey, err := ed25519.GenerateKey(nil)
	wantOK(t, "GenerateKey", err)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	p2 := f.server.get(2)
	notice := func(key ed25519.PrivateKey, seq uint64, h Hash) *Notice {
		n, err := SignNotice(key, Notice{Channel: p2.Channel(), Seq: seq, Post: h, Action: ActionRestrict,
			Jurisdiction: "DE", Reason: "Court order 123/26 (StGB §86a)", Time: f.clock})
		wantOK(t, "SignNotice", err)
		n2, err := ParseNotice(n.Bytes())
		wantOK(t, "ParseNotice", err)
		return n2
	}
	held, err := ParsePost(p2.Withhold().Bytes())
	wantOK(t, "ParsePost(withheld)", err)
	if held.Body() != nil || held.Hash() != p2.Hash() {
		t.Fatalf("withheld post: body %q, hash %v; want no body, hash %v", held.Body(), held.Hash(), p2.Hash())
	}

	for _, tt := range []struct {
		name     string
		notice   *Notice
		operator bool
		want     error
	}{
		{"silent hole", nil, true, ErrWithheld},
		{"notice by someone else", notice(otherKey, 2, p2.Hash()), true, ErrWithheld},
		{"notice for another post", notice(opKey, 2, f.server.get(3).Hash()), true, ErrWithheld},
		{"no operator key", notice(opKey, 2, p2.Hash()), false, ErrWithheld},
		{"valid notice", notice(opKey, 2, p2.Hash()), true, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := f.subscriber()
			if tt.operator {
				v.SetOperatorKey(opPub)
			}
			var notices []*Notice
			if tt.notice != nil {
				notices = append(notices, tt.notice)
			}
			page := []*Post{f.server.get(1), held, f.server.get(3)}
			_, err := v.AcceptPage(page, notices)
			if tt.want == nil {
				wantOK(t, "AcceptPage", err)
				return
			}
			wantErr(t, "AcceptPage", err, tt.want)
		})
	}

	// A control post cannot be withheld: Withhold leaves it, and a withheld
	// encoding of one does not parse.
	rev := f.publish(f.owner, Delegation{Key: newKey(t).Public(), From: 6}.Draft(f.clock))
	if rev.Withhold() != rev {
		t.Errorf("Withhold(delegation) changed it")
	}
	b := p2.Withhold().Bytes()
	b[1] = byte(KindDelegate)
	wantErr(t, "ParsePost(withheld delegation)", second(ParsePost(b)), ErrMalformed)
}

// TestFreshness: the server withholds the newest posts; the owner's periodic head
// shows the subscriber how far behind it is.
func TestFreshness(t *testing.T) {
	f := newFixture(t)
	f.posts(f.owner, 5)
	v := f.subscriber()
	wantOK(t, "AcceptPage(1..3)", second(v.AcceptPage(f.server.page(1, 3), nil)))
	if !v.Fresh().IsZero() {
		t.Errorf("Fresh() before any head = %v, want zero", v.Fresh())
	}
	head, err := f.author.SignHead(f.owner, f.clock)
	wantOK(t, "SignHead", err)
	h, err := ParseHead(head.Bytes())
	wantOK(t, "ParseHead", err)
	var gap *GapError
	if err := v.CheckHead(h); !errors.As(err, &gap) || gap.From != 4 || gap.To != 5 {
		t.Fatalf("CheckHead(head at 5) at 3 = %v, want a gap of 4 to 5", err)
	}
	wantOK(t, "AcceptPage(4..5)", second(v.AcceptPage(f.server.page(4, 5), nil)))
	wantOK(t, "CheckHead", v.CheckHead(h))
	if !v.Fresh().Equal(f.clock) {
		t.Errorf("Fresh() = %v, want %v", v.Fresh(), f.clock)
	}
	// A head signed by anyone else, or altered, is refused.
	forged, err := f.author.SignHead(newKey(t), f.clock)
	if err == nil {
		t.Errorf("SignHead(not the owner) = %v, want an error", forged)
	}
	b := head.Bytes()
	b[20] ^= 1
	h2, err := ParseHead(b)
	wantOK(t, "ParseHead(altered)", err)
	wantErr(t, "CheckHead(altered)", v.CheckHead(h2), ErrAltered)
}

// TestFromHead: a new subscriber starts from the genesis and a recent owner-signed
// head, reads forward, and checks older pages backwards against the head.
func TestFromHead(t *testing.T) {
	f := newFixture(t)
	admin := newKey(t)
	f.posts(f.owner, 3)                                                         // 1..3
	f.publish(f.owner, Delegation{Key: admin.Public(), From: 5}.Draft(f.clock)) // 4
	f.posts(admin, 3)                                                           // 5..7
	f.publish(f.owner, Revocation{Key: admin.Public(), From: 7}.Draft(f.clock)) // 8
	f.posts(f.owner, 2)                                                         // 9..10
	head, err := f.author.SignHead(f.owner, f.clock)
	wantOK(t, "SignHead", err)
	f.posts(f.owner, 2) // 11..12

	start := func(t *testing.T) *Verifier {
		v, err := NewVerifierAt(f.server.get(0), head)
		wantOK(t, "NewVerifierAt", err)
		return v
	}
	t.Run("forward then back to the genesis", func(t *testing.T) {
		v := start(t)
		wantOK(t, "AcceptPage(11..12)", second(v.AcceptPage(f.server.page(11, 12), nil)))
		res, err := v.AcceptOlder(f.server.page(6, 10), nil)
		wantOK(t, "AcceptOlder(6..10)", err)
		if !slices.Equal(res.Voided, []uint64{7}) {
			t.Errorf("AcceptOlder(6..10).Voided = %v, want [7]", res.Voided)
		}
		wantOK(t, "AcceptOlder(1..5)", second(v.AcceptOlder(f.server.page(1, 5), nil)))
		wantErr(t, "AcceptOlder after the genesis", second(v.AcceptOlder(f.server.page(1, 2), nil)), ErrDuplicate)
		wantOK(t, "CheckHead", v.CheckHead(head))
	})
	for _, tt := range []struct {
		name string
		page []*Post
		want error
	}{
		{"altered", append(f.server.page(6, 9), f.server.alter(10)), ErrAltered},
		{"forged", append(f.server.page(6, 9), f.server.forge(newKey(t), 10, "x")), ErrForged},
		{"dropped", f.server.drop(6, 10, 8), ErrGap},
		{"reordered", f.server.swap(6, 10, 7, 8), ErrReordered},
		{"short of the head", f.server.page(6, 9), ErrGap},
		{"past the head", f.server.page(6, 11), ErrDuplicate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := start(t)
			wantErr(t, "AcceptOlder", second(v.AcceptOlder(tt.page, nil)), tt.want)
			// Nothing was taken from the bad page.
			wantOK(t, "AcceptOlder(honest)", second(v.AcceptOlder(f.server.page(6, 10), nil)))
		})
	}
	t.Run("head from someone else", func(t *testing.T) {
		other := newFixture(t)
		other.posts(other.owner, 1)
		h, err := other.author.SignHead(other.owner, f.clock)
		wantOK(t, "SignHead", err)
		wantErr(t, "NewVerifierAt", second(NewVerifierAt(f.server.get(0), h)), ErrWrongChannel)
	})
}
