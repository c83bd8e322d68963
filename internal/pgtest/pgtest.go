// Package pgtest starts a throwaway PostgreSQL cluster for tests, from the machine's own
// binaries (/usr/lib/postgresql/15/bin, or $BASTION_PG_BIN): no Docker, no download.
//
// A package that wants one cluster for all its tests (the fast way: initdb runs once,
// each test gets a new database in a few milliseconds) calls [Main] from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and each test calls [Start] for the DSN of a fresh, empty database. Without [Main],
// [Start] starts a cluster for that one test and stops it when the test ends.
//
// What it guarantees: the cluster listens on 127.0.0.1 only (a free port) and on a unix
// socket inside its own temporary directory; it is stopped (an immediate shutdown, as
// `pg_ctl stop -m immediate`) and its directory removed when the tests end, and if the
// test binary dies first the postmaster gets SIGKILL from the kernel (parent-death
// signal), so no PostgreSQL process outlives the tests.
//
// What it does not: durability. fsync is off by default because the cluster is thrown
// away after the run and a crash of the machine loses nothing we keep; it makes every
// commit a memory write, so tests run in seconds. Benchmarks that measure commit cost set
// BASTION_PGTEST_FSYNC=on. Authentication is "trust": only this machine's loopback and a
// socket in a private directory can reach it, and it holds nothing but test data.
//
// When the binaries are absent the tests are skipped with the reason, unless
// BASTION_REQUIRE_POSTGRES=1 or CI is set (as .ci/run does), which turns that into a
// failure. initdb refuses to run
// as root, so under root the server runs as the "postgres" user; if there is none, the
// tests fail and say so.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultBinDir is where Debian's postgresql-15 package puts the server binaries.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Environment variables the package reads.
const (
	// EnvRequire set to 1 makes missing binaries a test failure instead of a skip (as
	// does a non-empty CI other than "false" or "0").
	EnvRequire = "BASTION_REQUIRE_POSTGRES"
	// EnvBinDir overrides [DefaultBinDir].
	EnvBinDir = "BASTION_PG_BIN"
	// EnvFsync set to "on" runs the cluster with fsync, for benchmarks of commit cost.
	EnvFsync = "BASTION_PGTEST_FSYNC"
)

// startTimeout bounds initdb plus server start-up; a healthy machine needs 1-2 s.
const startTimeout = 60 * time.Second

// Cluster is one running PostgreSQL server.
type Cluster struct {
	dir  string // temporary directory: data/, sock/, server.log
	port int
	bin  string
	cred *syscall.Credential // nil: run as ourselves
	cmd  *exec.Cmd
	exit chan struct{} // closed when the postmaster has exited
	err  error         // the postmaster's exit status, valid after exit is closed

	mu    sync.Mutex
	admin *pgx.Conn // to the "postgres" database, for CREATE DATABASE
	dbs   atomic.Int64
}

var shared struct {
	inMain bool
	once   sync.Once
	c      *Cluster
	err    error
	skip   string
}

// Main runs m with one cluster shared by the package's tests, started by the first
// [Start] and stopped after the tests. It returns m.Run's exit code.
func Main(m *testing.M) int {
	shared.inMain = true
	code := m.Run()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Start returns the DSN of a new, empty database on a running cluster: the package's
// shared one under [Main], otherwise one started for t and stopped when t ends. It skips
// t (or fails it under BASTION_REQUIRE_POSTGRES=1) when PostgreSQL is not installed.
func Start(t testing.TB) string {
	t.Helper()
	var c *Cluster
	if shared.inMain {
		shared.once.Do(func() { shared.c, shared.skip, shared.err = startCluster() })
		c = shared.c
		if shared.skip != "" {
			skip(t, shared.skip)
		}
		if shared.err != nil {
			t.Fatalf("pgtest: %v", shared.err)
		}
	} else {
		var reason string
		var err error
		c, reason, err = startCluster()
		if reason != "" {
			skip(t, reason)
		}
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		t.Cleanup(func() {
			if err := c.Stop(); err != nil {
				t.Errorf("pgtest: stopping cluster: %v", err)
			}
		})
	}
	dsn, err := c.NewDatabase(context.Background())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// NewCluster starts a cluster for t alone, stopped when t ends: for tests that crash or
// restart the server. Most tests want [Start].
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, reason, err := startCluster()
	if reason != "" {
		skip(t, reason)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("pgtest: stopping cluster: %v", err)
		}
	})
	return c
}

func skip(t testing.TB, reason string) {
	t.Helper()
	if why := required(); why != "" {
		t.Fatalf("pgtest: %s, and %s requires PostgreSQL", reason, why)
	}
	t.Skipf("pgtest: %s (install postgresql-15, or set %s)", reason, EnvBinDir)
}

// required says why a missing PostgreSQL is a failure here, or "" if it may be skipped:
// BASTION_REQUIRE_POSTGRES=1, or CI set (as .ci/run and most CI systems do), so that CI
// can never pass by skipping.
func required() string {
	if os.Getenv(EnvRequire) == "1" {
		return EnvRequire + "=1"
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		return "CI=" + ci
	}
	return ""
}

func binDir() string {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d
	}
	return DefaultBinDir
}

