package channel

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseHandle(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Handle
		ok   bool
	}{
		{"@bastion", "bastion", true},
		{"bastion", "bastion", true},
		{"news_2026", "news_2026", true},
		{"abcde", "abcde", true},
		{strings.Repeat("a", 32), Handle(strings.Repeat("a", 32)), true},
		{"abcd", "", false},
		{strings.Repeat("a", 33), "", false},
		{"Bastion", "", false},
		{"bas-tion", "", false},
		{"bastion.news", "", false},
		{"2026news", "", false},
		{"_news", "", false},
		{"@@bastion", "", false},
		{"bästion", "", false},
		{"", "", false},
	} {
		got, err := ParseHandle(tt.in)
		if tt.ok {
			if err != nil || got != tt.want {
				t.Errorf("ParseHandle(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
			if got.String() != "@"+string(tt.want) {
				t.Errorf("Handle(%q).String() = %q, want @%s", got, got.String(), tt.want)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidHandle) {
			t.Errorf("ParseHandle(%q) = %q, %v, want ErrInvalidHandle", tt.in, got, err)
		}
	}
}

func TestCreateInvalid(t *testing.T) {
	key := newKey(t)
	for _, tt := range []struct {
		name string
		info Info
	}{
		{"bad handle", Info{Handle: "ab", Title: "t"}},
		{"handle with its @", Info{Handle: "@abcdef", Title: "t"}},
		{"no title", Info{Handle: "abcdef"}},
		{"long title", Info{Handle: "abcdef", Title: strings.Repeat("x", MaxTitleLen+1)}},
		{"long description", Info{Handle: "abcdef", Title: "t", Description: strings.Repeat("x", MaxDescriptionLen+1)}},
		{"invalid UTF-8", Info{Handle: "abcdef", Title: "\xff"}},
	} {
		if p, err := Create(key, tt.info, time.Now(), nil); err == nil {
			t.Errorf("Create(%s) = post %d, want an error", tt.name, p.Seq())
		}
	}
	g, err := Create(key, Info{Handle: "abcdef", Title: "t", Private: true}, time.Now(), nil)
	wantOK(t, "Create", err)
	if in := g.Info(); !in.Private || g.Channel() != DeriveID(key.Public(), in.Nonce) {
		t.Errorf("Create(private).Info() = %+v, channel %v; want private, id derived from owner key", in, g.Channel())
	}
}

func TestIDText(t *testing.T) {
	id := DeriveID(newKey(t).Public(), [16]byte{1})
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Errorf("ParseID(%q) = %v, %v, want %v", id.String(), got, err, id)
	}
	for _, s := range []string{"", "00", id.String() + "00", "zz" + id.String()[2:]} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) = nil error, want one", s)
		}
	}
}

// allKinds is a channel with every kind of post, a withheld copy, a head and a
// notice: the seeds of the round-trip test and the fuzzers.
func allKinds(t testing.TB) (posts []*Post, head *Head, notice *Notice) {
	f := newFixture(t)
	admin := newKey(t)
	f.text(f.owner, "hello, world")
	f.publish(f.owner, Delegation{Key: admin.Public(), From: 3, Until: 100}.Draft(f.clock))
	f.publish(admin, Draft{Kind: KindEdit, Ref: 1, Body: []byte("hello, channel")})
	f.publish(admin, Draft{Kind: KindDelete, Ref: 1})
	f.publish(f.owner, Revocation{Key: admin.Public(), From: 5}.Draft(f.clock))
	f.publish(f.owner, Draft{Kind: KindPost})
	for i := range f.server.stored {
		posts = append(posts, f.server.get(uint64(i)))
	}
	posts = append(posts, posts[1].Withhold())
	head, err := f.author.SignHead(f.owner, f.clock)
	wantOK(t, "SignHead", err)
	_, op, _ := ed25519.GenerateKey(nil)
	notice, err = SignNotice(op, Notice{Channel: f.author.ID(), Seq: 1, Post: posts[1].Hash(), Action: ActionRemove, Reason: "spam", Time: f.clock})
	wantOK(t, "SignNotice", err)
	return posts, head, notice
}

func TestRoundTrip(t *testing.T) {
	posts, head, notice := allKinds(t)
	for _, p := range posts {
		b := p.Bytes()
		q, err := ParsePost(b)
		if err != nil {
			t.Fatalf("ParsePost(%v %d) = %v", p.Kind(), p.Seq(), err)
		}
		if !bytes.Equal(q.Bytes(), b) || q.Hash() != p.Hash() {
			t.Errorf("ParsePost(%v %d).Bytes() differs from its input", p.Kind(), p.Seq())
		}
	}
	h, err := ParseHead(head.Bytes())
	if err != nil || !bytes.Equal(h.Bytes(), head.Bytes()) {
		t.Errorf("ParseHead(head) = %v, round trip equal %v", err, err == nil && bytes.Equal(h.Bytes(), head.Bytes()))
	}
	n, err := ParseNotice(notice.Bytes())
	if err != nil || !bytes.Equal(n.Bytes(), notice.Bytes()) {
		t.Errorf("ParseNotice(notice) = %v", err)
	}
}

