package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bastionchat/bastion/client"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed (the message says why)
	exitUsage = 2 // the command line is wrong
)

const usage = `bastion is the Bastion client: end-to-end encrypted messages by phone number.

Usage:
  bastion [global flags] <command> [arguments]

Commands:
  register +PHONE        request a verification code for PHONE (international form)
  verify CODE            prove the code and create this profile's account and keys
  send +PHONE TEXT       send TEXT to the account registered with PHONE
  receive                print the messages waiting on the server, acknowledge them, exit
  listen                 print messages as they arrive, until interrupted
  contacts               list contacts and whether their identity key is trusted
  safety-number +PHONE   show the safety number to compare with PHONE's owner
  trust +PHONE           accept PHONE's new identity key after comparing safety numbers
  whoami                 show this profile's number, account and server
  kt status|monitor      the key transparency log as verified; report devices or keys
                         of this account that this device did not add
  audit --server URL     replay a server's whole key transparency log (no account needed)
  group create|add|remove|promote|rename|leave|send|list|members
                         end-to-end encrypted groups (bastion help group)
  channel create|post|edit|delete|follow|unfollow|read|report|admins|admit|...
                         broadcast channels, verified by every reader (bastion help channel)
  help [command]         show this help, or a command's

Global flags (also accepted after the command):
  --server URL            server URL (BASTION_SERVER; default: the profile's server,
                          or ` + client.DefaultServer + ` for a new profile)
  --profile DIR           profile directory (BASTION_PROFILE; default %s)
  --passphrase-file FILE  file holding the profile's passphrase (BASTION_PASSPHRASE_FILE);
                          given at register, it encrypts the profile's private keys
  --json                  print JSON for scripts (one object per line) instead of text
  --debug                 print the SDK's debug log on standard error

Exit status: 0 on success, 1 when the command failed, 2 for a wrong command line.
`

// commands' own help, shown by "bastion help CMD" and "bastion CMD --help".
var commandHelp = map[string]string{
	"register": `Usage: bastion register +PHONE

Asks the server to send a verification code to PHONE by SMS (a development server
prints it on its console). PHONE is in international form: + and the country code.
Then run "bastion verify CODE" with the same profile.`,
	"verify": `Usage: bastion verify CODE

Proves the code sent by "bastion register", then creates the account: generates the
identity key and prekeys, uploads the public halves, keeps the private ones in the
profile. A wrong code fails with the attempts left.`,
	"send": `Usage: bastion send +PHONE TEXT

Encrypts TEXT for every device of the account registered with PHONE (quote TEXT if it
has spaces; put -- before a TEXT that starts with -) and hands it to the server, which holds it until the recipient receives.
Fails if PHONE is not registered, or if its identity key changed and is not trusted
yet (see "bastion safety-number" and "bastion trust").`,
	"receive": `Usage: bastion receive

Fetches every message waiting for this device, stores each in the profile, then
acknowledges it to the server, prints what was not printed before, and exits.`,
	"listen": `Usage: bastion listen

Like receive, but stays connected and prints messages as they arrive, until
interrupted (Ctrl-C). Reconnects by itself when the connection drops. New posts of
the channels this profile owns or follows are printed too, once verified, as
"bastion channel read" shows them.`,
	"contacts": `Usage: bastion contacts

Lists the numbers this profile has exchanged messages with, their account ids, and
their identity key's trust: trusted, changed (not trusted: run "bastion trust"), or
unknown (no key seen yet).`,
	"safety-number": `Usage: bastion safety-number +PHONE

Shows the 60-digit safety number of this profile and PHONE's owner. Both of you see
the same number if nobody sits in the middle: compare it in person or over a channel
you trust.`,
	"trust": `Usage: bastion trust +PHONE

Accepts the identity key now stored for PHONE after it changed (the contact
re-registered, or someone is trying to intercept): compare safety numbers first.
Sending to PHONE works again afterwards.`,
	"whoami": `Usage: bastion whoami

Shows this profile's phone number, account id, device id and server.`,
}