// startCluster runs initdb and starts the server. A non-empty reason means PostgreSQL
// is not installed (skip); err means it is but did not start (fail).
func startCluster() (c *Cluster, reason string, err error) {
	bin := binDir()
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, fmt.Sprintf("no %s in %s", name, bin), nil
		}
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, "", fmt.Errorf("creating cluster directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		// The server user owns the whole directory; os.MkdirTemp made it 0700 and /tmp's
		// sticky, world-traversable mode lets that user reach it.
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, "", fmt.Errorf("handing the cluster directory to the postgres user: %w", err)
		}
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// --no-sync and the C locale: nothing here is kept, and the C locale needs no
	// locale files installed. trust: see the package doc.
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "--pgdata", data, "--username", "postgres",
		"--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions")
	initdb.Env = serverEnv()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if cred != nil {
		if err := os.Mkdir(sock, 0o700); err != nil {
			return nil, "", err
		}
		if err := os.Chown(sock, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, "", err
		}
	} else if err := os.Mkdir(sock, 0o700); err != nil {
		return nil, "", err
	}

	// A port picked free can be taken before the server binds it: retry a few times.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		c = &Cluster{dir: dir, port: port, bin: bin, cred: cred}
		if lastErr = c.run(ctx); lastErr == nil {
			return c, "", nil
		}
	}
	return nil, "", lastErr
}

// serverCredential returns the postgres user's ids when running as root (initdb and the
// server refuse root), or nil to run as ourselves.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses root, but there is no postgres user to run it as (%v): run the tests as another user or install the postgresql package, which creates one", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user has non-numeric ids %s:%s", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// serverEnv is a minimal environment: no PG* variables of the caller leak in.
func serverEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts the postmaster and waits until it accepts connections.
func (c *Cluster) run(ctx context.Context) error {
	bin, cred := c.bin, c.cred
	c.exit = make(chan struct{})
	fsync := "off"
	if os.Getenv(EnvFsync) == "on" {
		fsync = "on"
	}
	logPath := filepath.Join(c.dir, "server.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	c.cmd = exec.Command(filepath.Join(bin, "postgres"),
		"-D", filepath.Join(c.dir, "data"),
		"-p", strconv.Itoa(c.port),
		"-k", filepath.Join(c.dir, "sock"),
		"-c", "listen_addresses=127.0.0.1", // loopback only
		"-c", "fsync="+fsync,
		"-c", "full_page_writes="+fsync,
		"-c", "max_connections=300", // a few pools per test, many tests in a package
		"-c", "shared_buffers=64MB",
		"-c", "log_min_messages=warning",
	)
	c.cmd.Env = serverEnv()
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	// Pdeathsig: if the test binary dies (a panic, a timeout, SIGKILL) the kernel kills
	// the postmaster, and its backends follow it. The signal fires when the thread that
	// started the process exits, so that thread stays locked until the postmaster is gone.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = c.cmd.Wait()
		close(c.exit)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}

	dsn := c.dsn("postgres")
	for {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			c.admin = conn
			return nil
		}
		select {
		case <-c.exit:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited during start-up (%v):\n%s", c.err, tail(out))
		case <-ctx.Done():
			c.kill()
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres did not accept connections within %v (%v):\n%s", startTimeout, err, tail(out))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func tail(b []byte) []byte {
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return bytes.TrimSpace(b)
}

func (c *Cluster) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// NewDatabase creates an empty database and returns its DSN.
func (c *Cluster) NewDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d", c.dbs.Add(1))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.admin == nil {
		return "", errors.New("cluster stopped")
	}
	// FILE_COPY: with fsync off, copying template1's files beats WAL-logging each page.
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+name+" STRATEGY = FILE_COPY"); err != nil {
		return "", fmt.Errorf("creating database: %w", err)
	}
	return c.dsn(name), nil
}

// Stop shuts the server down at once (SIGQUIT, what `pg_ctl stop -m immediate` sends:
// no checkpoint, nothing here is kept), waits for it and removes its directory.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.admin != nil {
		c.admin.Close(context.Background())
		c.admin = nil
	}
	c.mu.Unlock()
	select {
	case <-c.exit:
	default:
		c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.exit:
		case <-time.After(10 * time.Second):
			c.kill()
		}
	}
	return os.RemoveAll(c.dir)
}

// Crash kills the server and all its backends with SIGKILL, as a crash of the database
// host would (except that the kernel keeps what was written to it: with fsync off, that
// is the only difference). Committed transactions survive it; [Cluster.Restart] runs
// crash recovery.
func (c *Cluster) Crash() {
	c.mu.Lock()
	if c.admin != nil {
		c.admin.Close(context.Background())
		c.admin = nil
	}
	c.mu.Unlock()
	c.kill()
}

// Restart starts a crashed or stopped-by-Crash server again on the same data directory
// and port, and waits until it accepts connections (after crash recovery).
func (c *Cluster) Restart() error {
	select {
	case <-c.exit:
	default:
		return errors.New("restarting: the server is still running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	for range 3 { // a dying backend may still hold the old shared memory for a moment
		if err = c.run(ctx); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// kill sends SIGKILL to the server's process group, waits for the postmaster, then for
// every backend: one forked as the signal went out can outlive the postmaster for a
// moment, holding the shared memory a restart needs.
func (c *Cluster) kill() {
	pgid := c.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-c.exit
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
		syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(5 * time.Millisecond)
	}
}
