package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/client"
)

// The broadcast channel commands (docs/channels.md, "Using channels").
func init() {
	commands["channel"] = command{-1, (*cli).channel}
	commandFlags["channel"] = func(fs *flag.FlagSet) any {
		o := &channelFlags{limit: 20}
		fs.StringVar(&o.description, "description", "", "channel `description`")
		fs.BoolVar(&o.private, "private", false, "a private channel")
		fs.IntVar(&o.limit, "limit", o.limit, "show the newest `N` posts")
		fs.StringVar(&o.reason, "reason", "", "report `reason`: illegal or terms")
		return o
	}
	commandHelp["channel"] = `Usage: bastion channel <command> @NAME [arguments]

create @NAME TITLE [--description D] [--private]
                      create a channel; this profile holds its owner key
post @NAME TEXT       publish TEXT (owner or delegated admin)
edit @NAME SEQ TEXT   replace the text of post SEQ
delete @NAME SEQ      retract post SEQ
follow @NAME          follow a channel: pins its genesis, verifies from the owner's head
unfollow @NAME        stop following and forget its posts
read @NAME [--limit N]
                      fetch, verify and show the newest N posts (default 20). Withheld
                      posts show the operator's statement of reasons. If the server
                      served a forged, altered, dropped or reordered post, it is not
                      shown, a warning says what happened, and the exit status is 1.
report @NAME SEQ --reason illegal|terms TEXT
                      report post SEQ to the operator (no reporter identity is kept)
notices @NAME         the operator's notices (restrictions, removals, with reasons)
key @NAME             this profile's admin key for a channel it follows (made on first
                      use): give it to the owner, who runs "channel admins @NAME add KEY"
admins @NAME [list | add KEY | revoke KEY]
                      list, delegate (owner) or revoke (owner) admin keys
admit @NAME +PHONE    admit PHONE's account to a private channel you own (it must
                      follow the channel first); sent over your 1:1 session, signed
                      with the channel's owner key
remove @NAME +PHONE   remove PHONE's account from a private channel you own: a new
                      chain, sent to every other admitted account; it cannot read
                      the posts made after this
admitted @NAME        the accounts you admitted to a private channel you own
list                  the channels this profile owns or follows`
}

type channelFlags struct {
	description, reason string
	private             bool
	limit               int
}

// channelArgs says how many arguments each channel command takes after its name.
var channelArgs = map[string][2]int{ // min, max
	"create": {2, 2}, "post": {2, 2}, "edit": {3, 3}, "delete": {2, 2},
	"follow": {1, 1}, "unfollow": {1, 1}, "read": {1, 1}, "report": {3, 3},
	"notices": {1, 1}, "key": {1, 1}, "admins": {1, 3}, "admit": {2, 2}, "list": {0, 0},
	"remove": {2, 2}, "admitted": {1, 1},
}

