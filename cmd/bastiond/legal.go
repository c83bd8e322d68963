package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bastionchat/bastion/internal/legal"
)

const legalUsage = `Usage: bastiond legal COMMAND [flags]

The lawful-request desk (docs/lawful-access.md). Except "operator add", "verify" and
"log verify", commands talk to the running bastiond through the admin socket
DATA/legal.sock and authenticate the operator with --token-file FILE (or the token in
BASTION_LEGAL_TOKEN).

  operator add NAME                 create an operator; prints its token once
  intake --file order.json          record an order
  list                              list orders
  show ID                           show an order, its approvals, reasons and notices
  approve ID                        approve (two different operators before disclosure)
  reject ID --reason TEXT           reject, with the reason recorded
  disclose ID --out pkg.json        write the signed package (and pkg.json.sig)
  verify pkg.json                   check a package's detached signature
  log verify [--server URL]         verify the public legal log and recompute the report

Common flags: --data DIR (default ./bastion-data, or BASTION_DATA), --token-file FILE.
`

// deskFlags are the flags every desk command accepts.
type deskFlags struct {
	data, tokenFile, file, out, reason, server, key, sig string
	closeExisting                                        bool
}

func newDeskFlags(name string, getenv func(string) string, stderr io.Writer) (*flag.FlagSet, *deskFlags) {
	f := &deskFlags{data: "bastion-data"}
	if v := getenv("BASTION_DATA"); v != "" {
		f.data = v
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.data, "data", f.data, "the server's data `directory`")
	fs.StringVar(&f.tokenFile, "token-file", "", "`file` holding this operator's token")
	fs.StringVar(&f.file, "file", "", "order `file` (JSON)")
	fs.StringVar(&f.out, "out", "", "write the package to this `file` (and FILE.sig)")
	fs.StringVar(&f.reason, "reason", "", "the reason, recorded (and for markets, published)")
	fs.StringVar(&f.server, "server", "", "read from this server's public endpoints (`URL`)")
	fs.StringVar(&f.key, "key", "", "the server's Ed25519 public key (base64) to verify against")
	fs.StringVar(&f.sig, "sig", "", "signature `file` (default PACKAGE.sig)")
	fs.BoolVar(&f.closeExisting, "close-existing", false, "also notify and disconnect existing accounts of the country")
	return fs, f
}

// parseInterleaved parses flags that may come before, between or after the positional
// arguments ("reject 3 --reason ...") and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func (f *deskFlags) token(getenv func(string) string) (string, error) {
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("reading token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := getenv("BASTION_LEGAL_TOKEN"); t != "" {
		return strings.TrimSpace(t), nil
	}
	return "", errors.New("no operator token: give --token-file FILE or set BASTION_LEGAL_TOKEN")
}

func (f *deskFlags) client(getenv func(string) string) (*legal.Client, error) {
	tok, err := f.token(getenv)
	if err != nil {
		return nil, err
	}
	return legal.NewClient(filepath.Join(f.data, legal.SocketFile), tok), nil
}

func legalCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if code, done := helpAsked(args, legalUsage, stdout); done {
		return code
	}
	cmd := args[0]
	if (cmd == "operator" || cmd == "log") && len(args) > 1 {
		cmd += " " + args[1]
		args = args[1:]
	}
	fs, f := newDeskFlags("bastiond legal "+cmd, getenv, stderr)
	pos, err := parseInterleaved(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	return exitStatus(stderr, "bastiond legal "+cmd, legalUsage, runLegal(context.Background(), cmd, pos, f, getenv, stdout, stderr))
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// helpAsked prints usage when args are empty or ask for help, and then says so with the
// exit status: 2 for no command at all, 0 for help asked for.
func helpAsked(args []string, usage string, stdout io.Writer) (int, bool) {
	if len(args) > 0 && args[0] != "help" && args[0] != "-h" && args[0] != "--help" {
		return 0, false
	}
	fmt.Fprint(stdout, usage)
	if len(args) == 0 {
		return 2, true
	}
	return 0, true
}

// exitStatus reports err on stderr under the command's name and turns it into the
// exit status: 0 for none, 2 (with the usage text) for a usage error, 1 otherwise.
func exitStatus(stderr io.Writer, name, usage string, err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n\n%s", name, err, usage)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

func wantArgs(pos []string, n int, what string) error {
	if len(pos) != n {
		return usageError{fmt.Sprintf("want %s", what)}
	}
	return nil
}

func orderArg(pos []string) (int64, error) {
	if err := wantArgs(pos, 1, "one order ID"); err != nil {
		return 0, err
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, usageError{fmt.Sprintf("order ID %q is not a positive number", pos[0])}
	}
	return id, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runLegal(ctx context.Context, cmd string, pos []string, f *deskFlags, getenv func(string) string, stdout, stderr io.Writer) error {
	switch cmd {
	case "operator add":
		if err := wantArgs(pos, 1, "an operator NAME"); err != nil {
			return err
		}
		if err := os.MkdirAll(f.data, 0o700); err != nil {
			return err
		}
		db, err := legal.Open(ctx, filepath.Join(f.data, "legal.db"))
		if err != nil {
			return err
		}
		defer db.Close()
		tok, err := legal.AddOperator(ctx, db, pos[0], time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		fmt.Fprintf(stderr, "operator %s added; the token above is shown only this once: keep it in a file only they can read\n", pos[0])
		return nil

	case "intake":
		if err := wantArgs(pos, 0, "no argument but --file"); err != nil {
			return err
		}
		if f.file == "" {
			return usageError{"--file order.json is required"}
		}
		b, err := os.ReadFile(f.file)
		if err != nil {
			return err
		}
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		r, err := c.Intake(ctx, b)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "order %d recorded: %s %s\n", r.ID, r.Status, r.Outcome)
		return printJSON(stdout, r)

	case "list":
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		list, err := c.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tRECEIVED\tJURISDICTION\tSTATUS\tOUTCOME\tAPPROVALS")
		for _, s := range list {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\n", s.ID, s.Received.Format(time.RFC3339), s.Jurisdiction, s.Status, s.Outcome, s.Approvals)
		}
		return tw.Flush()

	case "show", "approve":
		id, err := orderArg(pos)
		if err != nil {
			return err
		}
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		var r legal.Record
		if cmd == "show" {
			r, err = c.Show(ctx, id)
		} else {
			r, err = c.Approve(ctx, id)
		}
		if err != nil {
			return err
		}
		return printJSON(stdout, r)

	case "reject":
		id, err := orderArg(pos)
		if err != nil {
			return err
		}
		if strings.TrimSpace(f.reason) == "" {
			return usageError{"--reason TEXT is required"}
		}
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		r, err := c.Reject(ctx, id, f.reason)
		if err != nil {
			return err
		}
		return printJSON(stdout, r)

	case "disclose":
		id, err := orderArg(pos)
		if err != nil {
			return err
		}
		if f.out == "" {
			return usageError{"--out pkg.json is required"}
		}
		c, err := f.client(getenv)
		if err != nil {
			return err
		}
		pkg, sig, err := c.Disclose(ctx, id)
		if err != nil {
			return err
		}
		// 0600: the package names people; it goes to the authority, not to the world.
		if err := os.WriteFile(f.out, pkg, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(f.out+".sig", []byte(base64.StdEncoding.EncodeToString(sig)+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s.sig\n", f.out, f.out)
		return nil

	case "verify":
		if err := wantArgs(pos, 1, "the package file"); err != nil {
			return err
		}
		pkg, err := os.ReadFile(pos[0])
		if err != nil {
			return err
		}
		sigFile := f.sig
		if sigFile == "" {
			sigFile = pos[0] + ".sig"
		}
		sigText, err := os.ReadFile(sigFile)
		if err != nil {
			return err
		}
		sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sigText)))
		if err != nil {
			return fmt.Errorf("signature file %s is not base64: %w", sigFile, err)
		}
		pub, from, err := f.publicKey(ctx)
		if err != nil {
			return err
		}
		if err := legal.VerifyPackage(pub, pkg, sig); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: signature valid (key %s, from %s)\n", pos[0], base64.StdEncoding.EncodeToString(pub), from)
		return nil

	case "log verify":
		return logVerify(ctx, f, stdout, stderr)

	default:
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

// publicKey returns the key to verify against: --key, else the server's (--server), else
// the key file in the data directory.
func (f *deskFlags) publicKey(ctx context.Context) (ed25519.PublicKey, string, error) {
	switch {
	case f.key != "":
		b, err := base64.StdEncoding.DecodeString(f.key)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, "", errors.New("--key is not a base64 32-byte Ed25519 public key")
		}
		return b, "--key", nil
	case f.server != "":
		var k struct {
			Ed25519PublicKey string `json:"ed25519_public_key"`
		}
		if err := getJSON(ctx, f.server, "/v1/legal/key", &k); err != nil {
			return nil, "", err
		}
		b, err := base64.StdEncoding.DecodeString(k.Ed25519PublicKey)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, "", errors.New("the server's key is not a 32-byte Ed25519 public key")
		}
		return b, f.server + " (pin it with --key)", nil
	default:
		if _, err := os.Stat(filepath.Join(f.data, legal.KeyFile)); err != nil {
			return nil, "", fmt.Errorf("no key: give --key, --server URL or --data DIR holding %s: %w", legal.KeyFile, err)
		}
		k, err := legal.LoadOrCreateKey(f.data)
		if err != nil {
			return nil, "", err
		}
		return k.Public(), filepath.Join(f.data, legal.KeyFile), nil
	}
}

// maxPublicResponse bounds what the verifier reads from a server.
const maxPublicResponse = 32 << 20

func getJSON(ctx context.Context, server, path string, v any) error {
	b, err := get(ctx, server, path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func get(ctx context.Context, server, path string) ([]byte, error) {
	base, err := url.Parse(server)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("--server %q is not an http(s) URL", server)
	}
	p, q, _ := strings.Cut(path, "?")
	u := base.JoinPath(p)
	u.RawQuery = q
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPublicResponse))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

// httpLog reads the legal log from a server's public endpoints.
type httpLog struct{ server string }

func (l httpLog) Checkpoint(ctx context.Context) ([]byte, error) {
	return get(ctx, l.server, "/v1/legal/checkpoint")
}

func (l httpLog) Entries(ctx context.Context, start, end int64) ([][]byte, error) {
	var r struct {
		Entries [][]byte `json:"entries"`
	}
	err := getJSON(ctx, l.server, fmt.Sprintf("/v1/legal/entries?start=%d&end=%d", start, end), &r)
	return r.Entries, err
}

func logVerify(ctx context.Context, f *deskFlags, stdout, stderr io.Writer) error {
	pub, from, err := f.publicKey(ctx)
	if err != nil {
		return err
	}
	var src legal.LogSource
	if f.server != "" {
		src = httpLog{f.server}
	} else {
		// Both must exist: verifying must not create an empty log or a new key.
		for _, name := range []string{legal.KeyFile, "legal.db"} {
			if _, err := os.Stat(filepath.Join(f.data, name)); err != nil {
				return fmt.Errorf("no legal log here: %w", err)
			}
		}
		db, err := legal.Open(ctx, filepath.Join(f.data, "legal.db"))
		if err != nil {
			return err
		}
		defer db.Close()
		key, err := legal.LoadOrCreateKey(f.data)
		if err != nil {
			return err
		}
		src = legal.OpenLocalLog(db, key)
	}
	cp, entries, err := legal.VerifyLog(ctx, src, pub)
	if err != nil {
		return err
	}
	rep, err := legal.ComputeReport(entries)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "legal log verified: %d entries, root %s, key from %s\n", cp.Size, cp.Hash, from)
	if f.server != "" {
		var served legal.Report
		if err := getJSON(ctx, f.server, "/v1/transparency", &served); err != nil {
			return err
		}
		a, _ := json.Marshal(served.Periods)
		b, _ := json.Marshal(rep.Periods)
		if served.GeneratedFrom.TreeSize == cp.Size && string(a) != string(b) {
			return errors.New("the served transparency report differs from the one recomputed from the log")
		}
		if served.GeneratedFrom.TreeSize == cp.Size {
			fmt.Fprintln(stderr, "the served transparency report matches the log")
		}
	}
	rep.GeneratedFrom = legal.ReportSource{Log: cp.Origin, TreeSize: cp.Size, TreeHash: cp.Hash.String()}
	return printJSON(stdout, rep)
}
