package legal

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminSocket(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sock := filepath.Join(f.dir, SocketFile)
	stop, err := f.desk.ServeAdmin(ctx, sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want 0600", fi.Mode().Perm())
	}
	if _, err := f.desk.ServeAdmin(ctx, sock, nil); err == nil {
		t.Error("ServeAdmin on a live socket = nil, want an error")
	}

	tokA, _ := AddOperator(ctx, f.db, "carol", f.clock.now())
	tokB, _ := AddOperator(ctx, f.db, "dave", f.clock.now())
	if _, err := AddOperator(ctx, f.db, "carol", f.clock.now()); err == nil {
		t.Error("AddOperator(existing name) = nil, want an error")
	}
	a, b := NewClient(sock, tokA), NewClient(sock, tokB)
	if _, err := NewClient(sock, "blo_wrong").List(ctx); err == nil || !strings.Contains(err.Error(), "unknown operator") {
		t.Errorf("List(bad token) = %v, want unknown operator", err)
	}
	r, err := a.Intake(ctx, order(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Approve(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Disclose(ctx, r.ID); err == nil || !strings.Contains(err.Error(), "two different operators") {
		t.Errorf("Disclose(one approval) over the socket = %v, want the two-operator error", err)
	}
	if _, err := b.Approve(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	pkg, sig, err := b.Disclose(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyPackage(f.key.Public(), pkg, sig); err != nil {
		t.Errorf("package over the socket does not verify: %v", err)
	}
	list, err := a.List(ctx)
	if err != nil || len(list) != 1 || list[0].Outcome != OutcomeFulfilled {
		t.Errorf("List = %+v, %v; want the one fulfilled order", list, err)
	}
	if _, err := a.Show(ctx, 99); err == nil || !strings.Contains(err.Error(), "no such order") {
		t.Errorf("Show(99) = %v, want no such order", err)
	}
	if _, err := a.Withdraw(ctx, "KP", "statement", false); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(ctx, "KP"); err != nil {
		t.Fatal(err)
	}
}
