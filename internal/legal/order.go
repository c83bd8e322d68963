package legal

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Order is a court order as the desk takes it in (legal intake --file order.json).
type Order struct {
	IssuingAuthority string   `json:"issuing_authority"`
	Court            string   `json:"court"`
	Jurisdiction     string   `json:"jurisdiction"` // ISO 3166-1 alpha-2, e.g. "DE"
	LegalBasis       string   `json:"legal_basis"`
	CaseReference    string   `json:"case_reference"`
	DateIssued       string   `json:"date_issued"` // YYYY-MM-DD
	Targets          []string `json:"targets"`     // phone numbers in international form
	Categories       []string `json:"categories"`  // data inventory category ids
	// NotifyAfter defers the notice to the affected users until this date (YYYY-MM-DD,
	// 00:00 UTC); empty means notify when the order is answered.
	NotifyAfter string `json:"notify_after,omitempty"`
}

// maxOrderSize bounds an order file: a court order's fields are short.
const maxOrderSize = 64 << 10

// maxTargets bounds the targets of one order; a larger order is for a court to split.
const maxTargets = 1000

const dateLayout = "2006-01-02"

// ParseOrder decodes an order strictly and normalises it: fields trimmed, the
// jurisdiction upper-cased, categories deduplicated and sorted. It fails on what an
// operator must fix before intake (malformed JSON, an unknown field, a bad date or
// country code, a category the inventory does not know); what makes an order invalid in
// law (no basis, no authority, no target) is for [Validate], and is recorded as a
// rejection.
func ParseOrder(b []byte, categories []Category) (Order, error) {
	if len(b) > maxOrderSize {
		return Order{}, fmt.Errorf("order is over %d bytes", maxOrderSize)
	}
	var o Order
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return Order{}, fmt.Errorf("parsing order: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Order{}, errors.New("parsing order: trailing data after the JSON object")
	}
	for _, s := range []*string{&o.IssuingAuthority, &o.Court, &o.Jurisdiction, &o.LegalBasis, &o.CaseReference, &o.DateIssued, &o.NotifyAfter} {
		*s = strings.TrimSpace(*s)
	}
	o.Jurisdiction = strings.ToUpper(o.Jurisdiction)
	if len(o.Jurisdiction) != 2 || o.Jurisdiction[0] < 'A' || o.Jurisdiction[0] > 'Z' || o.Jurisdiction[1] < 'A' || o.Jurisdiction[1] > 'Z' {
		return Order{}, fmt.Errorf("jurisdiction %q is not an ISO 3166-1 alpha-2 country code", o.Jurisdiction)
	}
	if _, err := time.Parse(dateLayout, o.DateIssued); err != nil {
		return Order{}, fmt.Errorf("date_issued %q is not YYYY-MM-DD", o.DateIssued)
	}
	if o.NotifyAfter != "" {
		if _, err := time.Parse(dateLayout, o.NotifyAfter); err != nil {
			return Order{}, fmt.Errorf("notify_after %q is not YYYY-MM-DD", o.NotifyAfter)
		}
	}
	if len(o.Targets) > maxTargets {
		return Order{}, fmt.Errorf("order names %d targets, at most %d are taken in one order", len(o.Targets), maxTargets)
	}
	for i, t := range o.Targets {
		o.Targets[i] = strings.TrimSpace(t)
	}
	if len(o.Categories) == 0 {
		return Order{}, errors.New("order requests no data category")
	}
	for i, c := range o.Categories {
		c = strings.TrimSpace(c)
		o.Categories[i] = c
		// An id the inventory does not know is a typo to fix, not an answer: "not held"
		// is given only for what the inventory lists as not held.
		if !slices.ContainsFunc(categories, func(k Category) bool { return k.ID == c }) {
			return Order{}, fmt.Errorf("unknown data category %q; the inventory lists: %s", c, categoryIDs(categories))
		}
	}
	slices.Sort(o.Categories)
	o.Categories = slices.Compact(o.Categories)
	return o, nil
}

func categoryIDs(cs []Category) string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return strings.Join(ids, ", ")
}

// Canonical returns the order's canonical encoding: the JSON of the normalised order,
// fields in declaration order, no insignificant space. Its SHA-256 is the order's hash in
// the public log.
func (o Order) Canonical() []byte {
	b, err := json.Marshal(o)
	if err != nil {
		panic("legal: marshalling an order: " + err.Error()) // strings only; cannot fail
	}
	return b
}

// Hash returns SHA-256 of [Order.Canonical].
func (o Order) Hash() [32]byte { return sha256.Sum256(o.Canonical()) }

// Reason is one recorded reason: for a rejection, for a category not given, or for a
// target not answered. Subject is a category id, a target's position ("target 2") or
// "order".
type Reason struct {
	Subject string `json:"subject"`
	Reason  string `json:"reason"`
}

// Validate returns the reasons an order is invalid and must be rejected: no legal basis,
// no issuing authority, no target.
func Validate(o Order) []Reason {
	var rs []Reason
	if o.LegalBasis == "" {
		rs = append(rs, Reason{"order", "no legal basis given"})
	}
	if o.IssuingAuthority == "" {
		rs = append(rs, Reason{"order", "no issuing authority given"})
	}
	if !slices.ContainsFunc(o.Targets, func(t string) bool { return t != "" }) {
		rs = append(rs, Reason{"order", "no target named"})
	}
	return rs
}

// split sorts requested categories into those the desk discloses and the reasons for
// the others, from the inventory alone.
func split(requested []string, inv []Category) (give []string, notGiven []Reason) {
	for _, id := range requested {
		i := slices.IndexFunc(inv, func(c Category) bool { return c.ID == id })
		switch {
		case i < 0:
			notGiven = append(notGiven, Reason{id, "unknown category"})
		case !inv[i].Held:
			notGiven = append(notGiven, Reason{id, "not held"})
		case !inv[i].Disclosable || (id != CategoryPhoneNumber && id != CategoryConnectionLog):
			notGiven = append(notGiven, Reason{id, "held but not disclosable"})
		default:
			give = append(give, id)
		}
	}
	return give, notGiven
}
