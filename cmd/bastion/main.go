// Command bastion is the Bastion client for people and scripts: it registers a phone
// number, sends and receives end-to-end encrypted messages through a bastiond server,
// and shows and accepts contacts' safety numbers. Its state is one profile directory.
//
// Usage:
//
//	bastion [global flags] <command> [arguments]
//
// Run "bastion help" for the commands and flags. Every global flag can also be set with
// an environment variable (--server is BASTION_SERVER); a flag on the command line wins.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
