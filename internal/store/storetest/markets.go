package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/store"
)

// testMarkets checks the withdrawn-markets mirror: set, replace, list in country order,
// clear (twice, the second a no-op), and times kept to the microsecond.
func testMarkets(t *testing.T, s store.Store) {
	ctx := context.Background()
	list := func() []store.MarketWithdrawal {
		t.Helper()
		ws, err := s.MarketWithdrawals(ctx)
		if err != nil {
			t.Fatalf("MarketWithdrawals() = %v", err)
		}
		return ws
	}
	if ws := list(); len(ws) != 0 {
		t.Fatalf("MarketWithdrawals() on an empty store = %v, want none", ws)
	}
	t0 := now().Truncate(time.Microsecond)
	de := store.MarketWithdrawal{Country: "DE", Since: t0, Reason: "first statement"}
	fr := store.MarketWithdrawal{Country: "FR", Since: t0.Add(time.Hour), Reason: "no backdoor"}
	for _, w := range []store.MarketWithdrawal{fr, de} {
		if err := s.SetMarketWithdrawal(ctx, w); err != nil {
			t.Fatalf("SetMarketWithdrawal(%s) = %v", w.Country, err)
		}
	}
	de.Reason, de.Since = "second statement", t0.Add(2*time.Hour)
	if err := s.SetMarketWithdrawal(ctx, de); err != nil {
		t.Fatalf("SetMarketWithdrawal(DE again) = %v", err)
	}
	ws := list()
	if len(ws) != 2 || ws[0].Country != "DE" || ws[1].Country != "FR" {
		t.Fatalf("MarketWithdrawals() = %+v, want DE then FR", ws)
	}
	if ws[0].Reason != de.Reason || !ws[0].Since.Equal(de.Since) {
		t.Errorf("MarketWithdrawals()[DE] = %+v, want the replaced %+v", ws[0], de)
	}
	if !ws[1].Since.Equal(fr.Since) || ws[1].Reason != fr.Reason {
		t.Errorf("MarketWithdrawals()[FR] = %+v, want %+v", ws[1], fr)
	}
	for range 2 {
		if err := s.ClearMarketWithdrawal(ctx, "DE"); err != nil {
			t.Fatalf("ClearMarketWithdrawal(DE) = %v, want nil (also when absent)", err)
		}
	}
	if ws := list(); len(ws) != 1 || ws[0].Country != "FR" {
		t.Errorf("MarketWithdrawals() after clearing DE = %+v, want FR only", ws)
	}
}
