package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

const marketUsage = `Usage: bastiond market COMMAND [flags]

Withdraw the service from a country, or restore it (docs/lawful-access.md). Talks to the
running bastiond through DATA/legal.sock, as an operator (--token-file FILE or
BASTION_LEGAL_TOKEN).

  withdraw CC --reason TEXT [--close-existing]
        refuse new registrations with numbers of country CC (ISO 3166-1 alpha-2), with
        HTTP 451 "market_withdrawn" pointing at the published statement TEXT; with
        --close-existing, also notify and disconnect the accounts of CC connected now
  restore CC
        accept registrations from CC again

Both are published on /transparency, at /v1/markets and in the legal log.
`

func marketCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if code, done := helpAsked(args, marketUsage, stdout); done {
		return code
	}
	cmd := args[0]
	fs, f := newDeskFlags("bastiond market "+cmd, getenv, stderr)
	pos, err := parseInterleaved(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	return exitStatus(stderr, "bastiond market "+cmd, marketUsage, runMarket(context.Background(), cmd, pos, f, getenv, stdout))
}

func runMarket(ctx context.Context, cmd string, pos []string, f *deskFlags, getenv func(string) string, stdout io.Writer) error {
	switch cmd {
	case "withdraw":
		if err := wantArgs(pos, 1, "a country code CC"); err != nil {
			return err
		}
		if strings.TrimSpace(f.reason) == "" {
			return usageError{"--reason TEXT is required: it is the published statement"}
		}
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		w, err := c.Withdraw(ctx, pos[0], f.reason, f.closeExisting)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "withdrawn from %s since %s; registrations from %s numbers are refused\n",
			w.Country, w.WithdrawnAt.Format("2006-01-02"), w.Country)
		return nil
	case "restore":
		if err := wantArgs(pos, 1, "a country code CC"); err != nil {
			return err
		}
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		if err := c.Restore(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "restored %s; registrations are accepted again\n", strings.ToUpper(pos[0]))
		return nil
	default:
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}
