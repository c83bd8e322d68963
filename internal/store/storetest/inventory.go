package storetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/bastionchat/bastion/internal/store"
)

// CheckInventory compares a backend's schema, every column as "table.column", with the
// data inventory: it fails t for a stored column the inventory does not describe and for
// an inventory field the schema does not have, so nothing is stored undescribed.
func CheckInventory(t *testing.T, columns []string) {
	t.Helper()
	if len(columns) == 0 {
		t.Fatal("schema has no columns")
	}
	inv := store.Inventory()
	for _, c := range columns {
		table, col, _ := strings.Cut(c, ".")
		if _, ok := inv.Field(table, col); !ok {
			t.Errorf("column %s.%s is stored but not in inventory.json: describe its purpose, retention and disclosability", table, col)
		}
	}
	for _, f := range inv.Fields {
		if !slices.Contains(columns, f.Name()) {
			t.Errorf("inventory.json lists %s, which the schema does not have", f.Name())
		}
	}
}