// globals are the flags every command accepts.
type globals struct {
	server, profile, passphraseFile string
	json, debug                     bool
}

func defaultProfile() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "bastion")
	}
	return ".bastion"
}

// addGlobals binds the global flags on fs, with defaults from the environment.
func addGlobals(fs *flag.FlagSet, g *globals) {
	fs.StringVar(&g.server, "server", g.server, "server `URL`")
	fs.StringVar(&g.profile, "profile", g.profile, "profile `directory`")
	fs.StringVar(&g.passphraseFile, "passphrase-file", g.passphraseFile, "passphrase `file`")
	fs.BoolVar(&g.json, "json", g.json, "print JSON")
	fs.BoolVar(&g.debug, "debug", g.debug, "print the debug log")
}

// cli is one invocation.
type cli struct {
	g              globals
	opts           any // the command's own flags (command.flags), if it has any
	stdout, stderr io.Writer
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	c.g.server = getenv("BASTION_SERVER")
	c.g.profile = getenv("BASTION_PROFILE")
	c.g.passphraseFile = getenv("BASTION_PASSPHRASE_FILE")
	if c.g.profile == "" {
		c.g.profile = defaultProfile()
	}
	top := flag.NewFlagSet("bastion", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	addGlobals(top, &c.g)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, usage, defaultProfile())
			return exitOK
		}
		fmt.Fprintf(stderr, "bastion: %v\n\n", err)
		fmt.Fprintf(stderr, usage, defaultProfile())
		return exitUsage
	}
	if top.NArg() == 0 {
		fmt.Fprintf(stderr, usage, defaultProfile())
		return exitUsage
	}
	name, rest := top.Arg(0), top.Args()[1:]
	if name == "help" {
		if len(rest) == 0 {
			fmt.Fprintf(stdout, usage, defaultProfile())
			return exitOK
		}
		h, ok := commandHelp[rest[0]]
		if !ok {
			fmt.Fprintf(stderr, "bastion: unknown command %q (run bastion help)\n", rest[0])
			return exitUsage
		}
		fmt.Fprintln(stdout, h)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "bastion: unknown command %q (run bastion help)\n", name)
		return exitUsage
	}
	fs := flag.NewFlagSet("bastion "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addGlobals(fs, &c.g)
	if f := commandFlags[name]; f != nil {
		c.opts = f(fs)
	}
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, commandHelp[name])
			return exitOK
		}
		fmt.Fprintf(stderr, "bastion %s: %v\n\n%s\n", name, err, commandHelp[name])
		return exitUsage
	}
	if cmd.args >= 0 && len(pos) != cmd.args {
		fmt.Fprintf(stderr, "bastion %s: want %d argument(s), got %d\n\n%s\n", name, cmd.args, len(pos), commandHelp[name])
		return exitUsage
	}
	if err := cmd.run(c, ctx, pos); err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "bastion %s: %v\n\n%s\n", name, err, commandHelp[name])
			return exitUsage
		}
		c.fail(name, err)
		return exitError
	}
	return exitOK
}

// parseInterspersed parses flags anywhere among the arguments and returns the others in
// order; everything after "--" is an argument (for a text that starts with "-").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

type command struct {
	args int // how many arguments; -1: any number, checked by run (which wraps errUsage)
	run  func(c *cli, ctx context.Context, args []string) error
}

// commandFlags[name], if set, binds a command's own flags beside the global ones and
// returns where they land; the command finds it in cli.opts.
var commandFlags = map[string]func(fs *flag.FlagSet) any{}

// errUsage, wrapped by a command's error, means its command line is wrong: the help is
// shown and the exit status is exitUsage.
var errUsage = errors.New("wrong command line")

var commands = map[string]command{
	"register":      {1, (*cli).register},
	"verify":        {1, (*cli).verify},
	"send":          {2, (*cli).send},
	"receive":       {0, (*cli).receive},
	"listen":        {0, (*cli).listen},
	"contacts":      {0, (*cli).contacts},
	"safety-number": {1, (*cli).safetyNumber},
	"trust":         {1, (*cli).trust},
	"whoami":        {0, (*cli).whoami},
}

