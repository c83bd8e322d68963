package channel

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Verifier is a subscriber's view of one channel: the genesis, the admin keys, and
// the hash of every post it has accepted. It accepts a post only if the post is
// signed by the owner or by an admin key delegated (and not revoked) for its
// sequence number, comes right after the newest accepted post, and names that
// post's hash as its previous one. Everything else is refused with an error that
// says what the server did wrong (see [ErrForged] and the others).
//
// A Verifier is not safe for concurrent use.
type Verifier struct {
	genesis  *Post
	owner    PublicKey
	info     Info
	operator ed25519.PublicKey

	grants   []Grant
	last     uint64
	lastHash Hash
	entries  map[uint64]entry
	deleted  map[uint64]bool
	signers  []PublicKey
	signerIx map[PublicKey]uint32

	// The next older post AcceptOlder expects, for a Verifier started from a head.
	wantSeq  uint64
	wantHash Hash
	wantOK   bool

	fresh int64
}

// entry is what a Verifier keeps of an accepted post. Kind zero: only the hash is
// known (the head a Verifier started from).
type entry struct {
	hash   Hash
	kind   Kind
	signer uint32
}

// Result reports what accepting posts did beyond extending the chain.
type Result struct {
	// Voided lists accepted posts that a revocation has since voided: their
	// signer's key was revoked from before them. Hide them, or mark them.
	Voided []uint64
}

// NewVerifier starts a Verifier from a channel's genesis post, which the subscriber
// got when it followed the channel; every later post must then be accepted in order.
func NewVerifier(genesis *Post) (*Verifier, error) {
	if genesis.kind != KindGenesis {
		return nil, postErr(genesis.seq, ErrMalformed, "not a genesis post")
	}
	if genesis.withheld || !genesis.verifySig() {
		return nil, postErr(0, ErrAltered, "genesis signature")
	}
	v := &Verifier{
		genesis:  genesis,
		owner:    genesis.signer,
		info:     *genesis.info,
		entries:  map[uint64]entry{},
		deleted:  map[uint64]bool{},
		signerIx: map[PublicKey]uint32{},
	}
	v.signerIndex(v.owner)
	v.entries[0] = entry{hash: genesis.hash, kind: KindGenesis}
	v.lastHash = genesis.hash
	return v, nil
}

// NewVerifierAt starts a Verifier for a new subscriber from the genesis and a
// recent head signed by the owner, so that it need not fetch the whole history: it
// accepts posts after the head with [Verifier.Accept] and, if it wants them,
// older pages with [Verifier.AcceptOlder], each checked against the head's hash chain.
func NewVerifierAt(genesis *Post, head *Head) (*Verifier, error) {
	v, err := NewVerifier(genesis)
	if err != nil {
		return nil, err
	}
	if err := v.checkHeadSig(head); err != nil {
		return nil, err
	}
	if head.seq == 0 {
		if head.hash != genesis.hash {
			return nil, postErr(0, ErrFork, "head names another genesis")
		}
		return v, nil
	}
	v.grants = append([]Grant(nil), head.grants...)
	v.last, v.lastHash = head.seq, head.hash
	v.entries[head.seq] = entry{hash: head.hash}
	v.wantSeq, v.wantHash, v.wantOK = head.seq, head.hash, true
	v.fresh = head.time
	return v, nil
}

// SetOperatorKey sets the server key whose [Notice]s the Verifier accepts for
// withheld posts. Without one, every withheld post is refused with [ErrWithheld].
func (v *Verifier) SetOperatorKey(pub ed25519.PublicKey) { v.operator = slices.Clone(pub) }

// ID returns the channel id.
func (v *Verifier) ID() ID { return v.genesis.channel }

// Owner returns the owner's key.
func (v *Verifier) Owner() PublicKey { return v.owner }

// Info returns the channel's info from its genesis.
func (v *Verifier) Info() Info { return v.info }

// Genesis returns the genesis post.
func (v *Verifier) Genesis() *Post { return v.genesis }

// Last returns the sequence number and hash of the newest accepted post.
func (v *Verifier) Last() (uint64, Hash) { return v.last, v.lastHash }

// Grants returns a copy of the channel's delegations.
func (v *Verifier) Grants() []Grant { return append([]Grant(nil), v.grants...) }

