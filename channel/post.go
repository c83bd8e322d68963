package channel

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// Kind says what a post does. The zero value is invalid.
type Kind uint8

// The kinds of post. Values are the wire encoding.
const (
	// KindGenesis is post 0: the channel's [Info], signed by its owner.
	KindGenesis Kind = 1
	// KindPost is a message to the subscribers.
	KindPost Kind = 2
	// KindEdit replaces the body of an earlier KindPost (Ref names it).
	KindEdit Kind = 3
	// KindDelete retracts an earlier KindPost (Ref names it); its body is empty.
	KindDelete Kind = 4
	// KindDelegate authorises an admin key ([Delegation]); only the owner signs it.
	KindDelegate Kind = 5
	// KindRevoke withdraws an admin key ([Revocation]); only the owner signs it.
	KindRevoke Kind = 6
)

var kindNames = [...]string{"invalid", "genesis", "post", "edit", "delete", "delegate", "revoke"}

// String names the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// content reports whether a post of kind k carries subscriber-visible content that
// the operator may withhold (see [Notice]). Control posts can never be withheld:
// hiding a revocation would keep a revoked key in power.
func (k Kind) content() bool { return k == KindPost || k == KindEdit }

// Wire layout of a post (all integers big-endian):
//
//	version  1   = 1
//	kind     1
//	channel  16
//	seq      8
//	prev     32  hash of post seq-1; zero for the genesis
//	time     8   milliseconds since 1970, the signer's claim, < 2^63
//	signer   32  Ed25519 public key
//	ref      8   the target of an edit or delete; zero otherwise
//	form     1   1: body follows as len(4) || body; 0: withheld, body hash(32) follows
//	sig      64  Ed25519 over labelPost || header || bodyHash
//
// The signature covers the hash of the body, not the body, so that a server can
// withhold a body (notice and action) and still serve a post every subscriber can
// check for its signature, signer, kind and place in the chain.
const (
	version    = 1
	headerSize = 1 + 1 + IDSize + 8 + 32 + 8 + PublicKeySize + 8
	// MaxBodySize bounds a body: a post must fit one 96 KiB delivery envelope with
	// room for framing; pictures and files travel as attachments.
	MaxBodySize = 64 << 10
	// MaxSeq bounds sequence numbers.
	MaxSeq = 1 << 62
	// MaxPostSize is the largest encoded post.
	MaxPostSize = headerSize + 1 + 4 + MaxBodySize + SignatureSize

	formWithheld = 0
	formBody     = 1
)

// ErrMalformed is returned for bytes or fields that are not a well-formed post,
// head or notice.
var ErrMalformed = errors.New("channel: malformed")

// Post is one signed entry of a channel's chain: the genesis, a message, an edit,
// a delete, a delegation or a revocation. It is immutable.
type Post struct {
	kind     Kind
	channel  ID
	seq      uint64
	prev     Hash
	time     int64
	signer   PublicKey
	ref      uint64
	body     []byte
	withheld bool
	bodyHash Hash
	sig      []byte

	info       *Info
	delegation *Delegation
	revocation *Revocation
	hash       Hash
}

// Draft is what a signer fills in; [Sign] adds the channel, place and signature.
type Draft struct {
	Kind Kind
	// Ref is the sequence number an edit or delete refers to.
	Ref  uint64
	Body []byte
	Time time.Time
}