func (c *cli) channel(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want a channel command", errUsage)
	}
	sub, args := args[0], args[1:]
	n, ok := channelArgs[sub]
	if !ok {
		return fmt.Errorf("%w: unknown channel command %q", errUsage, sub)
	}
	if len(args) < n[0] || len(args) > n[1] {
		return fmt.Errorf("%w: channel %s wants %d argument(s), got %d", errUsage, sub, n[0], len(args))
	}
	o, _ := c.opts.(*channelFlags)
	if o == nil {
		o = &channelFlags{limit: 20}
	}
	seqArg := func(s string) (uint64, error) {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || v == 0 {
			return 0, fmt.Errorf("%w: post number %q", errUsage, s)
		}
		return v, nil
	}
	return c.withClient(ctx, func(cl *client.Client) error {
		switch sub {
		case "create":
			ch, err := cl.CreateChannel(ctx, args[0], args[1], o.description, o.private)
			if err != nil {
				return err
			}
			if c.g.json {
				return c.printJSON(ch)
			}
			kind := "public"
			if ch.Private {
				kind = "private"
			}
			fmt.Fprintf(c.stdout, "Created %s channel %s (%s). Its owner key is in this profile.\n", kind, ch.Handle, ch.ID)
			return nil
		case "post":
			seq, err := cl.PostToChannel(ctx, args[0], args[1])
			return c.printPosted(args[0], "Posted", seq, 0, err)
		case "edit":
			ref, err := seqArg(args[1])
			if err != nil {
				return err
			}
			seq, err := cl.EditChannelPost(ctx, args[0], ref, args[2])
			return c.printPosted(args[0], "Edited", seq, ref, err)
		case "delete":
			ref, err := seqArg(args[1])
			if err != nil {
				return err
			}
			seq, err := cl.DeleteChannelPost(ctx, args[0], ref)
			return c.printPosted(args[0], "Deleted", seq, ref, err)
		case "follow":
			ch, err := cl.FollowChannel(ctx, args[0])
			if err != nil {
				return err
			}
			if c.g.json {
				return c.printJSON(ch)
			}
			fmt.Fprintf(c.stdout, "Following %s: %s (%d subscribers).\n", ch.Handle, ch.Title, ch.Subscribers)
			return nil
		case "unfollow":
			if err := cl.UnfollowChannel(ctx, args[0]); err != nil {
				return err
			}
			if c.g.json {
				return c.printJSON(map[string]string{"channel": handleOf(args[0]), "status": "unfollowed"})
			}
			fmt.Fprintf(c.stdout, "No longer following %s.\n", handleOf(args[0]))
			return nil
		case "read":
			return c.channelRead(ctx, cl, args[0], o.limit)
		case "report":
			seq, err := seqArg(args[1])
			if err != nil {
				return err
			}
			if o.reason == "" {
				return fmt.Errorf("%w: give --reason illegal or --reason terms", errUsage)
			}
			id, err := cl.ReportChannelPost(ctx, args[0], seq, o.reason, args[2])
			if err != nil {
				return err
			}
			if c.g.json {
				return c.printJSON(map[string]any{"channel": handleOf(args[0]), "seq": seq, "report": id})
			}
			fmt.Fprintf(c.stdout, "Reported post #%d of %s to the operator (report %s).\n", seq, handleOf(args[0]), id)
			return nil
		case "notices":
			ns, err := cl.ChannelNotices(ctx, args[0])
			for _, n := range ns {
				if c.g.json {
					c.printJSON(n)
					continue
				}
				fmt.Fprintf(c.stdout, "#%d %s by the operator, %s: %s\n", n.Seq, where(&n), n.Time.Local().Format(time.DateTime), n.Reason)
			}
			if len(ns) == 0 && err == nil && !c.g.json {
				fmt.Fprintln(c.stdout, "No operator notices.")
			}
			return err
		case "key":
			key, err := cl.ChannelAdminKey(ctx, args[0])
			if err != nil {
				return err
			}
			if c.g.json {
				return c.printJSON(map[string]string{"channel": handleOf(args[0]), "key": key})
			}
			fmt.Fprintf(c.stdout, "Your admin key for %s: %s\nGive it to the owner, who runs: bastion channel admins %s add %s\n", handleOf(args[0]), key, handleOf(args[0]), key)
			return nil
		case "admins":
			return c.channelAdmins(ctx, cl, args)
		case "admit":
			number, err := client.NormalizeNumber(args[1])
			if err != nil {
				return err
			}
			if err := cl.AdmitToChannel(ctx, args[0], number); err != nil {
				return err
			}
			if c.g.json {
				return c.printJSON(map[string]string{"channel": handleOf(args[0]), "admitted": number})
			}
			fmt.Fprintf(c.stdout, "Admitted %s to %s: they read its posts from now on.\n", number, handleOf(args[0]))
			return nil
		case "remove":
			number, err := client.NormalizeNumber(args[1])
			if err != nil {
				return err
			}
			n, err := cl.RemoveFromChannel(ctx, args[0], number)
			if c.g.json && err == nil {
				return c.printJSON(map[string]any{"channel": handleOf(args[0]), "removed": number, "readmitted": n})
			}
			if err == nil {
				fmt.Fprintf(c.stdout, "Removed %s from %s: a new chain was sent to the %d other admitted account(s).\n", number, handleOf(args[0]), n)
			}
			return err
		case "admitted":
			numbers, err := cl.ChannelAdmitted(ctx, args[0])
			if err != nil {
				return err
			}
			for _, n := range numbers {
				if c.g.json {
					c.printJSON(map[string]string{"channel": handleOf(args[0]), "number": n})
				} else {
					fmt.Fprintln(c.stdout, n)
				}
			}
			if len(numbers) == 0 && !c.g.json {
				fmt.Fprintf(c.stdout, "No one admitted to %s yet.\n", handleOf(args[0]))
			}
			return nil
		case "list":
			chs, err := cl.Channels(ctx)
			if err != nil {
				return err
			}
			if c.g.json {
				for _, ch := range chs {
					c.printJSON(ch)
				}
				return nil
			}
			if len(chs) == 0 {
				fmt.Fprintln(c.stdout, "No channels yet.")
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CHANNEL\tROLE\tKIND\tNEWEST\tTITLE")
			for _, ch := range chs {
				kind := "public"
				if ch.Private {
					kind = "private"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t#%d\t%s\n", ch.Handle, ch.Role, kind, ch.Newest, ch.Title)
			}
			return tw.Flush()
		}
		return fmt.Errorf("%w: unknown channel command %q", errUsage, sub)
	})
}

// handleOf shows a handle with its "@" whether or not it was typed with one.
func handleOf(s string) string {
	if h, err := channel.ParseHandle(s); err == nil {
		return h.String()
	}
	return s
}

func (c *cli) printPosted(handle, verb string, seq, ref uint64, err error) error {
	if err != nil {
		return err
	}
	if c.g.json {
		out := map[string]any{"channel": handleOf(handle), "seq": seq}
		if ref != 0 {
			out["ref"] = ref
		}
		return c.printJSON(out)
	}
	if ref == 0 {
		fmt.Fprintf(c.stdout, "%s #%d to %s.\n", verb, seq, handleOf(handle))
	} else {
		fmt.Fprintf(c.stdout, "%s #%d of %s (as post #%d).\n", verb, ref, handleOf(handle), seq)
	}
	return nil
}

func where(n *client.ChannelNotice) string {
	if n.Jurisdiction != "" {
		return n.Action + " in " + n.Jurisdiction
	}
	return n.Action + " everywhere"
}

// channelRead prints the verified posts, then what the server did wrong, if anything.
func (c *cli) channelRead(ctx context.Context, cl *client.Client, handle string, limit int) error {
	es, err := cl.ReadChannel(ctx, handle, limit)
	h := handleOf(handle)
	for _, e := range es {
		c.printChannelEntry(h, e)
	}
	if err != nil {
		return fmt.Errorf("WARNING: %s: %w", explainChannel(err), err)
	}
	if len(es) == 0 && !c.g.json {
		fmt.Fprintf(c.stdout, "No posts in %s yet.\n", h)
	}
	return nil
}

// printChannelEntry prints one verified entry of channel h, as read and listen show it.
func (c *cli) printChannelEntry(h string, e client.ChannelEntry) {
	if c.g.json {
		c.printJSON(e)
		return
	}
	who := h
	if !e.ByOwner {
		who = fmt.Sprintf("%s (admin %.8s)", h, e.Signer)
	}
	text := e.Text
	switch {
	case e.Withheld != nil:
		text = fmt.Sprintf("[withheld: %s by the operator: %s]", where(e.Withheld), e.Withheld.Reason)
	case e.Deleted:
		text = "[deleted]"
	case e.Undecryptable:
		text = "[" + client.ErrNotAdmitted.Error() + "]"
	case e.Edited:
		text += " (edited)"
	}
	if e.Void {
		text = "[VOID: signed by an admin key revoked before it] " + text
	}
	fmt.Fprintf(c.stdout, "#%d [%s] %s: %s\n", e.Seq, e.Time.Local().Format(time.DateTime), who, text)
}

// printChannelLive prints a channel post as listen receives it, in read's format; what
// the server pushed and the client refused is a warning on standard error, and
// listening goes on.
func (c *cli) printChannelLive(u client.ChannelLive) error {
	if u.Err != nil {
		fmt.Fprintf(c.stderr, "WARNING: %s: %v\n", explainChannel(u.Err), u.Err)
		return nil
	}
	if c.g.json {
		return c.printJSON(u) // the channel with the entry: listen mixes them with messages
	}
	c.printChannelEntry(u.Handle, *u.Entry)
	return nil
}

// explainChannel says in a sentence what a verification error means for the reader.
func explainChannel(err error) string {
	var gap *channel.GapError
	switch {
	case errors.Is(err, channel.ErrForged):
		return "the server served a post the channel never signed (forged); it is not shown"
	case errors.Is(err, channel.ErrAltered):
		return "the server served a post changed after it was signed (altered); it is not shown"
	case errors.Is(err, channel.ErrReordered):
		return "the server served posts out of order; those after the last good one are not shown"
	case errors.As(err, &gap):
		return fmt.Sprintf("posts #%d to #%d are missing (dropped or held back by the server); later ones are not shown", gap.From, gap.To)
	case errors.Is(err, channel.ErrFork):
		return "the server shows this profile a different history from the channel's (a fork)"
	case errors.Is(err, channel.ErrRevoked):
		return "a post is signed by an admin key the owner revoked; it is not shown"
	case errors.Is(err, channel.ErrWithheld):
		return "a post was withheld without the operator's signed statement of reasons; it is not shown"
	}
	return "reading the channel failed"
}

func (c *cli) channelAdmins(ctx context.Context, cl *client.Client, args []string) error {
	op := "list"
	if len(args) > 1 {
		op = args[1]
	}
	h := handleOf(args[0])
	switch {
	case op == "list" && len(args) <= 2:
		as, err := cl.ChannelAdmins(ctx, args[0])
		if err != nil && len(as) == 0 {
			return err
		}
		if err != nil {
			err = fmt.Errorf("WARNING: %s: %w", explainChannel(err), err)
		}
		if c.g.json {
			for _, a := range as {
				c.printJSON(a)
			}
			return err
		}
		if len(as) == 0 {
			fmt.Fprintf(c.stdout, "No admin keys in %s.\n", h)
		}
		for _, a := range as {
			line := fmt.Sprintf("%s  from #%d", a.Key, a.From)
			if a.Until != 0 {
				line += fmt.Sprintf("  until #%d", a.Until)
			}
			if a.RevokedFrom != 0 {
				line += fmt.Sprintf("  revoked from #%d", a.RevokedFrom)
			}
			fmt.Fprintln(c.stdout, line)
		}
		return err
	case (op == "add" || op == "revoke") && len(args) == 3:
		var seq uint64
		var err error
		if op == "add" {
			seq, err = cl.AddChannelAdmin(ctx, args[0], args[2])
		} else {
			seq, err = cl.RevokeChannelAdmin(ctx, args[0], args[2])
		}
		if err != nil {
			return err
		}
		if c.g.json {
			return c.printJSON(map[string]any{"channel": h, "key": args[2], "op": op, "seq": seq})
		}
		verb := "Delegated"
		if op == "revoke" {
			verb = "Revoked"
		}
		fmt.Fprintf(c.stdout, "%s admin key %s in %s from post #%d on (post #%d).\n", verb, args[2], h, seq+1, seq)
		return nil
	}
	return fmt.Errorf("%w: want admins @NAME [list | add KEY | revoke KEY]", errUsage)
}
