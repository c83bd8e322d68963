package reliability

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

var bin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bastion-reliability")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if bin, err = Build(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// permissive raises the limits every request from one loopback address would hit.
var permissive = []string{"--rate-verify-ip", "100000/1h", "--rate-verify-prefix", "100000/1h",
	"--rate-verify-number", "100000/1h", "--rate-bundle-pair", "1000000/1h", "--shutdown-timeout", "3s"}

// start runs bastiond for t with the given flags, killed at the end.
func start(t *testing.T, args ...string) *Server {
	t.Helper()
	s, err := Start(context.Background(), bin, t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

func register(t *testing.T, s *Server, number string, k KeyOptions) *Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := s.Register(ctx, number, k)
	if err != nil {
		t.Fatalf("Register(%s) = %v", number, err)
	}
	return d
}