// Sign makes the post at seq in channel id, after the post whose hash is prev.
func Sign(key *SigningKey, id ID, seq uint64, prev Hash, d Draft) (*Post, error) {
	ms := d.Time.UnixMilli()
	if ms < 0 {
		return nil, fmt.Errorf("%w: time before 1970", ErrMalformed)
	}
	p := &Post{
		kind: d.Kind, channel: id, seq: seq, prev: prev, time: ms,
		signer: key.Public(), ref: d.Ref, body: append([]byte{}, d.Body...),
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	p.bodyHash = hashBody(p.body)
	p.sig = key.sign(p.signed())
	p.hash = p.computeHash()
	return p, nil
}

// Create makes the genesis post of a new channel owned by key, with a random nonce
// from rand (nil means crypto/rand.Reader). Its [Post.Channel] is the new id.
func Create(key *SigningKey, info Info, t time.Time, rand io.Reader) (*Post, error) {
	if err := readRand(rand, info.Nonce[:]); err != nil {
		return nil, fmt.Errorf("creating channel: %w", err)
	}
	if err := info.validate(); err != nil {
		return nil, err
	}
	id := DeriveID(key.Public(), info.Nonce)
	return Sign(key, id, 0, Hash{}, Draft{Kind: KindGenesis, Body: info.encode(), Time: t})
}

// ParsePost decodes and checks the shape of an encoded post. It does not check the
// signature or the chain: [Verifier] does. Every post has exactly one encoding:
// ParsePost accepts only what [Post.Bytes] produces.
func ParsePost(b []byte) (*Post, error) {
	if len(b) < headerSize+1+SignatureSize || len(b) > MaxPostSize {
		return nil, fmt.Errorf("%w: post of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != version {
		return nil, fmt.Errorf("%w: post version %d", ErrMalformed, b[0])
	}
	p := &Post{kind: Kind(b[1])}
	copy(p.channel[:], b[2:18])
	p.seq = binary.BigEndian.Uint64(b[18:26])
	copy(p.prev[:], b[26:58])
	t := binary.BigEndian.Uint64(b[58:66])
	if t >= 1<<63 {
		return nil, fmt.Errorf("%w: time out of range", ErrMalformed)
	}
	p.time = int64(t)
	copy(p.signer.k[:], b[66:98])
	p.ref = binary.BigEndian.Uint64(b[98:106])
	rest := b[headerSize:]
	form := rest[0]
	rest = rest[1:]
	switch form {
	case formBody:
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: short body length", ErrMalformed)
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n)+SignatureSize != uint64(len(rest)) {
			return nil, fmt.Errorf("%w: body length %d does not match the post", ErrMalformed, n)
		}
		p.body = append([]byte{}, rest[:n]...)
		rest = rest[n:]
	case formWithheld:
		if len(rest) != 32+SignatureSize {
			return nil, fmt.Errorf("%w: withheld post of wrong size", ErrMalformed)
		}
		p.withheld = true
		copy(p.bodyHash[:], rest)
		rest = rest[32:]
	default:
		return nil, fmt.Errorf("%w: body form %d", ErrMalformed, form)
	}
	p.sig = append([]byte{}, rest...)
	if err := p.check(); err != nil {
		return nil, err
	}
	if !p.withheld {
		p.bodyHash = hashBody(p.body)
	}
	p.hash = p.computeHash()
	return p, nil
}

// check enforces the shape rules of each kind, for Sign and ParsePost alike.
func (p *Post) check() error {
	if !p.signer.valid() {
		return fmt.Errorf("%w: signer key", ErrMalformed)
	}
	if p.withheld && !p.kind.content() {
		return fmt.Errorf("%w: a %v post cannot be withheld", ErrMalformed, p.kind)
	}
	if len(p.body) > MaxBodySize {
		return fmt.Errorf("%w: body of %d bytes, limit %d", ErrMalformed, len(p.body), MaxBodySize)
	}
	// No channel reaches 2^62 posts; refusing larger numbers keeps seq+1 and the
	// gaps a Verifier reports from overflowing.
	if p.seq >= MaxSeq {
		return fmt.Errorf("%w: sequence number %d", ErrMalformed, p.seq)
	}
	if (p.seq == 0) != (p.kind == KindGenesis) {
		return fmt.Errorf("%w: %v post at sequence %d", ErrMalformed, p.kind, p.seq)
	}
	if (p.prev == Hash{}) != (p.kind == KindGenesis) {
		return fmt.Errorf("%w: previous hash of a %v post", ErrMalformed, p.kind)
	}
	switch p.kind {
	case KindEdit, KindDelete:
		if p.ref == 0 || p.ref >= p.seq {
			return fmt.Errorf("%w: %v of post %d at sequence %d", ErrMalformed, p.kind, p.ref, p.seq)
		}
	default:
		if p.ref != 0 {
			return fmt.Errorf("%w: reference in a %v post", ErrMalformed, p.kind)
		}
	}
	switch p.kind {
	case KindGenesis:
		in, err := parseInfo(p.body)
		if err != nil {
			return err
		}
		if DeriveID(p.signer, in.Nonce) != p.channel {
			return fmt.Errorf("%w: channel id is not derived from the owner key", ErrMalformed)
		}
		p.info = in
	case KindPost, KindEdit:
	case KindDelete:
		if len(p.body) != 0 {
			return fmt.Errorf("%w: body in a delete", ErrMalformed)
		}
	case KindDelegate:
		d, err := parseDelegation(p.body, p.seq)
		if err != nil {
			return err
		}
		if d.Key.Equal(p.signer) {
			return fmt.Errorf("%w: the owner delegating to itself", ErrMalformed)
		}
		p.delegation = d
	case KindRevoke:
		r, err := parseRevocation(p.body, p.seq)
		if err != nil {
			return err
		}
		if r.Key.Equal(p.signer) {
			return fmt.Errorf("%w: the owner revoking itself", ErrMalformed)
		}
		p.revocation = r
	default:
		return fmt.Errorf("%w: kind %d", ErrMalformed, uint8(p.kind))
	}
	return nil
}

// header appends the fixed-size header to b.
func (p *Post) header(b []byte) []byte {
	b = append(b, version, byte(p.kind))
	b = append(b, p.channel[:]...)
	b = binary.BigEndian.AppendUint64(b, p.seq)
	b = append(b, p.prev[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.time))
	b = append(b, p.signer.k[:]...)
	return binary.BigEndian.AppendUint64(b, p.ref)
}

// signed returns the message the signature covers.
func (p *Post) signed() []byte {
	b := make([]byte, 0, len(labelPost)+headerSize+32)
	b = append(b, labelPost...)
	b = p.header(b)
	return append(b, p.bodyHash[:]...)
}

func (p *Post) computeHash() Hash {
	h := sha256.New()
	h.Write([]byte(labelPostHash))
	h.Write(p.header(make([]byte, 0, headerSize)))
	h.Write(p.bodyHash[:])
	h.Write(p.sig)
	var out Hash
	h.Sum(out[:0])
	return out
}

func hashBody(body []byte) Hash {
	h := sha256.New()
	h.Write([]byte(labelBody))
	h.Write(body)
	var out Hash
	h.Sum(out[:0])
	return out
}

// Bytes returns the encoded post.
func (p *Post) Bytes() []byte {
	b := p.header(make([]byte, 0, headerSize+1+4+len(p.body)+SignatureSize))
	if p.withheld {
		b = append(b, formWithheld)
		b = append(b, p.bodyHash[:]...)
	} else {
		b = append(b, formBody)
		b = binary.BigEndian.AppendUint32(b, uint32(len(p.body)))
		b = append(b, p.body...)
	}
	return append(b, p.sig...)
}

// Withhold returns a copy of p without its body: what a server serves in place of a
// post it restricted or removed, together with a [Notice]. Only posts and edits can
// be withheld; for others it returns p.
func (p *Post) Withhold() *Post {
	if !p.kind.content() || p.withheld {
		return p
	}
	q := *p
	q.body = nil
	q.withheld = true
	return &q
}

// Kind returns the kind of the post.
func (p *Post) Kind() Kind { return p.kind }

// Channel returns the id of the channel the post belongs to.
func (p *Post) Channel() ID { return p.channel }

// Seq returns the post's sequence number; the genesis is 0.
func (p *Post) Seq() uint64 { return p.seq }

// Prev returns the hash of the post before it.
func (p *Post) Prev() Hash { return p.prev }

// Time returns the time the signer claims it signed the post. Nothing checks it.
func (p *Post) Time() time.Time { return time.UnixMilli(p.time).UTC() }

// Signer returns the key that signed the post.
func (p *Post) Signer() PublicKey { return p.signer }

// Ref returns the sequence number an edit or delete refers to, zero otherwise.
func (p *Post) Ref() uint64 { return p.ref }

// Body returns a copy of the body, or nil if the server withheld it.
func (p *Post) Body() []byte {
	if p.withheld {
		return nil
	}
	return append([]byte{}, p.body...)
}

// Withheld reports whether the body was withheld (see [Post.Withhold]).
func (p *Post) Withheld() bool { return p.withheld }

// Hash returns the post's hash, which the next post names as its previous one. It
// covers the signature and the body's hash, so it is the same whether or not the
// body was withheld.
func (p *Post) Hash() Hash { return p.hash }

// Info returns the channel info of a genesis post, nil for other kinds.
func (p *Post) Info() *Info {
	if p.info == nil {
		return nil
	}
	in := *p.info
	return &in
}

// Delegation returns the delegation of a KindDelegate post, nil for other kinds.
func (p *Post) Delegation() *Delegation {
	if p.delegation == nil {
		return nil
	}
	d := *p.delegation
	return &d
}

// Revocation returns the revocation of a KindRevoke post, nil for other kinds.
func (p *Post) Revocation() *Revocation {
	if p.revocation == nil {
		return nil
	}
	r := *p.revocation
	return &r
}

// verifySig reports whether the signature is valid for the post's signer.
func (p *Post) verifySig() bool { return p.signer.verify(p.signed(), p.sig) }

// Info encoding: nonce(16) || flags(1) || len(1) handle || len(2) title ||
// len(2) description. Flag bit 0 is Private; other bits must be zero.
func (in *Info) encode() []byte {
	b := make([]byte, 0, 16+1+1+len(in.Handle)+2+len(in.Title)+2+len(in.Description))
	b = append(b, in.Nonce[:]...)
	var flags byte
	if in.Private {
		flags |= 1
	}
	b = append(b, flags, byte(len(in.Handle)))
	b = append(b, in.Handle...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(in.Title)))
	b = append(b, in.Title...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(in.Description)))
	return append(b, in.Description...)
}

