package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/client"
)

// liveText is how a delivered update reads in a test: its text, "(withheld)", or the
// error's text.
func liveText(u client.ChannelLive) string {
	switch {
	case u.Err != nil:
		return "error: " + u.Err.Error()
	case u.Entry.Withheld != nil:
		return "(withheld)"
	}
	return u.Entry.Text
}

// listenChannels runs c.ListenWithChannels until the test ends and returns the channel
// its channel updates arrive on.
func listenChannels(t *testing.T, c *client.Client) <-chan client.ChannelLive {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan client.ChannelLive, 32)
	done := make(chan error, 1)
	go func() {
		done <- c.ListenWithChannels(ctx, func(client.Message) error { return nil },
			func(u client.ChannelLive) error { got <- u; return nil })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ListenWithChannels() = %v", err)
		}
	})
	return got
}

// await reads n updates from got.
func await(t *testing.T, who string, got <-chan client.ChannelLive, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		select {
		case u := <-got:
			if u.Handle != "@live_news" {
				t.Fatalf("%s: update of %q, want @live_news", who, u.Handle)
			}
			out = append(out, liveText(u))
		case <-time.After(time.Minute): // a guard against hanging, not a measurement
			t.Fatalf("%s: got %q and then nothing", who, out)
		}
	}
	return out
}

// Two followers listening: each first gets what was posted before it connected (the
// one in Germany gets the post restricted there as the operator's notice instead),
// then every new post live, pushed over the WebSocket without a history fetch.
func TestChannelListen(t *testing.T) {
	s, fake := startMITM(t)
	ctx := context.Background()
	owner, _ := register(t, s, "+14155550601", nil)
	us, _ := register(t, s, "+14155550602", nil)
	de, _ := register(t, s, "+4915123456602", nil)
	if _, err := owner.CreateChannel(ctx, "live_news", "Live", "", false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{us, de} {
		if _, err := c.FollowChannel(ctx, "@live_news"); err != nil {
			t.Fatal(err)
		}
	}
	for c, country := range map[*client.Client]string{us: "US", de: "DE"} {
		me, err := c.Whoami(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fake.setCountry(me.AccountID.String(), country)
	}
	post(t, owner, "@live_news", "fine", "illegal in DE")
	fake.withhold(t, "live_news", 2, nil, "DE", "Unlawful under §130 StGB")

	usGot, deGot := listenChannels(t, us), listenChannels(t, de)
	if got, want := await(t, "us", usGot, 2), []string{"fine", "illegal in DE"}; !slices.Equal(got, want) {
		t.Fatalf("us caught up with %q, want %q", got, want)
	}
	if got, want := await(t, "de", deGot, 2), []string{"fine", "(withheld)"}; !slices.Equal(got, want) {
		t.Fatalf("de caught up with %q, want %q", got, want)
	}

	pages := fake.pagesServed()
	post(t, owner, "@live_news", "breaking")
	for who, got := range map[string]<-chan client.ChannelLive{"us": usGot, "de": deGot} {
		if got, want := await(t, who, got, 1), []string{"breaking"}; !slices.Equal(got, want) {
			t.Fatalf("%s got %q live, want %q", who, got, want)
		}
	}
	if n := fake.pagesServed(); n != pages {
		t.Errorf("history pages fetched for a live post = %d, want 0 (pushed)", n-pages)
	}
	if _, err := owner.EditChannelPost(ctx, "@live_news", 3, "breaking, corrected"); err != nil {
		t.Fatal(err)
	}
	if got, want := await(t, "us", usGot, 1), []string{"breaking, corrected"}; !slices.Equal(got, want) {
		t.Fatalf("us got %q for an edit, want the post as it now reads %q", got, want)
	}
	// What was delivered was stored: a read shows the same.
	if got, want := texts(readChannel(t, us, "@live_news", 0)), []string{"fine", "illegal in DE", "breaking, corrected"}; !slices.Equal(got, want) {
		t.Fatalf("us.ReadChannel() = %q, want %q", got, want)
	}
}

// Frames a server could push: one withheld with the operator's notice is delivered as
// the notice; one after a gap makes the client fetch the history first; one the
// Verifier refuses is reported, neither delivered nor stored.
func TestChannelLiveFrames(t *testing.T) {
	s, fake := startMITM(t)
	ctx := context.Background()
	owner, _ := register(t, s, "+14155550611", nil)
	de, _ := register(t, s, "+4915123456611", nil)
	ch, err := owner.CreateChannel(ctx, "live_news", "Live", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := de.FollowChannel(ctx, "@live_news"); err != nil {
		t.Fatal(err)
	}
	post(t, owner, "@live_news", "one", "two", "three", "four")
	fake.withhold(t, "live_news", 1, nil, "DE", "Unlawful under §130 StGB")
	served := func(seq uint64) api.ChannelPost {
		p := api.ChannelPost{Post: fake.rawPost("live_news", seq)}
		if seq == 1 {
			hist, err := fake.history(ch.ID, "DE")
			if err != nil {
				t.Fatal(err)
			}
			p = hist.Posts[0] // withheld, with the operator's notice
		}
		return p
	}
	push := func(posts ...api.ChannelPost) []string {
		t.Helper()
		us, err := de.ChannelFrameForTest(ctx, api.Frame{Type: api.FrameChannelPosts, Channel: ch.ID, Posts: posts})
		if err != nil {
			t.Fatalf("ChannelFrameForTest() = %v", err)
		}
		var out []string
		for _, u := range us {
			out = append(out, liveText(u))
		}
		return out
	}
	if got, want := push(served(1)), []string{"(withheld)"}; !slices.Equal(got, want) {
		t.Fatalf("pushed withheld post delivered as %q, want %q", got, want)
	}
	if got, want := push(served(3)), []string{"two", "three", "four"}; !slices.Equal(got, want) {
		t.Fatalf("post pushed after a gap delivered as %q, want the history fetched: %q", got, want)
	}

	// A post with its body changed after signing.
	post(t, owner, "@live_news", "five")
	p, err := channel.ParsePost(fake.rawPost("live_news", 5))
	if err != nil {
		t.Fatal(err)
	}
	altered := slices.Clone(p.Bytes())
	altered[len(altered)-1] ^= 1
	us, err := de.ChannelFrameForTest(ctx, api.Frame{Type: api.FrameChannelPosts, Channel: ch.ID, Posts: []api.ChannelPost{{Post: altered}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 || us[0].Entry != nil || us[0].Err == nil {
		t.Fatalf("altered push delivered %+v, want one error and no entry", us)
	}
	if !errors.Is(us[0].Err, channel.ErrAltered) && !errors.Is(us[0].Err, channel.ErrForged) {
		t.Errorf("altered push error = %v, want a channel verification error", us[0].Err)
	}
	if got, want := texts(readChannel(t, de, "@live_news", 0)), []string{"(withheld)", "two", "three", "four", "five"}; !slices.Equal(got, want) {
		t.Fatalf("de.ReadChannel() after the altered push = %q, want %q", got, want)
	}
}
