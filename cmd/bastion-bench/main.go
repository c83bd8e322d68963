// Command bastion-bench is the load generator of docs/bench/server.md: it drives a real
// bastiond over loopback with simulated devices registered through the public API, and
// writes a markdown report.
//
// Usage:
//
//	bastion-bench [flags]
//
// By default it builds bastiond (go build) into a temporary directory and runs it there
// on 127.0.0.1 with a fresh data directory and rate limits raised (every simulated device
// connects from the same address); --bastiond names a binary to use instead, and
// --server URL with --console FILE points it at a server someone else runs (FILE is where
// that server's standard error, the development SMS console, goes).
//
// Envelope bodies are 256 random bytes: the server cannot tell them from ciphertext.
// Senders send over HTTP (PUT /v1/messages) or, with --transport ws, over their own
// WebSocket (the "send" frame); recipients are connected over WebSocket and ack what they
// receive. Modes, run in this order when listed in --modes:
//
//	closed   every sender sends as fast as its answers come back, for --duration:
//	         sustained send -> durable -> delivered -> acked messages per second
//	open     sends at a fixed --rate for --duration: p50/p99/p999 of send -> durable
//	         and send -> delivered, measured from the scheduled send time
//	drain    queues --drain envelopes for an offline device, then connects it and times
//	         the drain to the last envelope
//	bundles  fetches prekey bundles from --fetchers goroutines for --duration
//	idle     opens --idle idle WebSockets and reads the server's RSS and Go heap before
//	         and after (raises RLIMIT_NOFILE for itself and the server it starts)
//
// Server CPU time per message is the delta of utime+stime in /proc/<pid>/stat over a
// mode's run; it needs the server's pid (a server it started, or --pid).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bastion-bench:", err)
		os.Exit(1)
	}
}

type config struct {
	bastiond, server, console string
	pid                       int
	transport                 string
	modes                     []string
	senders                   int
	rate                      int
	duration                  time.Duration
	drain                     int
	fetchers                  int
	bundleKeys                int
	idle                      int
	report                    string
	serverArgs                string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	var modes string
	fs := flag.NewFlagSet("bastion-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.bastiond, "bastiond", "", "bastiond `binary` to run (default: go build it)")
	fs.StringVar(&c.server, "server", "", "use the server at `URL` instead of starting one")
	fs.StringVar(&c.console, "console", "", "with --server: the `file` its standard error (dev SMS codes) goes to")
	fs.IntVar(&c.pid, "pid", 0, "with --server: its process id, for CPU and memory figures")
	fs.StringVar(&c.transport, "transport", "http", "how senders send: http (PUT /v1/messages) or ws (the WebSocket send frame)")
	fs.StringVar(&modes, "modes", "closed,open,drain,bundles,idle", "comma-separated `modes` to run")
	fs.IntVar(&c.senders, "senders", 64, "sending devices (each with its own recipient device)")
	fs.IntVar(&c.rate, "rate", 2000, "open loop: messages per second")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long closed, open and bundles run")
	fs.IntVar(&c.drain, "drain", 50000, "drain: envelopes queued for the offline device")
	fs.IntVar(&c.fetchers, "fetchers", 32, "bundles: concurrent fetchers")
	fs.IntVar(&c.bundleKeys, "bundle-keys", 1000, "bundles: one-time keys of each kind per target device (8 targets)")
	fs.IntVar(&c.idle, "idle", 10000, "idle: WebSocket connections to open")
	fs.StringVar(&c.report, "report", "", "append the markdown report to this `file` (default: standard output)")
	fs.StringVar(&c.serverArgs, "server-args", "", "extra bastiond serve flags, space-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.modes = strings.Split(modes, ",")
	if c.transport != "http" && c.transport != "ws" {
		return fmt.Errorf("--transport must be http or ws, not %q", c.transport)
	}
	out := stdout
	if c.report != "" {
		f, err := os.OpenFile(c.report, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	b, err := newBench(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	return b.run(ctx, out)
}
