package legal

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// FuzzLogEntry: entries come from a server a verifier does not trust. Parsing must fail
// cleanly or give an entry that encodes and parses back to itself, and the report must
// never panic on any sequence of entries.
func FuzzLogEntry(f *testing.F) {
	fx := newFixture(f)
	fx.disclose(f, order(nil))
	fx.desk.Intake(context.Background(), fx.alice, order(func(o *Order) { o.LegalBasis = "" }))
	fx.desk.Withdraw(context.Background(), fx.alice, "RU", "statement", false)
	_, entries, err := VerifyLog(context.Background(), OpenLocalLog(fx.db, fx.key), fx.key.Public())
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(e, e)
	}
	f.Add([]byte(`{"kind":"outcome","order":1,"outcome":"rejected"}`), []byte(`{"kind":"received","order":1}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ComputeReport([][]byte{a, b})
		ComputeReport([][]byte{b, a})
		e, err := ParseLogEntry(a)
		if err != nil {
			return
		}
		enc, err := e.Encode()
		if err != nil {
			t.Fatalf("Encode(parsed) = %v", err)
		}
		e2, err := ParseLogEntry(enc)
		if err != nil {
			t.Fatalf("ParseLogEntry(Encode(e)) = %v", err)
		}
		enc2, _ := e2.Encode()
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip %s != %s", enc, enc2)
		}
	})
}

// FuzzParseOrder: an order file is operator input, but it comes from outside; parsing
// must fail cleanly or normalise to a fixed point.
func FuzzParseOrder(f *testing.F) {
	f.Add(order(nil))
	f.Add(order(func(o *Order) { o.NotifyAfter = "2027-01-01"; o.Targets = []string{"", "+33612345678"} }))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOrder(b, testCategories)
		if err != nil {
			return
		}
		o2, err := ParseOrder(o.Canonical(), testCategories)
		if err != nil {
			t.Fatalf("ParseOrder(Canonical) = %v", err)
		}
		if !bytes.Equal(o.Canonical(), o2.Canonical()) {
			t.Fatalf("canonical form is not a fixed point: %s != %s", o.Canonical(), o2.Canonical())
		}
		Validate(o)
		json.Valid(o.Canonical())
	})
}