// fail prints err with what the user can do about it.
func (c *cli) fail(name string, err error) {
	msg := err.Error()
	var ue *client.UntrustedIdentityError
	switch {
	case errors.As(err, &ue):
		who := ue.Number
		if who == "" {
			who = ue.Account.String()
		}
		msg = fmt.Sprintf("not sent: the identity key of %s changed (they re-registered, or someone is intercepting).\n"+
			"Compare the safety number with them (bastion safety-number %s), then run: bastion trust %s", who, who, who)
	case errors.Is(err, client.ErrNotRegistered):
		msg += " (run bastion register +PHONE, then bastion verify CODE)"
	case errors.Is(err, client.ErrNoPendingCode):
		msg += " (run bastion register +PHONE first)"
	case errors.Is(err, client.ErrAlreadyRegistered):
		msg += " (use another --profile for another number)"
	case errors.Is(err, client.ErrPassphraseRequired):
		msg += " (--passphrase-file or BASTION_PASSPHRASE_FILE)"
	}
	fmt.Fprintf(c.stderr, "bastion %s: %s\n", name, msg)
}

// open opens the profile.
func (c *cli) open(ctx context.Context) (*client.Client, error) {
	var pass []byte
	if c.g.passphraseFile != "" {
		b, err := os.ReadFile(c.g.passphraseFile)
		if err != nil {
			return nil, fmt.Errorf("reading the passphrase: %w", err)
		}
		pass = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(pass) == 0 {
			return nil, errors.New("the passphrase file is empty")
		}
	}
	var logger *slog.Logger
	if c.g.debug {
		logger = slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return client.Open(ctx, c.g.profile, client.Options{Server: c.g.server, Passphrase: pass, Logger: logger})
}

// withClient opens the profile, runs f and closes it.
func (c *cli) withClient(ctx context.Context, f func(*client.Client) error) error {
	cl, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	return f(cl)
}

func (c *cli) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", b)
	return err
}

func (c *cli) register(ctx context.Context, args []string) error {
	number, err := client.NormalizeNumber(args[0])
	if err != nil {
		return err
	}
	return c.withClient(ctx, func(cl *client.Client) error {
		if err := cl.RequestCode(ctx, number); err != nil {
			return err
		}
		if c.g.json {
			return c.printJSON(map[string]string{"number": number, "status": "code_requested"})
		}
		fmt.Fprintf(c.stdout, "A verification code was sent to %s.\nNext: bastion verify CODE\n", number)
		return nil
	})
}

func (c *cli) verify(ctx context.Context, args []string) error {
	return c.withClient(ctx, func(cl *client.Client) error {
		a, err := cl.Verify(ctx, strings.TrimSpace(args[0]))
		if err != nil {
			return err
		}
		if c.g.json {
			return c.printJSON(a)
		}
		fmt.Fprintf(c.stdout, "Registered %s as account %s, device %d.\n", a.Number, a.AccountID, a.DeviceID)
		return nil
	})
}

func (c *cli) send(ctx context.Context, args []string) error {
	return c.withClient(ctx, func(cl *client.Client) error {
		number, err := client.NormalizeNumber(args[0])
		if err != nil {
			return err
		}
		r, err := cl.Send(ctx, number, args[1])
		if err != nil {
			return err
		}
		if c.g.json {
			return c.printJSON(struct {
				To string `json:"to"`
				client.SendResult
			}{number, r})
		}
		plural := "s"
		if r.Devices == 1 {
			plural = ""
		}
		fmt.Fprintf(c.stdout, "Sent to %s (%d device%s).\n", number, r.Devices, plural)
		return nil
	})
}