// TestParsePostMalformed changes one thing in a valid post at a time; each must be
// refused, so that every post has exactly one encoding.
func TestParsePostMalformed(t *testing.T) {
	posts, _, _ := allKinds(t)
	genesis, text, deleg, del, rev := posts[0].Bytes(), posts[1].Bytes(), posts[2].Bytes(), posts[4].Bytes(), posts[5].Bytes()
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte{}, b...)) }
	set := func(off int, v ...byte) func([]byte) []byte {
		return func(b []byte) []byte { copy(b[off:], v); return b }
	}
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version 2", mod(text, set(0, 2))},
		{"kind 0", mod(text, set(1, 0))},
		{"kind 7", mod(text, set(1, 7))},
		{"truncated", text[:len(text)-1]},
		{"trailing byte", append(append([]byte{}, text...), 0)},
		{"body longer than stated", mod(text, set(headerSize+1, 0, 0, 0, 1))},
		{"body form 2", mod(text, set(headerSize, 2))},
		{"time past 2^63", mod(text, set(58, 0x80))},
		{"post at sequence 0", mod(text, set(18, u64(0)...))},
		{"post at sequence 2^62", mod(text, set(18, u64(MaxSeq)...))},
		{"genesis at sequence 1", mod(genesis, set(18, u64(1)...))},
		// Flip, not set: a random channel id starts with 0xff one time in 256, and setting
		// it would then change nothing.
		{"genesis of another channel", mod(genesis, func(b []byte) []byte { b[2] ^= 0xff; return b })},
		{"genesis with a previous hash", mod(genesis, set(26, 1))},
		{"post without previous hash", mod(text, set(26, make([]byte, 32)...))},
		{"reference in a post", mod(text, set(98, u64(1)...))},
		{"delete of itself", mod(del, set(98, u64(4)...))},
		{"delete with a body", mod(del, func(b []byte) []byte {
			b = append(b[:headerSize+1], 0, 0, 0, 1, 'x')
			return append(b, make([]byte, SignatureSize)...)
		})},
		{"no signer", mod(text, set(66, make([]byte, 32)...))},
		{"identity signer", mod(text, set(66, append([]byte{1}, make([]byte, 31)...)...))},
		{"signer off the curve", mod(text, set(66, bytes.Repeat([]byte{0xff}, 32)...))},
		{"small-order delegate", mod(deleg, set(headerSize+5, append([]byte{1}, make([]byte, 31)...)...))},
		{"delegation reaching back", mod(deleg, set(headerSize+5+32, u64(2)...))},
		{"delegation ending at its start", mod(deleg, set(headerSize+5+40, u64(3)...))},
		{"delegation to the zero key", mod(deleg, set(headerSize+5, make([]byte, 32)...))},
		{"revocation from 0", mod(rev, set(headerSize+5+32, u64(0)...))},
		{"revocation from the future", mod(rev, set(headerSize+5+32, u64(7)...))},
		{"withheld genesis", mod(posts[len(posts)-1].Bytes(), set(1, byte(KindGenesis)))},
		{"withheld delete", mod(posts[len(posts)-1].Bytes(), set(1, byte(KindDelete)))},
	} {
		if p, err := ParsePost(tt.b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParsePost(%s) = %v, %v, want ErrMalformed", tt.name, p != nil, err)
		}
	}
}

// TestFence: the server links this package to check chain integrity, so it must not
// pull in session, sender-key or client code (see internal/server's import fence).
func TestFence(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if rel, ok := strings.CutPrefix(p, "github.com/bastionchat/bastion/"); ok && rel != "channel" {
			t.Errorf("channel depends on %s; it must stay free of the rest of the module", p)
		}
	}
}

var update = flag.Bool("update", false, "rewrite the fuzz seeds in testdata/fuzz")

// TestWriteSeeds writes the seed corpus of the fuzzers from allKinds with -update.
func TestWriteSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the seeds")
	}
	posts, head, notice := allKinds(t)
	write := func(fuzzer string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		wantOK(t, "MkdirAll", os.MkdirAll(dir, 0o755))
		name := fmt.Sprintf("%x", sha256.Sum256(b))[:16]
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		wantOK(t, "WriteFile", os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	for _, p := range posts {
		write("FuzzParsePost", p.Bytes())
	}
	write("FuzzParseHead", head.Bytes())
	write("FuzzParseNotice", notice.Bytes())
}