// Fresh returns the time of the newest owner-signed head consistent with what the
// Verifier holds: the subscriber has every post the owner had published by then.
// Zero means no head was checked yet.
func (v *Verifier) Fresh() time.Time {
	if v.fresh == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v.fresh).UTC()
}

// Forget drops what the Verifier holds about posts before seq, apart from the
// genesis and the newest post, to bound its memory (a server with many long
// channels, say). Afterwards a post before seq is refused with [ErrReordered]
// instead of being compared (no fork detection there), and an edit or delete of
// one is checked only against the deletes the Verifier knows of.
func (v *Verifier) Forget(before uint64) {
	for s := range v.entries {
		if s != 0 && s < before && s != v.last {
			delete(v.entries, s)
		}
	}
}

// Next signs d as the next post after the newest accepted one. It does not accept
// it: the signer submits it to the server and accepts it as any subscriber does.
func (v *Verifier) Next(key *SigningKey, d Draft) (*Post, error) {
	return Sign(key, v.ID(), v.last+1, v.lastHash, d)
}

// Accept verifies p as the next post of the channel and, if it is valid, makes it
// the newest. On error the Verifier is unchanged.
func (v *Verifier) Accept(p *Post) (Result, error) { return v.accept(p, nil) }

// AcceptWithheld is [Verifier.Accept] for a post whose body the operator withheld
// ([Post.Withhold]): n must be the operator's signed notice for exactly that post.
// The post's signature, signer and place in the chain are verified all the same.
func (v *Verifier) AcceptWithheld(p *Post, n *Notice) (Result, error) { return v.accept(p, n) }

