package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bastionchat/bastion/client"
	"github.com/bastionchat/bastion/client/group"
)

// The group commands (docs/groups.md), registered beside the others.
func init() {
	commands["group"] = command{-1, (*cli).group}
	commandHelp["group"] = `Usage:
  bastion group create NAME +PHONE...    make a group with you as admin and PHONEs as members
  bastion group add GROUP +PHONE...      add members (admins only)
  bastion group remove GROUP +PHONE...   remove members (admins only)
  bastion group promote GROUP +PHONE...  make members admins (admins only)
  bastion group rename GROUP NAME        set the title (admins only)
  bastion group leave GROUP              leave the group (the last admin must promote someone first)
  bastion group send GROUP TEXT          send TEXT to every member
  bastion group list                     list your groups
  bastion group members GROUP            list a group's members and admins

GROUP is the group's exact title or at least 8 hex digits of its id (see group list).
Groups are end-to-end encrypted: the server never learns a group's title, its members
or its messages. Changes travel to the members inside your 1:1 sessions; messages are
encrypted once with your sender key and sealed for every member's devices.
Messages and changes arrive with receive and listen, shown as [group TITLE].`
}

func (c *cli) group(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want a group command (create, add, remove, promote, rename, leave, send, list, members)", errUsage)
	}
	sub, rest := args[0], args[1:]
	want := func(ok bool, form string) error {
		if !ok {
			return fmt.Errorf("%w: want bastion group %s", errUsage, form)
		}
		return nil
	}
	var err error
	switch sub {
	case "create":
		err = want(len(rest) >= 2, "create NAME +PHONE...")
	case "add", "remove", "promote":
		err = want(len(rest) >= 2, sub+" GROUP +PHONE...")
	case "rename":
		err = want(len(rest) == 2, "rename GROUP NAME")
	case "send":
		err = want(len(rest) == 2, "send GROUP TEXT")
	case "leave", "members":
		err = want(len(rest) == 1, sub+" GROUP")
	case "list":
		err = want(len(rest) == 0, "list")
	default:
		err = fmt.Errorf("%w: unknown group command %q", errUsage, sub)
	}
	if err != nil {
		return err
	}
	return c.withClient(ctx, func(cl *client.Client) error {
		err := c.groupCommand(ctx, cl, sub, rest)
		return explainGroupError(err)
	})
}

func (c *cli) groupCommand(ctx context.Context, cl *client.Client, sub string, rest []string) error {
	switch sub {
	case "list":
		gs, err := cl.Groups(ctx)
		if err != nil {
			return err
		}
		return c.printGroups(gs)
	case "members":
		g, err := cl.Group(ctx, rest[0])
		if err != nil {
			return err
		}
		return c.printMembers(g)
	case "send":
		r, err := cl.SendGroup(ctx, rest[0], rest[1])
		if err != nil {
			return err
		}
		if c.g.json {
			return c.printJSON(struct {
				Group string `json:"group"`
				client.SendResult
			}{rest[0], r})
		}
		plural := "s"
		if r.Devices == 1 {
			plural = ""
		}
		fmt.Fprintf(c.stdout, "Sent to the group (%d device%s).\n", r.Devices, plural)
		return nil
	}
	var g client.GroupInfo
	var err error
	var done string
	switch sub {
	case "create":
		g, err = cl.CreateGroup(ctx, rest[0], rest[1:])
		done = fmt.Sprintf("Created group %q (id %s) with %s.", rest[0], shortID(g.ID), strings.Join(normalized(rest[1:]), ", "))
	case "add":
		g, err = cl.AddToGroup(ctx, rest[0], rest[1:])
		done = fmt.Sprintf("Added %s to %q.", strings.Join(normalized(rest[1:]), ", "), g.Title)
	case "remove":
		g, err = cl.RemoveFromGroup(ctx, rest[0], rest[1:])
		done = fmt.Sprintf("Removed %s from %q.", strings.Join(normalized(rest[1:]), ", "), g.Title)
	case "promote":
		g, err = cl.PromoteInGroup(ctx, rest[0], rest[1:])
		done = fmt.Sprintf("Made %s admin of %q.", strings.Join(normalized(rest[1:]), ", "), g.Title)
	case "rename":
		g, err = cl.RenameGroup(ctx, rest[0], rest[1])
		done = fmt.Sprintf("Renamed group %s to %q.", shortID(g.ID), g.Title)
	case "leave":
		g, err = cl.LeaveGroup(ctx, rest[0])
		done = fmt.Sprintf("Left %q.", g.Title)
	}
	if err != nil {
		return err
	}
	if c.g.json {
		return c.printJSON(g)
	}
	_, err = fmt.Fprintln(c.stdout, done)
	return err
}

