package store

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// inventoryJSON is the data inventory as shipped in the binary and served at
// /v1/inventory. Every backend's tests check their schema against it, column by column.
//
//go:embed inventory.json
var inventoryJSON []byte

// DataInventory is the machine-readable list of everything the server stores, and of
// the data categories it does not hold. Get it with [Inventory].
type DataInventory struct {
	Version    int        `json:"version"`
	About      string     `json:"about"`
	Categories []Category `json:"categories"`
	Fields     []Field    `json:"fields"`
}

// Category is a kind of data a request (a court order, a user's access request) can ask
// for. Held reports whether the service stores it at all; a category with Held false has
// no fields, so "not held" is the inventory's answer, by construction.
type Category struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Held        bool   `json:"held"`
	Disclosable bool   `json:"disclosable"` // some of its fields can be disclosed to a court order
	Description string `json:"description"`
}

// Field is one stored column: table.column in every backend's schema.
type Field struct {
	Table       string `json:"table"`
	Column      string `json:"column"`
	Category    string `json:"category"`
	Purpose     string `json:"purpose"`
	Retention   string `json:"retention"`
	Disclosable bool   `json:"disclosable"` // a court order can reach it
	Ciphertext  bool   `json:"ciphertext"`  // end-to-end encrypted; the service holds no key
}

// Name returns "table.column".
func (f Field) Name() string { return f.Table + "." + f.Column }

var parsedInventory = sync.OnceValues(func() (DataInventory, error) { return parseInventory(inventoryJSON) })

// Inventory returns the embedded data inventory. The result is the caller's own copy.
func Inventory() DataInventory {
	inv, err := parsedInventory()
	if err != nil {
		panic("store: embedded inventory.json is invalid: " + err.Error()) // a build defect; tests catch it
	}
	inv.Categories = slices.Clone(inv.Categories)
	inv.Fields = slices.Clone(inv.Fields)
	return inv
}

// InventoryJSON returns the embedded inventory document as shipped, for serving.
func InventoryJSON() []byte { return bytes.Clone(inventoryJSON) }

// Field returns the field stored in table.column.
func (inv DataInventory) Field(table, column string) (Field, bool) {
	i := slices.IndexFunc(inv.Fields, func(f Field) bool { return f.Table == table && f.Column == column })
	if i < 0 {
		return Field{}, false
	}
	return inv.Fields[i], true
}

// Category returns the category with the given id. An id the inventory does not know is
// reported as not found rather than as not held, so that a typo is not an answer.
func (inv DataInventory) Category(id string) (Category, bool) {
	i := slices.IndexFunc(inv.Categories, func(c Category) bool { return c.ID == id })
	if i < 0 {
		return Category{}, false
	}
	return inv.Categories[i], true
}

// FieldsIn returns the fields of one category, in inventory order.
func (inv DataInventory) FieldsIn(category string) []Field {
	var fs []Field
	for _, f := range inv.Fields {
		if f.Category == category {
			fs = append(fs, f)
		}
	}
	return fs
}

// Disclosable returns the fields a court order can reach.
func (inv DataInventory) Disclosable() []Field {
	var fs []Field
	for _, f := range inv.Fields {
		if f.Disclosable {
			fs = append(fs, f)
		}
	}
	return fs
}

// NotHeld returns the categories the service does not store.
func (inv DataInventory) NotHeld() []Category {
	var cs []Category
	for _, c := range inv.Categories {
		if !c.Held {
			cs = append(cs, c)
		}
	}
	return cs
}

// parseInventory decodes an inventory strictly and checks that it is coherent.
func parseInventory(b []byte) (DataInventory, error) {
	var inv DataInventory
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&inv); err != nil {
		return DataInventory{}, fmt.Errorf("parsing inventory: %w", err)
	}
	if dec.More() {
		return DataInventory{}, errors.New("parsing inventory: trailing data")
	}
	if err := inv.validate(); err != nil {
		return DataInventory{}, fmt.Errorf("parsing inventory: %w", err)
	}
	return inv, nil
}

// validate checks the rules that make the inventory an answer: every field is described,
// in a held category, and disclosable only where its category is; a category not held
// has no field.
func (inv DataInventory) validate() error {
	if inv.Version <= 0 {
		return errors.New("missing version")
	}
	cats := map[string]Category{}
	for _, c := range inv.Categories {
		if c.ID == "" || c.Name == "" || c.Description == "" {
			return fmt.Errorf("category %q: id, name and description are required", c.ID)
		}
		if _, dup := cats[c.ID]; dup {
			return fmt.Errorf("category %q listed twice", c.ID)
		}
		if !c.Held && c.Disclosable {
			return fmt.Errorf("category %q: disclosable but not held", c.ID)
		}
		cats[c.ID] = c
	}
	seen := map[string]bool{}
	for _, f := range inv.Fields {
		if f.Table == "" || f.Column == "" || f.Purpose == "" || f.Retention == "" {
			return fmt.Errorf("field %s: table, column, purpose and retention are required", f.Name())
		}
		if seen[f.Name()] {
			return fmt.Errorf("field %s listed twice", f.Name())
		}
		seen[f.Name()] = true
		c, ok := cats[f.Category]
		switch {
		case !ok:
			return fmt.Errorf("field %s: unknown category %q", f.Name(), f.Category)
		case !c.Held:
			return fmt.Errorf("field %s: stored, but its category %q says not held", f.Name(), c.ID)
		case f.Disclosable && !c.Disclosable:
			return fmt.Errorf("field %s: disclosable in a category that is not", f.Name())
		case f.Disclosable && f.Ciphertext:
			return fmt.Errorf("field %s: ciphertext cannot be disclosable", f.Name())
		}
	}
	for _, c := range inv.Categories {
		if c.Disclosable && !slices.ContainsFunc(inv.Fields, func(f Field) bool { return f.Category == c.ID && f.Disclosable }) {
			return fmt.Errorf("category %q: disclosable without a disclosable field", c.ID)
		}
	}
	return nil
}