// AcceptPage accepts a page of history or a batch of pushed posts in order. Posts
// the Verifier already holds, identical, are skipped (pages may overlap); notices
// go with withheld posts by sequence number. It stops at the first error; the
// posts before it stay accepted.
func (v *Verifier) AcceptPage(page []*Post, notices []*Notice) (Result, error) {
	var res Result
	for i, p := range page {
		if p.seq > v.last+1 {
			for _, q := range page[i+1:] {
				if q.seq == v.last+1 {
					return res, postErr(q.seq, ErrReordered, "served after post %d", p.seq)
				}
			}
		}
		r, err := v.accept(p, noticeFor(notices, p.seq))
		res.Voided = append(res.Voided, r.Voided...)
		if errors.Is(err, ErrDuplicate) {
			continue
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func noticeFor(notices []*Notice, seq uint64) *Notice {
	for _, n := range notices {
		if n.Seq == seq {
			return n
		}
	}
	return nil
}

func (v *Verifier) accept(p *Post, n *Notice) (Result, error) {
	var res Result
	if p.channel != v.ID() {
		return res, postErr(p.seq, ErrWrongChannel, "")
	}
	if p.seq > v.last+1 {
		return res, &GapError{From: v.last + 1, To: p.seq - 1}
	}
	if p.seq <= v.last {
		return res, v.compare(p)
	}
	if err := v.authorize(p); err != nil {
		return res, err
	}
	if !p.verifySig() {
		return res, postErr(p.seq, ErrAltered, "")
	}
	if p.prev != v.lastHash {
		return res, postErr(p.seq, ErrFork, "does not follow post %d", v.last)
	}
	if err := v.checkWithheld(p, n); err != nil {
		return res, err
	}
	// Rules that depend on earlier posts; checked only when the target is known
	// (a Verifier started from a head does not know what came before it).
	switch p.kind {
	case KindEdit, KindDelete:
		if t, ok := v.entries[p.ref]; ok && t.kind != 0 && t.kind != KindPost {
			return res, postErr(p.seq, ErrInvalidEntry, "%v of a %v post", p.kind, t.kind)
		}
		if v.deleted[p.ref] {
			return res, postErr(p.seq, ErrInvalidEntry, "%v of deleted post %d", p.kind, p.ref)
		}
	case KindDelegate:
		if len(v.grants) >= MaxGrants {
			return res, postErr(p.seq, ErrInvalidEntry, "more than %d delegations", MaxGrants)
		}
	case KindRevoke:
		found := false
		for _, g := range v.grants {
			found = found || g.Key.Equal(p.revocation.Key)
		}
		if !found {
			return res, postErr(p.seq, ErrInvalidEntry, "revocation of a key never delegated")
		}
	}

	// Commit.
	switch p.kind {
	case KindDelete:
		v.deleted[p.ref] = true
	case KindDelegate:
		d := p.delegation
		v.grants = append(v.grants, Grant{Key: d.Key, From: d.From, Until: d.Until})
	case KindRevoke:
		r := p.revocation
		for i, g := range v.grants {
			if g.Key.Equal(r.Key) && (g.RevokedFrom == 0 || g.RevokedFrom > r.From) {
				v.grants[i].RevokedFrom = r.From
			}
		}
		// Posts the key signed from r.From on are void.
		ix, ok := v.signerIx[r.Key]
		for s := r.From; ok && s < p.seq; s++ {
			if e, known := v.entries[s]; known && e.kind != 0 && e.signer == ix {
				res.Voided = append(res.Voided, s)
			}
		}
	}
	v.entries[p.seq] = entry{hash: p.hash, kind: p.kind, signer: v.signerIndex(p.signer)}
	v.last, v.lastHash = p.seq, p.hash
	return res, nil
}

// compare handles a post at a place the Verifier already holds.
func (v *Verifier) compare(p *Post) error {
	e, ok := v.entries[p.seq]
	if !ok {
		return postErr(p.seq, ErrReordered, "older than the verified history; use AcceptOlder")
	}
	if e.hash == p.hash {
		return postErr(p.seq, ErrDuplicate, "")
	}
	if err := v.authorize(p); err != nil {
		return err
	}
	if !p.verifySig() {
		return postErr(p.seq, ErrAltered, "")
	}
	return postErr(p.seq, ErrFork, "differs from the accepted post")
}

// authorize checks that p's signer may sign a post of its kind at its place.
func (v *Verifier) authorize(p *Post) error {
	if p.signer.Equal(v.owner) {
		return nil
	}
	switch p.kind {
	case KindGenesis, KindDelegate, KindRevoke:
		return postErr(p.seq, ErrForged, "%v not signed by the owner", p.kind)
	}
	return v.authorizeKey(p.signer, p.seq)
}

func (v *Verifier) authorizeKey(k PublicKey, seq uint64) error {
	known, revoked := false, false
	for _, g := range v.grants {
		if !g.Key.Equal(k) {
			continue
		}
		known = true
		if g.covers(seq) {
			if g.RevokedFrom == 0 || seq < g.RevokedFrom {
				return nil
			}
			revoked = true
		}
	}
	switch {
	case revoked:
		return postErr(seq, ErrRevoked, "key %v", k)
	case known:
		return postErr(seq, ErrForged, "key %v is not delegated for this post", k)
	}
	return postErr(seq, ErrForged, "key %v was never delegated", k)
}

func (v *Verifier) checkWithheld(p *Post, n *Notice) error {
	if !p.withheld {
		return nil
	}
	switch {
	case n == nil:
		return postErr(p.seq, ErrWithheld, "")
	case v.operator == nil:
		return postErr(p.seq, ErrWithheld, "no operator key to check the notice")
	case !n.Verify(v.operator):
		return postErr(p.seq, ErrWithheld, "notice not signed by the operator")
	case n.Channel != p.channel || n.Seq != p.seq || n.Post != p.hash:
		return postErr(p.seq, ErrWithheld, "notice is for another post")
	}
	return nil
}

func (v *Verifier) signerIndex(k PublicKey) uint32 {
	if i, ok := v.signerIx[k]; ok {
		return i
	}
	i := uint32(len(v.signers))
	v.signers = append(v.signers, k)
	v.signerIx[k] = i
	return i
}

// AcceptOlder verifies a page of posts older than what a Verifier started from a
// head holds, in ascending order and ending just before the oldest post it holds
// (the first page ends with the head's own post). The page is checked by hashes,
// newest first: each post must hash to the previous-hash the post after it names,
// the newest to what the owner's head committed to. Signatures and delegations are
// checked too; posts by a key revoked from before them are reported void rather
// than refused, since the owner's chain includes them. The rules on edits and
// deletes are not checked again: the owner's head vouches for the chain.
func (v *Verifier) AcceptOlder(page []*Post, notices []*Notice) (Result, error) {
	var res Result
	if !v.wantOK {
		if len(page) == 0 {
			return res, nil
		}
		return res, postErr(page[0].seq, ErrDuplicate, "the Verifier holds the whole history")
	}
	if len(page) == 0 {
		return res, nil
	}
	for i := 1; i < len(page); i++ {
		if a, b := page[i-1].seq, page[i].seq; b != a+1 {
			if b <= a || slices.ContainsFunc(page[i+1:], func(q *Post) bool { return q.seq == a+1 }) {
				return res, postErr(b, ErrReordered, "served after post %d", a)
			}
			return res, &GapError{From: a + 1, To: b - 1}
		}
	}
	top := page[len(page)-1]
	if top.seq < v.wantSeq {
		return res, &GapError{From: top.seq + 1, To: v.wantSeq}
	}
	if top.seq > v.wantSeq {
		return res, postErr(top.seq, ErrDuplicate, "page overlaps the verified history")
	}
	want := v.wantHash
	for i := len(page) - 1; i >= 0; i-- {
		p := page[i]
		if p.channel != v.ID() {
			return res, postErr(p.seq, ErrWrongChannel, "")
		}
		if p.hash != want || (p.seq == 0 && p.hash != v.genesis.hash) {
			if err := v.authorize(p); err != nil && !errors.Is(err, ErrRevoked) {
				return Result{}, err
			}
			if !p.verifySig() {
				return Result{}, postErr(p.seq, ErrAltered, "")
			}
			return Result{}, postErr(p.seq, ErrFork, "not the post the chain names")
		}
		if !p.verifySig() {
			return Result{}, postErr(p.seq, ErrAltered, "")
		}
		err := v.authorize(p)
		if errors.Is(err, ErrRevoked) {
			res.Voided = append(res.Voided, p.seq)
		} else if err != nil {
			return Result{}, err
		}
		if err := v.checkWithheld(p, noticeFor(notices, p.seq)); err != nil {
			return Result{}, err
		}
		want = p.prev
	}
	if page[0].seq == 1 && want != v.genesis.hash {
		return Result{}, postErr(1, ErrFork, "does not follow the genesis")
	}
	// Commit.
	slices.Reverse(res.Voided)
	for _, p := range page {
		if p.kind == KindDelete {
			v.deleted[p.ref] = true
		}
		v.entries[p.seq] = entry{hash: p.hash, kind: p.kind, signer: v.signerIndex(p.signer)}
	}
	if page[0].seq <= 1 {
		v.wantOK = false
	} else {
		v.wantSeq, v.wantHash = page[0].seq-1, page[0].prev
	}
	return res, nil
}

func (v *Verifier) checkHeadSig(h *Head) error {
	if h.channel != v.ID() {
		return postErr(h.seq, ErrWrongChannel, "head")
	}
	if !v.owner.verify(h.signed(), h.sig) {
		return postErr(h.seq, ErrAltered, "head not signed by the owner")
	}
	return nil
}

// CheckHead checks an owner-signed head against what the Verifier holds. A head
// ahead of it returns a [*GapError] (the server has not delivered everything the
// owner published); a head that names another post at a place it holds, or other
// admin keys at its newest post, returns [ErrFork]. A consistent head moves
// [Verifier.Fresh] forward.
func (v *Verifier) CheckHead(h *Head) error {
	if err := v.checkHeadSig(h); err != nil {
		return err
	}
	if h.seq > v.last {
		return &GapError{From: v.last + 1, To: h.seq}
	}
	e, ok := v.entries[h.seq]
	if !ok {
		return postErr(h.seq, ErrReordered, "head older than the verified history")
	}
	if e.hash != h.hash {
		return postErr(h.seq, ErrFork, "the owner's head names another post")
	}
	if h.seq == v.last && !slices.Equal(h.grants, v.grants) {
		return postErr(h.seq, ErrFork, "the owner's head names other admin keys")
	}
	v.fresh = max(v.fresh, h.time)
	return nil
}

// SignHead signs the Verifier's newest post and admin keys as a [Head]. Only the
// owner can: key must be the owner's.
func (v *Verifier) SignHead(key *SigningKey, t time.Time) (*Head, error) {
	if !key.Public().Equal(v.owner) {
		return nil, fmt.Errorf("signing head: %w", ErrForged)
	}
	if t.UnixMilli() < 0 {
		return nil, fmt.Errorf("%w: head time before 1970", ErrMalformed)
	}
	h := &Head{channel: v.ID(), seq: v.last, hash: v.lastHash, time: t.UnixMilli(), grants: v.Grants()}
	h.sig = key.sign(h.signed())
	return h, nil
}