// normalized returns numbers in E.164 where they parse (the client has already refused
// the ones that do not).
func normalized(numbers []string) []string {
	out := make([]string, len(numbers))
	for i, n := range numbers {
		if e, err := client.NormalizeNumber(n); err == nil {
			n = e
		}
		out[i] = n
	}
	return out
}

// shortID is the first 16 hex digits of a group id: enough to name it on the command line.
func shortID(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

// explainGroupError adds what the user can do to the group errors.
func explainGroupError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, group.ErrNotAdmin):
		return errors.New("you are not an admin of this group: only admins can add, remove, promote members or rename the group; nothing was sent")
	case errors.Is(err, group.ErrNotMember):
		return errors.New("you are not a member of this group; nothing was sent")
	case errors.Is(err, group.ErrLastAdmin):
		return fmt.Errorf("%w (run bastion group promote GROUP +PHONE first); nothing was sent", err)
	case errors.Is(err, client.ErrUnknownGroup):
		return fmt.Errorf("%w (see bastion group list)", err)
	case errors.Is(err, client.ErrAmbiguousGroup):
		return fmt.Errorf("%w (see bastion group list)", err)
	}
	return err
}

func (c *cli) printGroups(gs []client.GroupInfo) error {
	if c.g.json {
		for _, g := range gs {
			if err := c.printJSON(g); err != nil {
				return err
			}
		}
		return nil
	}
	if len(gs) == 0 {
		fmt.Fprintln(c.stdout, "No groups yet.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMEMBERS\tYOU\tTITLE")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", shortID(g.ID), len(g.Members), role(g), g.Title)
	}
	return tw.Flush()
}

func role(g client.GroupInfo) string {
	switch {
	case !g.Member:
		return "left"
	case g.Admin:
		return "admin"
	}
	return "member"
}

func (c *cli) printMembers(g client.GroupInfo) error {
	if c.g.json {
		return c.printJSON(g)
	}
	fmt.Fprintf(c.stdout, "Group %q (id %s), revision %d, %d members:\n", g.Title, shortID(g.ID), g.Revision, len(g.Members))
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NUMBER\tROLE\tACCOUNT")
	for _, m := range g.Members {
		n := m.Number
		if n == "" {
			n = "?"
		}
		if m.Me {
			n += " (you)"
		}
		r := "member"
		if m.Admin {
			r = "admin"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n, r, m.Account)
	}
	return tw.Flush()
}

// printGroupMessage prints a group message or event, as receive and listen show them:
// "[time] [group TITLE] +PHONE: text", "[time] [group TITLE] * event".
func (c *cli) printGroupMessage(m client.Message) error {
	from := m.FromNumber
	if from == "" {
		from = m.From.String()
	}
	title := m.Group.Title
	if title == "" {
		title = shortID(m.Group.ID)
	}
	when := m.SentAt.Local().Format(time.DateTime)
	if m.GroupEvent != "" {
		for _, line := range strings.Split(m.GroupEvent, "\n") {
			if _, err := fmt.Fprintf(c.stdout, "[%s] [group %s] * %s\n", when, title, line); err != nil {
				return err
			}
		}
		return nil
	}
	_, err := fmt.Fprintf(c.stdout, "[%s] [group %s] %s: %s\n", when, title, from, m.Text)
	return err
}
