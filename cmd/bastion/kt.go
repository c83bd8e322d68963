package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/bastionchat/bastion/client"
)

// The key transparency commands (docs/key-transparency.md), registered beside the others.
func init() {
	commands["kt"] = command{1, (*cli).kt}
	commands["audit"] = command{0, (*cli).audit}
	commandHelp["kt"] = `Usage: bastion kt status | bastion kt monitor

status   shows the server's key transparency log as this profile last verified it (its
         key, size and root hash) after checking the server's newest checkpoint against
         it, and every alert recorded so far.
monitor  reads the log's entries since the last run, checks them against the signed
         checkpoint, and reports any device or identity key of this account that this
         device did not add (a "ghost device"). Exits 1 when it finds one: run it from
         cron and read what it says.`
	commandHelp["audit"] = `Usage: bastion audit --server URL

Replays the whole key transparency log of the server: checks the checkpoint's
signature, recomputes the Merkle root from every entry, checks that every account's
history is coherent, and checks the new checkpoint against the one the last audit of
this server ended with (kept, with the log key pinned on the first audit, in the
--profile directory). Needs no account. Exits 1 on any inconsistency, saying what.`
}

func (c *cli) kt(ctx context.Context, args []string) error {
	switch args[0] {
	case "status":
		return c.withClient(ctx, func(cl *client.Client) error {
			st, err := cl.KTStatus(ctx)
			if err != nil && st.LogKey == "" {
				return err
			}
			if c.g.json {
				if perr := c.printJSON(st); perr != nil {
					return perr
				}
				return err
			}
			fmt.Fprintf(c.stdout, "Log key:    %s\nTree size:  %d\nRoot hash:  %s\nMonitored:  %d entries\n", st.LogKey, st.Size, st.RootHash, st.Monitored)
			if len(st.Alerts) == 0 {
				fmt.Fprintln(c.stdout, "Alerts:     none")
			}
			for _, a := range st.Alerts {
				fmt.Fprintf(c.stdout, "ALERT %s  %s\n", a.At.UTC().Format("2006-01-02 15:04:05Z"), a)
			}
			return err
		})
	case "monitor":
		return c.withClient(ctx, func(cl *client.Client) error {
			alerts, err := cl.KTMonitor(ctx)
			for _, a := range alerts {
				if c.g.json {
					c.printJSON(a)
				} else {
					fmt.Fprintf(c.stdout, "ALERT %s\n", a)
				}
			}
			if err != nil {
				return err
			}
			if len(alerts) > 0 {
				return fmt.Errorf("%d key transparency alert(s): a device or key of your account that you did not add is in the log; someone may be able to read your messages", len(alerts))
			}
			if !c.g.json {
				fmt.Fprintln(c.stdout, "No new entries for your account that you did not make.")
			}
			return nil
		})
	}
	return fmt.Errorf("unknown kt command %q: want status or monitor", args[0])
}

// auditState is what an auditor keeps between runs, per server.
type auditState struct {
	LogKey     string `json:"log_key"`
	Checkpoint string `json:"checkpoint"`
}

func (c *cli) audit(ctx context.Context, _ []string) error {
	if c.g.server == "" {
		return errors.New("give the server to audit with --server URL")
	}
	u, err := url.Parse(c.g.server)
	if err != nil || u.Host == "" {
		return fmt.Errorf("server %q: want an http:// or https:// URL", c.g.server)
	}
	name := strings.NewReplacer(":", "_", "/", "_").Replace(u.Host + u.Path)
	path := filepath.Join(c.g.profile, "audit", name+".json")
	var st auditState
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("reading the last audit: %w", err)
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("reading the last audit %s: %w", path, err)
		}
	}
	opts := client.AuditOptions{LogKey: st.LogKey}
	if st.Checkpoint != "" {
		opts.Previous = []byte(st.Checkpoint)
	}
	rep, err := client.Audit(ctx, c.g.server, opts)
	if err != nil {
		return err
	}
	b, _ = json.Marshal(auditState{LogKey: rep.LogKey, Checkpoint: rep.Checkpoint})
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving the audit: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("saving the audit: %w", err)
	}
	if c.g.json {
		return c.printJSON(rep)
	}
	fmt.Fprintf(c.stdout, "Log %s is consistent: %d entries (%d device and %d lookup bindings of %d accounts)", rep.LogKey, rep.Size, rep.Devices, rep.Lookups, rep.Accounts)
	if st.Checkpoint != "" {
		fmt.Fprintf(c.stdout, ", and extends the last audit's checkpoint")
	}
	fmt.Fprintln(c.stdout, ".")
	return nil
}
