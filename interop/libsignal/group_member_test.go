package libsignal_test

// A Bastion group in which one member is Signal's own libsignal (issue 8: "a group test
// where one member is the libsignal peer"). Alice and Bob are Go devices (package
// protocol, protocol/senderkey, protocol/sealed); Carol's keys, 1:1 sessions and sender
// keys live in the Node peer, so every 1:1 message to or from her, every distribution
// message she makes or takes in and every group message she sends or opens goes through
// libsignal 0.90.0. libsignal has no group state machine, so Carol's replica of the group
// is client/group's, fed only with what libsignal decrypted for her.
//
// Group changes and distribution messages travel over the 1:1 sessions; group messages
// are sealed sender v1 messages of content type SenderKey carrying the group id, one per
// recipient, made from one SenderKeyMessage. Skipped without the peer, a failure with
// BASTION_REQUIRE_INTEROP=1 (as CI sets it).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/client/group"
	"github.com/bastionchat/bastion/interop/libsignal"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/certificate"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/sealed"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

var ctx = context.Background()

// What a 1:1 message between members carries, in this test's own framing (one byte, then
// the body): the client's Content encoding is not exported, and what is under test here
// is the crypto and the state machine, not that encoding.
const (
	kindHello   = 'p' // opens a session; carries nothing
	kindChange  = 'c' // one group.Change
	kindHistory = 'h' // a group history (group.Group.History)
	kindSKDM    = 'k' // a SenderKeyDistributionMessage
)

// member is one device of the group: a Go device, or (party != "") the libsignal peer's.
type member struct {
	name string
	id   uuid.UUID
	addr protocol.Address
	key  *curve.PublicKey // identity key
	cert []byte           // sender certificate
	g    *group.Group     // its replica, nil until it learns of the group

	// Go devices.
	ident  *protocol.IdentityKeyPair
	store  *protocol.MemoryStore
	cipher *protocol.Cipher
	sk     *senderkey.MemoryStore

	party string // the libsignal party, for Carol
}

func (m *member) lib() libsignal.Address {
	return libsignal.Address{Name: m.addr.Name, DeviceID: m.addr.DeviceID}
}

type packet struct {
	from, to *member
	msg      libsignal.Message
}

// skdmIn is a distribution message a member took in.
type skdmIn struct {
	from *member
	dist uuid.UUID
	raw  []byte
}

// world is the network and the service: it carries 1:1 messages in order, issues sender
// certificates, and executes each member's plans as a client would.
type world struct {
	t        *testing.T
	p        *libsignal.Peer
	now      time.Time
	root     *curve.PrivateKey // the service's trust root
	server   *curve.PrivateKey
	srvCert  []byte
	members  map[uuid.UUID]*member
	queue    []packet
	received map[*member][]skdmIn
}

func newWorld(t *testing.T, p *libsignal.Peer) *world {
	t.Helper()
	w := &world{t: t, p: p, now: time.Now(), members: map[uuid.UUID]*member{}, received: map[*member][]skdmIn{}}
	var err error
	if w.root, err = curve.GeneratePrivateKey(nil); err != nil {
		t.Fatal(err)
	}
	if w.server, err = curve.GeneratePrivateKey(nil); err != nil {
		t.Fatal(err)
	}
	if w.srvCert, err = certificate.NewServer(w.root, 7, w.server.PublicKey(), nil); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) issue(m *member) {
	w.t.Helper()
	c, err := certificate.IssueSender(w.server, w.srvCert, m.id, m.addr.DeviceID, m.key, w.now.Add(24*time.Hour), nil)
	if err != nil {
		w.t.Fatal(err)
	}
	m.cert = c
}

func (w *world) goMember(name string) *member {
	w.t.Helper()
	ident, err := protocol.GenerateIdentityKeyPair(nil)
	if err != nil {
		w.t.Fatal(err)
	}
	id := uuid.New()
	m := &member{name: name, id: id, addr: protocol.Address{Name: id.String(), DeviceID: 1}, key: ident.PublicKey(),
		ident: ident, store: protocol.NewMemoryStore(ident, 100+uint32(len(w.members))), sk: senderkey.NewMemoryStore()}
	m.cipher = &protocol.Cipher{Local: m.addr, Stores: m.store.Stores()}
	w.issue(m)
	w.members[id] = m
	return m
}

