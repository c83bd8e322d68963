package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/internal/legal"
)

const adminUsage = `Usage: bastiond admin reports [COMMAND] [flags]

Review reports of public channel posts (notice and action, EU Digital Services Act
Art. 16 and 17; docs/channels.md). Talks to the running bastiond through DATA/legal.sock,
as an operator (--token-file FILE or BASTION_LEGAL_TOKEN).

  reports [list] [--all]            the open reports, oldest first; --all: every report
  reports show ID                   a report, the post it names and the notices on it
  reports dismiss ID --reason TEXT  dismiss it (the reason stays in the desk); a report
                                    of a post already restricted or removed is counted
                                    as a duplicate
  reports restrict ID --country CC --reason TEXT
                                    withhold the post's body from readers whose phone
                                    numbers belong to country CC (ISO 3166-1 alpha-2)
  reports remove ID --reason TEXT   withhold the post's body from every reader

For restrict and remove, TEXT is the statement of reasons, at most 1,024 bytes: the
ground, the facts and how to appeal. It is signed into the notice that the channel's
owner and every reader shown the withheld post receive, so it never names the notifier.
Every report and every decision is counted on /transparency and in the legal log.

Common flags: --data DIR (default ./bastion-data, or BASTION_DATA), --token-file FILE.
`

func adminCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if code, done := helpAsked(args, adminUsage, stdout); done {
		return code
	}
	if args[0] != "reports" {
		fmt.Fprintf(stderr, "bastiond admin: unknown command %q\n\n%s", args[0], adminUsage)
		return 2
	}
	args = args[1:]
	cmd := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	fs, f := newDeskFlags("bastiond admin reports "+cmd, getenv, stderr)
	var country string
	var all bool
	fs.StringVar(&country, "country", "", "the ISO 3166-1 alpha-2 `code` a restriction applies in")
	fs.BoolVar(&all, "all", false, "list every report, not only the open ones")
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	return exitStatus(stderr, "bastiond admin reports "+cmd, adminUsage, runReports(context.Background(), cmd, pos, f, country, all, getenv, stdout, stderr))
}

func reportArg(pos []string) (string, error) {
	if err := wantArgs(pos, 1, "one report ID"); err != nil {
		return "", err
	}
	if _, err := uuid.Parse(pos[0]); err != nil {
		return "", usageError{fmt.Sprintf("report ID %q is not a UUID", pos[0])}
	}
	return pos[0], nil
}

func runReports(ctx context.Context, cmd string, pos []string, f *deskFlags, country string, all bool, getenv func(string) string, stdout, stderr io.Writer) error {
	if cmd != "restrict" && country != "" {
		return usageError{"--country applies only to restrict"}
	}
	if cmd != "list" && all {
		return usageError{"--all applies only to list"}
	}
	switch cmd {
	case "list":
		if err := wantArgs(pos, 0, "no argument"); err != nil {
			return err
		}
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		list, err := c.Reports(ctx, all)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNO\tRECEIVED\tCHANNEL\tSEQ\tREASON\tSTATUS\tNOTE")
		for _, s := range list {
			note := s.Action
			if s.Status == legal.ReportOpen && s.Actioned {
				note = "post already actioned"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", s.ID, s.Number, s.Received.Format(time.RFC3339),
				s.Channel, s.Seq, s.Reason, s.Status, note)
		}
		return tw.Flush()

	case "show":
		id, err := reportArg(pos)
		if err != nil {
			return err
		}
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		r, err := c.ShowReport(ctx, id)
		if err != nil {
			return err
		}
		return printJSON(stdout, r)

	case "dismiss", "restrict", "remove":
		id, err := reportArg(pos)
		if err != nil {
			return err
		}
		if strings.TrimSpace(f.reason) == "" {
			return usageError{"--reason TEXT is required"}
		}
		dec := legal.Decision{Reason: f.reason}
		switch cmd {
		case "dismiss":
			dec.Action = legal.ActionDismissed
		case "restrict":
			if country == "" {
				return usageError{"--country CC is required"}
			}
			dec.Action, dec.Country = legal.ActionRestricted, country
		case "remove":
			dec.Action = legal.ActionRemoved
		}
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		r, err := c.Decide(ctx, id, dec)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "report %s: %s%s\n", r.ID, r.Action, in(r.Jurisdiction))
		return printJSON(stdout, r)

	default:
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

func in(country string) string {
	if country == "" {
		return ""
	}
	return " in " + country
}