func (c *cli) printMessage(m client.Message) error {
	if c.g.json {
		return c.printJSON(m)
	}
	if m.Group != nil {
		return c.printGroupMessage(m) // group.go
	}
	from := m.FromNumber
	if from == "" {
		from = m.From.String()
	}
	if m.SafetyNumberChanged {
		fmt.Fprintf(c.stdout, "! The safety number with %s changed. Messages to them are refused until you compare it (bastion safety-number %s) and run bastion trust %s.\n", from, from, from)
	}
	if m.Undecryptable {
		_, err := fmt.Fprintf(c.stdout, "! A message from %s could not be decrypted; ask them to send it again.\n", from)
		return err
	}
	when := m.SentAt.Local().Format(time.DateTime)
	if m.FromOperator {
		_, err := fmt.Fprintf(c.stdout, "[%s] Notice from the service operator (signed by the server): %s\n", when, m.Text)
		return err
	}
	if m.SentTo != [16]byte{} {
		fmt.Fprintf(c.stdout, "[%s] you (other device) to %s: %s\n", when, m.SentTo, m.Text)
		return nil
	}
	_, err := fmt.Fprintf(c.stdout, "[%s] %s: %s\n", when, from, m.Text)
	return err
}

func (c *cli) receive(ctx context.Context, _ []string) error {
	return c.withClient(ctx, func(cl *client.Client) error {
		msgs, err := cl.Receive(ctx)
		for _, m := range msgs {
			if perr := c.printMessage(m); perr != nil {
				return perr
			}
		}
		if err != nil {
			return err
		}
		if len(msgs) == 0 && !c.g.json {
			fmt.Fprintln(c.stdout, "No new messages.")
		}
		return nil
	})
}

func (c *cli) listen(ctx context.Context, _ []string) error {
	return c.withClient(ctx, func(cl *client.Client) error {
		if !c.g.json {
			fmt.Fprintln(c.stderr, "Listening; press Ctrl-C to stop.")
		}
		return cl.ListenWithChannels(ctx, c.printMessage, c.printChannelLive) // channel.go
	})
}

func (c *cli) contacts(ctx context.Context, _ []string) error {
	return c.withClient(ctx, func(cl *client.Client) error {
		cs, err := cl.Contacts(ctx)
		if err != nil {
			return err
		}
		if c.g.json {
			for _, ct := range cs {
				if err := c.printJSON(ct); err != nil {
					return err
				}
			}
			return nil
		}
		if len(cs) == 0 {
			fmt.Fprintln(c.stdout, "No contacts yet.")
			return nil
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NUMBER\tTRUST\tACCOUNT")
		for _, ct := range cs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", ct.Number, ct.Trust, ct.AccountID)
		}
		return tw.Flush()
	})
}

func (c *cli) safetyNumber(ctx context.Context, args []string) error {
	return c.withClient(ctx, func(cl *client.Client) error {
		number, err := client.NormalizeNumber(args[0])
		if err != nil {
			return err
		}
		sn, err := cl.SafetyNumber(ctx, number)
		if err != nil {
			return err
		}
		if c.g.json {
			return c.printJSON(map[string]string{"number": number, "safety_number": sn})
		}
		fmt.Fprintf(c.stdout, "Safety number with %s:\n%s\n", number, sn)
		return nil
	})
}

func (c *cli) trust(ctx context.Context, args []string) error {
	return c.withClient(ctx, func(cl *client.Client) error {
		number, err := client.NormalizeNumber(args[0])
		if err != nil {
			return err
		}
		if err := cl.Trust(ctx, number); err != nil {
			return err
		}
		if c.g.json {
			return c.printJSON(map[string]string{"number": number, "trust": client.TrustTrusted})
		}
		fmt.Fprintf(c.stdout, "Trusted the current identity key of %s.\n", number)
		return nil
	})
}

func (c *cli) whoami(ctx context.Context, _ []string) error {
	return c.withClient(ctx, func(cl *client.Client) error {
		a, err := cl.Whoami(ctx)
		if err != nil {
			return err
		}
		if c.g.json {
			return c.printJSON(a)
		}
		fmt.Fprintf(c.stdout, "Number:  %s\nAccount: %s\nDevice:  %d\nServer:  %s\n", a.Number, a.AccountID, a.DeviceID, a.Server)
		return nil
	})
}
