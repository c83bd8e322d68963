package store

import (
	"slices"
	"strings"
	"testing"
)

// TestInventoryDisclosable pins the boundary the design promises: a court order can reach
// the phone number and the connection log, and nothing else.
func TestInventoryDisclosable(t *testing.T) {
	inv := Inventory()
	var got []string
	for _, f := range inv.Disclosable() {
		got = append(got, f.Name())
	}
	slices.Sort(got)
	want := []string{"accounts.number", "connections.first_seen", "connections.ip", "connections.last_seen"}
	if !slices.Equal(got, want) {
		t.Errorf("Inventory().Disclosable() = %v, want %v", got, want)
	}
	for _, id := range []string{"phone_number", "connection_log"} {
		if c, ok := inv.Category(id); !ok || !c.Held || !c.Disclosable {
			t.Errorf("Category(%q) = %+v, %v; want held and disclosable", id, c, ok)
		}
	}
}

// TestInventoryNotHeld checks the categories the legal desk answers "not held".
func TestInventoryNotHeld(t *testing.T) {
	inv := Inventory()
	for _, id := range []string{"message_content", "message_metadata", "contacts", "groups", "channels_followed", "profile", "location"} {
		c, ok := inv.Category(id)
		if !ok || c.Held {
			t.Errorf("Category(%q) = %+v, %v; want a category that is not held", id, c, ok)
		}
		if fs := inv.FieldsIn(id); len(fs) != 0 {
			t.Errorf("FieldsIn(%q) = %d fields, want none", id, len(fs))
		}
		if !slices.ContainsFunc(inv.NotHeld(), func(n Category) bool { return n.ID == id }) {
			t.Errorf("NotHeld() lacks %q", id)
		}
	}
	if _, ok := inv.Category("no-such-category"); ok {
		t.Errorf("Category(unknown) found, want not found (a typo is not an answer)")
	}
	body, ok := inv.Field("envelopes", "body")
	if !ok || !body.Ciphertext || body.Disclosable {
		t.Errorf("Field(envelopes.body) = %+v, %v; want ciphertext, not disclosable", body, ok)
	}
	if _, ok := inv.Field("envelopes", "sender"); ok {
		t.Errorf("Field(envelopes.sender) found, want none: the queue never records a sender")
	}
}

func TestInventoryCopy(t *testing.T) {
	inv := Inventory()
	inv.Fields[0].Disclosable = !inv.Fields[0].Disclosable
	inv.Categories[0].Held = !inv.Categories[0].Held
	again := Inventory()
	if again.Fields[0].Disclosable == inv.Fields[0].Disclosable || again.Categories[0].Held == inv.Categories[0].Held {
		t.Errorf("Inventory() shares memory with an earlier result")
	}
	if _, err := parseInventory(InventoryJSON()); err != nil {
		t.Errorf("parseInventory(InventoryJSON()) = %v", err)
	}
}

func TestParseInventoryRejects(t *testing.T) {
	const cats = `"categories": [
		{"id": "a", "name": "A", "held": true, "disclosable": true, "description": "d"},
		{"id": "b", "name": "B", "held": true, "disclosable": false, "description": "d"},
		{"id": "n", "name": "N", "held": false, "disclosable": false, "description": "d"}]`
	field := func(extra string) string {
		return `{"table": "t", "column": "c", "category": "a", "purpose": "p", "retention": "r", "disclosable": true` + extra + `}`
	}
	doc := func(fields ...string) string {
		return `{"version": 1, "about": "x", ` + cats + `, "fields": [` + strings.Join(fields, ",") + `]}`
	}
	if _, err := parseInventory([]byte(doc(field("")))); err != nil {
		t.Fatalf("parseInventory(valid) = %v", err)
	}
	tests := []struct {
		name, doc string
	}{
		{"unknown key", doc(field(`, "secret": true`))},
		{"unknown category", doc(strings.Replace(field(""), `"a"`, `"zz"`, 1))},
		{"field in a category not held", doc(strings.Replace(field(`, "disclosable": false`), `"category": "a"`, `"category": "n"`, 1))},
		{"disclosable in a category that is not", doc(strings.Replace(field(""), `"category": "a"`, `"category": "b"`, 1))},
		{"disclosable ciphertext", doc(field(`, "ciphertext": true`))},
		{"duplicate field", doc(field(""), field(""))},
		{"no purpose", doc(strings.Replace(field(""), `"purpose": "p"`, `"purpose": ""`, 1))},
		{"no retention", doc(strings.Replace(field(""), `"retention": "r"`, `"retention": ""`, 1))},
		{"disclosable category without a disclosable field", doc()},
		{"no version", strings.Replace(doc(field("")), `"version": 1`, `"version": 0`, 1)},
		{"trailing data", doc(field("")) + "{}"},
	}
	for _, tc := range tests {
		if _, err := parseInventory([]byte(tc.doc)); err == nil {
			t.Errorf("parseInventory(%s) = nil error, want one", tc.name)
		}
	}
}
