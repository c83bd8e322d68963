package sqlite

import (
	"testing"

	"github.com/bastionchat/bastion/internal/store/storetest"
)

// TestInventoryMatchesSchema walks the schema a fresh database gets and fails when a
// column is not in the data inventory, or the inventory lists a column that does not
// exist: nothing is stored that the inventory does not describe.
func TestInventoryMatchesSchema(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	rows, err := s.rdb.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) == 0 {
		t.Fatal("schema has no tables")
	}

	var schema []string
	for _, table := range tables {
		cols, err := s.rdb.Query(`SELECT name FROM pragma_table_info(?)`, table)
		if err != nil {
			t.Fatal(err)
		}
		for cols.Next() {
			var col string
			if err := cols.Scan(&col); err != nil {
				t.Fatal(err)
			}
			schema = append(schema, table+"."+col)
		}
		cols.Close()
	}
	storetest.CheckInventory(t, schema)
}