func (w *world) libMember(name string) *member {
	w.t.Helper()
	id := uuid.New()
	party, err := w.p.NewParty(libsignal.NewPartyArgs{Party: name})
	if err != nil {
		w.t.Fatalf("libsignal new_party = %v", err)
	}
	key, err := curve.NewPublicKey(party.IdentityKey)
	if err != nil {
		w.t.Fatal(err)
	}
	m := &member{name: name, id: id, addr: protocol.Address{Name: id.String(), DeviceID: 2}, key: key, party: name}
	w.issue(m)
	w.members[id] = m
	return m
}

// goBundle makes and stores fresh prekeys for a Go member and returns its bundle.
func (w *world) goBundle(m *member) *protocol.PreKeyBundle {
	w.t.Helper()
	spk, err := protocol.GenerateSignedPreKey(nil, m.ident, 1, w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	kpk, err := protocol.GenerateKyberPreKey(nil, m.ident, 1, w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	pk, err := protocol.GeneratePreKey(nil, 1)
	if err != nil {
		w.t.Fatal(err)
	}
	m.store.StoreSignedPreKey(spk)
	m.store.StoreKyberPreKey(kpk, true)
	m.store.StorePreKey(pk)
	_, reg, err := m.store.LocalIdentity(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	return &protocol.PreKeyBundle{
		RegistrationID: reg, DeviceID: m.addr.DeviceID, PreKeyID: 1, PreKey: pk.PublicKey(),
		SignedPreKeyID: 1, SignedPreKey: spk.PublicKey(), SignedPreKeySignature: spk.Signature,
		KyberPreKeyID: 1, KyberPreKey: kpk.KeyPair.Public, KyberPreKeySignature: kpk.Signature,
		IdentityKey: m.ident.PublicKey(),
	}
}

// connect starts a 1:1 session from a to b (a processes b's bundle) and delivers a hello.
func (w *world) connect(a, b *member) {
	w.t.Helper()
	switch {
	case a.party == "" && b.party == "":
		if err := a.cipher.ProcessPreKeyBundle(ctx, b.addr, w.goBundle(b), w.now); err != nil {
			w.t.Fatal(err)
		}
	case a.party == "":
		lb, err := w.p.GenerateBundle(b.party, libsignal.BundleArgs{DeviceID: b.addr.DeviceID, PreKeyID: 1, SignedPreKeyID: 1, KyberPreKeyID: 1})
		if err != nil {
			w.t.Fatal(err)
		}
		pb, err := protocol.NewPreKeyBundle(lb.RegistrationID, lb.DeviceID, lb.PreKeyID, lb.PreKeyPublic,
			lb.SignedPreKeyID, lb.SignedPreKeyPublic, lb.SignedPreKeySignature,
			lb.KyberPreKeyID, lb.KyberPreKeyPublic, lb.KyberPreKeySignature, lb.IdentityKey)
		if err != nil {
			w.t.Fatalf("NewPreKeyBundle(libsignal's bundle) = %v", err)
		}
		if err := a.cipher.ProcessPreKeyBundle(ctx, b.addr, pb, w.now); err != nil {
			w.t.Fatalf("ProcessPreKeyBundle(libsignal's bundle) = %v", err)
		}
	case b.party == "":
		gb := w.goBundle(b)
		lb := libsignal.Bundle{
			RegistrationID: gb.RegistrationID, DeviceID: gb.DeviceID, PreKeyID: gb.PreKeyID, PreKeyPublic: gb.PreKey.Bytes(),
			SignedPreKeyID: gb.SignedPreKeyID, SignedPreKeyPublic: gb.SignedPreKey.Bytes(), SignedPreKeySignature: gb.SignedPreKeySignature,
			KyberPreKeyID: gb.KyberPreKeyID, KyberPreKeyPublic: gb.KyberPreKey.Bytes(), KyberPreKeySignature: gb.KyberPreKeySignature,
			IdentityKey: gb.IdentityKey.Bytes(),
		}
		if err := w.p.ProcessBundle(a.party, b.lib(), lb); err != nil {
			w.t.Fatalf("libsignal process_bundle(our bundle) = %v", err)
		}
	default:
		w.t.Fatal("two libsignal members: not what this test is about")
	}
	w.send(a, b, kindHello, nil)
	w.pump()
}

// send encrypts one 1:1 message and queues it.
func (w *world) send(from, to *member, kind byte, body []byte) {
	w.t.Helper()
	pt := append([]byte{kind}, body...)
	var msg libsignal.Message
	if from.party == "" {
		m, err := from.cipher.Encrypt(ctx, to.addr, pt, w.now)
		if err != nil {
			w.t.Fatalf("%s: Encrypt to %s = %v", from.name, to.name, err)
		}
		msg = libsignal.Message{Type: libsignal.MessageType(m.Type()), Ciphertext: m.Bytes()}
	} else {
		var err error
		if msg, err = w.p.Encrypt(from.party, to.lib(), pt); err != nil {
			w.t.Fatalf("%s: libsignal encrypt to %s = %v", from.name, to.name, err)
		}
	}
	w.queue = append(w.queue, packet{from, to, msg})
}

// pump delivers queued 1:1 messages, in order, until none is left.
func (w *world) pump() {
	w.t.Helper()
	for n := 0; len(w.queue) > 0; n++ {
		if n > 1000 {
			w.t.Fatal("the members keep sending: a plan loops")
		}
		pk := w.queue[0]
		w.queue = w.queue[1:]
		w.deliver(pk)
	}
}

func (w *world) deliver(pk packet) {
	w.t.Helper()
	from, to := pk.from, pk.to
	var pt []byte
	if to.party == "" {
		m, err := protocol.ParseCiphertextMessage(protocol.MessageType(pk.msg.Type), pk.msg.Ciphertext)
		if err != nil {
			w.t.Fatalf("%s: ParseCiphertextMessage from %s = %v", to.name, from.name, err)
		}
		if pt, err = to.cipher.Decrypt(ctx, from.addr, m); err != nil {
			w.t.Fatalf("%s: Decrypt from %s = %v", to.name, from.name, err)
		}
	} else {
		var err error
		if pt, err = w.p.Decrypt(to.party, from.lib(), pk.msg); err != nil {
			w.t.Fatalf("%s: libsignal decrypt from %s = %v", to.name, from.name, err)
		}
	}
	if len(pt) == 0 {
		w.t.Fatalf("%s: empty 1:1 message from %s", to.name, from.name)
	}
	kind, body := pt[0], pt[1:]
	switch kind {
	case kindHello:
	case kindChange:
		c, err := group.NewChange(body)
		if err != nil {
			w.t.Fatalf("%s: NewChange from %s = %v", to.name, from.name, err)
		}
		var u group.Update
		if to.g == nil {
			to.g, u, err = group.New(to.id, from.id, c)
		} else {
			u, err = to.g.Receive(from.id, c)
		}
		if err != nil {
			w.t.Fatalf("%s: taking %s's %s = %v", to.name, from.name, c.Kind, err)
		}
		w.execute(to, u)
	case kindHistory:
		var u group.Update
		var err error
		if to.g == nil {
			to.g, u, err = group.Join(to.id, from.id, body)
		} else {
			u, err = to.g.Merge(from.id, body)
		}
		if err != nil {
			w.t.Fatalf("%s: taking %s's history = %v", to.name, from.name, err)
		}
		w.execute(to, u)
	case kindSKDM:
		w.processSKDM(to, from, body)
	default:
		w.t.Fatalf("%s: unknown 1:1 message kind %q from %s", to.name, kind, from.name)
	}
}

// execute sends what a plan says, as a client would: the change, the history, the
// member's own changes, then its distribution message.
func (w *world) execute(m *member, u group.Update) {
	w.t.Helper()
	p := u.Plan
	for _, to := range p.SendChangeTo {
		if to != m.id {
			w.send(m, w.members[to], kindChange, u.Change.Bytes())
		}
	}
	for _, to := range p.SendHistoryTo {
		w.send(m, w.members[to], kindHistory, m.g.History())
	}
	for _, to := range p.SendMyChangesTo {
		for _, c := range m.g.ChangesBy(m.id) {
			w.send(m, w.members[to], kindChange, c.Bytes())
		}
	}
	if p.Left || len(p.SendDistributionTo) == 0 {
		return
	}
	skdm := w.distribution(m, u.After.DistributionID)
	for _, to := range p.SendDistributionTo {
		w.send(m, w.members[to], kindSKDM, skdm)
	}
}

// distribution returns m's distribution message for dist, making its chain if it has none.
func (w *world) distribution(m *member, dist uuid.UUID) []byte {
	w.t.Helper()
	if m.party == "" {
		dm, err := senderkey.Create(ctx, m.sk, m.addr, dist)
		if err != nil {
			w.t.Fatalf("%s: senderkey.Create = %v", m.name, err)
		}
		return dm.Bytes()
	}
	skdm, err := w.p.SenderKeyCreate(m.party, m.lib(), dist.String())
	if err != nil {
		w.t.Fatalf("%s: libsignal sk_create = %v", m.name, err)
	}
	return skdm
}

// processSKDM has to take in from's distribution message. A Go member parses libsignal's
// encoding with its own parser and libsignal parses ours: both must name the same
// distribution id.
func (w *world) processSKDM(to, from *member, raw []byte) {
	w.t.Helper()
	var dist uuid.UUID
	if to.party == "" {
		dm, err := senderkey.NewDistributionMessage(raw)
		if err != nil {
			w.t.Fatalf("%s: NewDistributionMessage(%s's) = %v", to.name, from.name, err)
		}
		if err := senderkey.Process(ctx, to.sk, from.addr, dm); err != nil {
			w.t.Fatalf("%s: senderkey.Process(%s's) = %v", to.name, from.name, err)
		}
		dist = dm.DistributionID()
	} else {
		var parsed struct {
			DistributionID string `json:"distribution_id"`
		}
		if err := w.p.Call("parse_skdm", map[string]any{"skdm": raw}, &parsed); err != nil {
			w.t.Fatalf("%s: libsignal parse_skdm(%s's) = %v", to.name, from.name, err)
		}
		var err error
		if dist, err = uuid.Parse(parsed.DistributionID); err != nil {
			w.t.Fatal(err)
		}
		if err := w.p.SenderKeyProcess(to.party, from.lib(), raw); err != nil {
			w.t.Fatalf("%s: libsignal processSenderKeyDistributionMessage(%s's) = %v", to.name, from.name, err)
		}
	}
	w.received[to] = append(w.received[to], skdmIn{from: from, dist: dist, raw: raw})
}

// sealedGroupMessage is one group message as it leaves its sender: the SenderKeyMessage,
// sealed once for each recipient.
type sealedGroupMessage struct {
	from   *member
	text   string
	inner  []byte
	sealed map[*member][]byte
}

// hintResendable is libsignal's ContentHint Resendable, which the libsignal member sets on
// its group messages so the test sees Go read a hint other than the default.
const hintResendable = 1

// groupSend has from encrypt text once on its chain of the group's current epoch and seal
// it for each of to.
func (w *world) groupSend(from *member, text string, to ...*member) sealedGroupMessage {
	w.t.Helper()
	st := from.g.State()
	out := sealedGroupMessage{from: from, text: text, sealed: map[*member][]byte{}}
	if from.party == "" {
		inner, err := senderkey.Encrypt(ctx, from.sk, from.addr, st.DistributionID, []byte(text))
		if err != nil {
			w.t.Fatalf("%s: senderkey.Encrypt = %v", from.name, err)
		}
		out.inner = inner
		for _, r := range to {
			ct, err := sealed.Encrypt(nil, r.key, from.ident, from.cert, sealed.TypeSenderKey, inner, st.Group[:])
			if err != nil {
				w.t.Fatalf("%s: sealed.Encrypt = %v", from.name, err)
			}
			out.sealed[r] = ct
		}
		return out
	}
	var recipients []libsignal.Address
	for _, r := range to {
		recipients = append(recipients, r.lib())
	}
	var r struct {
		Message []byte   `json:"message"`
		Sealed  [][]byte `json:"sealed"`
	}
	err := w.p.Call("group_sealed_encrypt", map[string]any{
		"party": from.party, "sender": from.lib(), "distribution_id": st.DistributionID.String(),
		"plaintext": []byte(text), "sender_certificate": from.cert, "recipients": recipients,
		"group_id": st.Group[:], "content_hint": hintResendable,
	}, &r)
	if err != nil {
		w.t.Fatalf("%s: libsignal group_sealed_encrypt = %v", from.name, err)
	}
	if len(r.Sealed) != len(to) {
		w.t.Fatalf("%s: libsignal sealed %d copies, want %d", from.name, len(r.Sealed), len(to))
	}
	out.inner = r.Message
	for i, rc := range to {
		out.sealed[rc] = r.Sealed[i]
	}
	return out
}

// opened is a group message as its recipient opened it.
type opened struct {
	sender protocol.Address
	group  []byte
	hint   int
	text   string
}

// groupOpen has to open its copy of msg: the sealed layer (certificate checked against the
// trust root), then the SenderKeyMessage under the sender the certificate names.
func (w *world) groupOpen(to *member, msg sealedGroupMessage) (opened, error) {
	w.t.Helper()
	ct, ok := msg.sealed[to]
	if !ok {
		w.t.Fatalf("%s's message %q was not sealed for %s", msg.from.name, msg.text, to.name)
	}
	if to.party == "" {
		c, err := sealed.DecryptFor(ct, to.ident, to.addr, w.root.PublicKey(), w.now)
		if err != nil {
			w.t.Fatalf("%s: sealed.DecryptFor(%s's %q) = %v", to.name, msg.from.name, msg.text, err)
		}
		if c.Type != sealed.TypeSenderKey || !bytes.Equal(c.Body, msg.inner) {
			w.t.Fatalf("%s: sealed content of %s's %q: type %d, %d bytes; want type %d, the %d-byte SenderKeyMessage",
				to.name, msg.from.name, msg.text, c.Type, len(c.Body), sealed.TypeSenderKey, len(msg.inner))
		}
		pt, err := senderkey.Decrypt(ctx, to.sk, c.Sender, c.Body)
		return opened{sender: c.Sender, group: c.GroupID, hint: int(c.ContentHint), text: string(pt)}, err
	}
	var r struct {
		Plaintext      []byte `json:"plaintext"`
		SenderUUID     string `json:"sender_uuid"`
		SenderDeviceID uint32 `json:"sender_device_id"`
		ContentHint    int    `json:"content_hint"`
		GroupID        []byte `json:"group_id"`
	}
	err := w.p.Call("group_sealed_decrypt", map[string]any{
		"party": to.party, "ciphertext": ct, "trust_root": w.root.PublicKey().Bytes(), "timestamp": w.now.UnixMilli(),
	}, &r)
	return opened{sender: protocol.Address{Name: r.SenderUUID, DeviceID: r.SenderDeviceID}, group: r.GroupID,
		hint: r.ContentHint, text: string(r.Plaintext)}, err
}

// mustRead checks that to reads msg: the text, the sender, the group id and the hint.
func (w *world) mustRead(to *member, msg sealedGroupMessage) {
	w.t.Helper()
	got, err := w.groupOpen(to, msg)
	if err != nil {
		w.t.Fatalf("%s opens %s's %q: %v", to.name, msg.from.name, msg.text, err)
	}
	wantHint := 0
	if msg.from.party != "" {
		wantHint = hintResendable
	}
	gid := msg.from.g.ID()
	if got.text != msg.text || got.sender != msg.from.addr || !bytes.Equal(got.group, gid[:]) || got.hint != wantHint {
		w.t.Errorf("%s opens %s's message: %q from %v, group %x, hint %d; want %q from %v, group %x, hint %d",
			to.name, msg.from.name, got.text, got.sender, got.group, got.hint, msg.text, msg.from.addr, gid[:], wantHint)
	}
}

// mustNotRead checks that libsignal member to fails to decrypt msg, with an error
// libsignal itself raised (not one of the peer's argument checks).
func (w *world) mustNotRead(to *member, msg sealedGroupMessage, why string) {
	w.t.Helper()
	got, err := w.groupOpen(to, msg)
	var le *libsignal.Error
	switch {
	case err == nil:
		w.t.Errorf("%s opens %s's %q (%s) = %q, want a libsignal error", to.name, msg.from.name, msg.text, why, got.text)
	case !errors.As(err, &le) || le.Code == "":
		w.t.Errorf("%s opens %s's %q (%s): %v; want an error libsignal raised", to.name, msg.from.name, msg.text, why, err)
	default:
		w.t.Logf("%s cannot read %s's %q (%s): %v", to.name, msg.from.name, msg.text, why, err)
	}
}

// talk has each of from send one message to the other members of its state, and every
// one of them read it.
func (w *world) talk(round string, from ...*member) {
	w.t.Helper()
	for _, f := range from {
		var to []*member
		for _, id := range f.g.State().Members {
			if id != f.id {
				to = append(to, w.members[id])
			}
		}
		msg := w.groupSend(f, fmt.Sprintf("%s from %s", round, f.name), to...)
		for _, r := range to {
			w.mustRead(r, msg)
		}
	}
}

// dists returns the distribution ids of the distribution messages to took in from from,
// in order.
func (w *world) dists(to, from *member) []uuid.UUID {
	var out []uuid.UUID
	for _, in := range w.received[to] {
		if in.from == from {
			out = append(out, in.dist)
		}
	}
	return out
}

// converged checks that the members' replicas hold equal states.
func (w *world) converged(ms ...*member) *group.State {
	w.t.Helper()
	first := ms[0].g.State()
	for _, m := range ms[1:] {
		if got := m.g.State(); got.Digest() != first.Digest() {
			w.t.Fatalf("%s's state differs from %s's:\n%+v\n%+v", m.name, ms[0].name, got, first)
		}
	}
	return first
}

func TestGroupWithLibsignalMember(t *testing.T) {
	p := libsignal.StartForTest(t)
	w := newWorld(t, p)
	alice, bob := w.goMember("alice"), w.goMember("bob")
	carol := w.libMember("carol")

	// 1:1 sessions, started both ways across the language boundary.
	w.connect(alice, bob)
	w.connect(alice, carol) // Go processes libsignal's bundle
	w.connect(carol, bob)   // libsignal processes Go's bundle

	// Alice creates the group; the create and every member's first chain travel over the
	// 1:1 sessions.
	g, u, err := group.Create(nil, alice.id, "interop", []uuid.UUID{bob.id, carol.id})
	if err != nil {
		t.Fatal(err)
	}
	alice.g = g
	w.execute(alice, u)
	w.pump()
	st := w.converged(alice, bob, carol)
	if len(st.Members) != 3 || st.Epoch != 0 {
		t.Fatalf("after create: %d members, epoch %d; want 3, 0", len(st.Members), st.Epoch)
	}
	epoch0 := st.DistributionID
	all := []*member{alice, bob, carol}
	for _, to := range all {
		for _, from := range all {
			if from != to && !slices.Equal(w.dists(to, from), []uuid.UUID{epoch0}) {
				t.Errorf("%s took in distribution messages %v from %s, want one for %v", to.name, w.dists(to, from), from.name, epoch0)
			}
		}
	}
	w.talk("round 1", alice, bob, carol)
	w.talk("round 2", carol, bob, alice)

	// Alice removes Carol: Alice and Bob start a new epoch with new chains, sent only to
	// each other; Carol learns she was removed.
	u, err = alice.g.Remove(nil, carol.id)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Plan.RotateMySenderKey || !slices.Equal(u.Plan.SendDistributionTo, []uuid.UUID{bob.id}) ||
		!slices.Contains(u.Plan.SendChangeTo, carol.id) {
		t.Fatalf("Alice's plan for removing Carol = %+v; want a rotation sent to Bob only, the change to Carol too", u.Plan)
	}
	w.execute(alice, u)
	w.pump()
	st = w.converged(alice, bob, carol)
	epoch1 := st.DistributionID
	if st.IsMember(carol.id) || st.Epoch != 1 || epoch1 == epoch0 {
		t.Fatalf("after the removal: Carol member %v, epoch %d, distribution id %v; want false, 1, not %v",
			st.IsMember(carol.id), st.Epoch, epoch1, epoch0)
	}
	for _, from := range []*member{alice, bob} {
		if ds := w.dists(carol, from); slices.Contains(ds, epoch1) {
			t.Errorf("Carol took in %s's chain of the new epoch %v", from.name, epoch1)
		}
		other := map[*member]*member{alice: bob, bob: alice}[from]
		if ds := w.dists(other, from); ds[len(ds)-1] != epoch1 {
			t.Errorf("%s's last distribution message from %s is for %v, want %v", other.name, from.name, ds[len(ds)-1], epoch1)
		}
	}

	// The next group message: Bob reads it; Carol, given a copy sealed to her (as a server
	// that still fanned out to her would), cannot.
	afterA := w.groupSend(alice, "after the removal from alice", bob, carol)
	afterB := w.groupSend(bob, "after the removal from bob", alice, carol)
	w.mustRead(bob, afterA)
	w.mustRead(alice, afterB)
	w.mustNotRead(carol, afterA, "removed")
	w.mustNotRead(carol, afterB, "removed")

	// Nor with Alice's old chain filed under the new distribution id: the new epoch's
	// chain is a new chain, not a relabelled one.
	var old []byte
	for _, in := range w.received[carol] {
		if in.from == alice && in.dist == epoch0 {
			old = in.raw
		}
	}
	var parsed struct {
		ChainID   uint32 `json:"chain_id"`
		Iteration uint32 `json:"iteration"`
		ChainKey  []byte `json:"chain_key"`
	}
	if err := p.Call("parse_skdm", map[string]any{"skdm": old}, &parsed); err != nil {
		t.Fatal(err)
	}
	oldDM, err := senderkey.NewDistributionMessage(old)
	if err != nil {
		t.Fatal(err)
	}
	var forged struct {
		SKDM []byte `json:"skdm"`
	}
	if err := p.Call("build_skdm", map[string]any{
		"version": 3, "distribution_id": epoch1.String(), "chain_id": parsed.ChainID, "iteration": parsed.Iteration,
		"chain_key": parsed.ChainKey, "signing_key": oldDM.SigningKey().Bytes(),
	}, &forged); err != nil {
		t.Fatal(err)
	}
	var next struct {
		DistributionID string `json:"distribution_id"`
		ChainID        uint32 `json:"chain_id"`
	}
	if err := p.Call("parse_sender_key_message", map[string]any{"message": afterA.inner}, &next); err != nil {
		t.Fatalf("libsignal parse_sender_key_message(Alice's) = %v", err)
	}
	if next.DistributionID != epoch1.String() || next.ChainID == parsed.ChainID {
		t.Errorf("Alice's message after the removal: distribution id %s, chain %d; want %v and not the old chain %d",
			next.DistributionID, next.ChainID, epoch1, parsed.ChainID)
	}
	if err := p.SenderKeyProcess(carol.party, alice.lib(), forged.SKDM); err != nil {
		t.Fatalf("libsignal sk_process(old chain, new id) = %v", err)
	}
	w.mustNotRead(carol, afterA, "removed, old chain under the new distribution id")

	// Alice adds Carol back: she gets the history and everyone's current chain, makes a
	// new chain of her own, and reads again; what was sent while she was out stays closed.
	u, err = alice.g.Add(nil, carol.id)
	if err != nil {
		t.Fatal(err)
	}
	w.execute(alice, u)
	w.pump()
	st = w.converged(alice, bob, carol)
	if !st.IsMember(carol.id) || st.DistributionID != epoch1 {
		t.Fatalf("after the re-add: Carol member %v, distribution id %v; want true, %v", st.IsMember(carol.id), st.DistributionID, epoch1)
	}
	for _, to := range all {
		for _, from := range all {
			if ds := w.dists(to, from); from != to && (len(ds) == 0 || ds[len(ds)-1] != epoch1) {
				t.Errorf("%s's distribution messages from %s: %v; want the last for %v", to.name, from.name, ds, epoch1)
			}
		}
	}
	w.talk("round 3", alice, carol, bob)
	w.mustNotRead(carol, afterA, "sent while she was out")
	w.mustNotRead(carol, afterB, "sent while she was out")
	w.talk("round 4", bob, alice, carol)
}
