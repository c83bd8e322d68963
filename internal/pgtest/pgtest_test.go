package pgtest

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pgx.Connect(%s) = %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartFreshDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("Start() twice = %s both times, want two databases", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	if _, err := ca.Exec(ctx, `CREATE TABLE x (v int)`); err != nil {
		t.Fatalf("CREATE TABLE = %v", err)
	}
	var n int
	if err := cb.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'x'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("table x in the second database: count %d, %v; want 0 (databases are separate)", n, err)
	}
	for _, c := range []struct{ setting, want string }{
		{"listen_addresses", "127.0.0.1"},
		{"fsync", map[bool]string{true: "on", false: "off"}[os.Getenv(EnvFsync) == "on"]},
		{"server_version_num", ""},
	} {
		var got string
		if err := ca.QueryRow(ctx, "SELECT current_setting($1)", c.setting).Scan(&got); err != nil {
			t.Fatalf("current_setting(%s) = %v", c.setting, err)
		}
		switch {
		case c.setting == "server_version_num":
			if got < "150000" || got >= "160000" {
				t.Errorf("server_version_num = %s, want PostgreSQL 15", got)
			}
		case got != c.want:
			t.Errorf("current_setting(%s) = %s, want %s", c.setting, got, c.want)
		}
	}
}

// TestStopLeavesNothing starts a private cluster and checks that Stop ends every server
// process and removes the directory.
func TestStopLeavesNothing(t *testing.T) {
	if _, err := os.Stat(binDir() + "/postgres"); err != nil {
		Start(t) // skips or fails with the reason
	}
	c, reason, err := startCluster()
	if reason != "" || err != nil {
		t.Fatalf("startCluster() = %q, %v", reason, err)
	}
	dsn, err := c.NewDatabase(context.Background())
	if err != nil {
		t.Fatalf("NewDatabase() = %v", err)
	}
	conn := connect(t, dsn)
	var backend int
	if err := conn.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		t.Fatalf("pg_backend_pid() = %v", err)
	}
	postmaster := c.cmd.Process.Pid
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	for _, pid := range []int{postmaster, backend} {
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // a backend exits once it sees the postmaster gone
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d after Stop(): kill(0) = %v, want ESRCH", pid, err)
		}
	}
	if _, err := os.Stat(c.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory after Stop(): %v, want it removed", err)
	}
	if _, err := c.NewDatabase(context.Background()); err == nil {
		t.Errorf("NewDatabase() after Stop() = nil, want an error")
	}
}

func TestRequired(t *testing.T) {
	tests := []struct {
		require, ci string
		want        bool
	}{
		{"", "", false},
		{"1", "", true},
		{"0", "", false},
		{"", "true", true},
		{"", "false", false},
		{"", "0", false},
	}
	for _, tc := range tests {
		t.Setenv(EnvRequire, tc.require)
		t.Setenv("CI", tc.ci)
		if got := required() != ""; got != tc.want {
			t.Errorf("required() with %s=%q CI=%q = %q, want required %v", EnvRequire, tc.require, tc.ci, required(), tc.want)
		}
	}
}

// TestAbsentBinaries: without the binaries startCluster reports a reason to skip, not an
// error, and starts nothing.
func TestAbsentBinaries(t *testing.T) {
	t.Setenv(EnvBinDir, t.TempDir())
	c, reason, err := startCluster()
	if c != nil || err != nil || reason == "" {
		t.Errorf("startCluster() with no binaries = %v, %q, %v; want nil, a reason, nil", c, reason, err)
	}
}
