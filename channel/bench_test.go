package channel

import (
	"fmt"
	"testing"
	"time"
)

func BenchmarkSignPost(b *testing.B) {
	f := newFixture(b)
	body := []byte("A post of about the length of a typical channel message, a sentence or two.")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.author.Next(f.owner, Draft{Kind: KindPost, Body: body, Time: f.clock}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyPost measures accepting one post: parse, authorise, verify the
// signature, check the chain.
func BenchmarkVerifyPost(b *testing.B) {
	f := newFixture(b)
	f.text(f.owner, "A post of about the length of a typical channel message, a sentence or two.")
	wire := f.server.stored[1]
	v := f.subscriber()
	g := v.genesis.Hash()
	b.ReportAllocs()
	for b.Loop() {
		p, err := ParsePost(wire)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.Accept(p); err != nil {
			b.Fatal(err)
		}
		delete(v.entries, 1)
		v.last, v.lastHash = 0, g
	}
}

func history(b *testing.B, n int) *fixture {
	f := newFixture(b)
	admin := newKey(b)
	f.publish(f.owner, Delegation{Key: admin.Public(), From: 2}.Draft(f.clock))
	for i := range n - 1 {
		key := f.owner
		if i%2 == 1 {
			key = admin
		}
		f.publish(key, Draft{Kind: KindPost, Body: fmt.Appendf(nil, "post %d of a benchmark history", i), Time: time.Unix(int64(i), 0)})
	}
	return f
}

// BenchmarkVerifyHistory1000 verifies a 1,000-post history (the owner and one admin
// alternating) from the genesis, as a new subscriber with no head does.
func BenchmarkVerifyHistory1000(b *testing.B) {
	f := history(b, 1000)
	page := f.server.page(1, f.server.last())
	b.ReportAllocs()
	for b.Loop() {
		v := f.subscriber()
		if _, err := v.AcceptPage(page, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/post")
}

// BenchmarkVerifyOlder1000 verifies the same history backwards from an owner head.
func BenchmarkVerifyOlder1000(b *testing.B) {
	f := history(b, 1000)
	head, err := f.author.SignHead(f.owner, f.clock)
	if err != nil {
		b.Fatal(err)
	}
	page := f.server.page(1, f.server.last())
	b.ReportAllocs()
	for b.Loop() {
		v, err := NewVerifierAt(f.server.get(0), head)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.AcceptOlder(page, nil); err != nil {
			b.Fatal(err)
		}
	}
}