func parseInfo(b []byte) (*Info, error) {
	bad := fmt.Errorf("%w: channel info", ErrMalformed)
	in := new(Info)
	if len(b) < 18 {
		return nil, bad
	}
	copy(in.Nonce[:], b)
	flags := b[16]
	if flags&^1 != 0 {
		return nil, bad
	}
	in.Private = flags&1 != 0
	n := int(b[17])
	b = b[18:]
	if len(b) < n {
		return nil, bad
	}
	in.Handle, b = Handle(b[:n]), b[n:]
	field := func() (string, bool) {
		if len(b) < 2 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return "", false
		}
		s := string(b[2 : 2+n])
		b = b[2+n:]
		return s, utf8.ValidString(s)
	}
	var ok1, ok2 bool
	in.Title, ok1 = field()
	in.Description, ok2 = field()
	if !ok1 || !ok2 || len(b) != 0 {
		return nil, bad
	}
	if err := in.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return in, nil
}

// Delegation authorises Key to sign posts with sequence numbers in [From, Until)
// (Until zero: no end). Bounds are sequence numbers, not times, because the chain
// orders them for every subscriber alike and a signer cannot lie about them; a
// delegation cannot reach back before the post that carries it.
type Delegation struct {
	Key   PublicKey
	From  uint64
	Until uint64
}

// Draft returns the owner's draft of the delegation post.
func (d Delegation) Draft(t time.Time) Draft {
	b := append(d.Key.Bytes(), make([]byte, 16)...)
	binary.BigEndian.PutUint64(b[32:], d.From)
	binary.BigEndian.PutUint64(b[40:], d.Until)
	return Draft{Kind: KindDelegate, Body: b, Time: t}
}

func parseDelegation(b []byte, seq uint64) (*Delegation, error) {
	if len(b) != PublicKeySize+16 {
		return nil, fmt.Errorf("%w: delegation of %d bytes", ErrMalformed, len(b))
	}
	k, err := NewPublicKey(b[:PublicKeySize])
	if err != nil {
		return nil, fmt.Errorf("%w: delegated key", ErrMalformed)
	}
	d := &Delegation{Key: k, From: binary.BigEndian.Uint64(b[32:]), Until: binary.BigEndian.Uint64(b[40:])}
	if d.From <= seq || (d.Until != 0 && d.Until <= d.From) {
		return nil, fmt.Errorf("%w: delegation for [%d, %d) at sequence %d", ErrMalformed, d.From, d.Until, seq)
	}
	return d, nil
}

// Revocation withdraws every delegation of Key from sequence From on. From may lie
// before the revocation post (a key known to be stolen since then): posts it
// signed from From on stay in the chain, since later posts link to them, but the
// [Verifier] reports them void.
type Revocation struct {
	Key  PublicKey
	From uint64
}

// Draft returns the owner's draft of the revocation post.
func (r Revocation) Draft(t time.Time) Draft {
	b := append(r.Key.Bytes(), make([]byte, 8)...)
	binary.BigEndian.PutUint64(b[32:], r.From)
	return Draft{Kind: KindRevoke, Body: b, Time: t}
}

func parseRevocation(b []byte, seq uint64) (*Revocation, error) {
	if len(b) != PublicKeySize+8 {
		return nil, fmt.Errorf("%w: revocation of %d bytes", ErrMalformed, len(b))
	}
	k, err := NewPublicKey(b[:PublicKeySize])
	if err != nil {
		return nil, fmt.Errorf("%w: revoked key", ErrMalformed)
	}
	r := &Revocation{Key: k, From: binary.BigEndian.Uint64(b[32:])}
	if r.From == 0 || r.From > seq+1 {
		return nil, fmt.Errorf("%w: revocation from %d at sequence %d", ErrMalformed, r.From, seq)
	}
	return r, nil
}
