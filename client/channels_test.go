package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/channel/private"
	"github.com/bastionchat/bastion/client"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// texts returns the text of each entry, "(kind)" for one without text.
func texts(es []client.ChannelEntry) []string {
	var out []string
	for _, e := range es {
		switch {
		case e.Withheld != nil:
			out = append(out, "(withheld)")
		case e.Undecryptable:
			out = append(out, "(undecryptable)")
		case e.Deleted:
			out = append(out, "(deleted)")
		default:
			out = append(out, e.Text)
		}
	}
	return out
}

func readChannel(t *testing.T, c *client.Client, handle string, limit int) []client.ChannelEntry {
	t.Helper()
	es, err := c.ReadChannel(context.Background(), handle, limit)
	if err != nil {
		t.Fatalf("ReadChannel(%s) = %v", handle, err)
	}
	return es
}

func post(t *testing.T, c *client.Client, handle string, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if _, err := c.PostToChannel(context.Background(), handle, m); err != nil {
			t.Fatalf("PostToChannel(%s, %q) = %v", handle, m, err)
		}
	}
}

func TestChannelLifecycle(t *testing.T) {
	s, fake := startMITM(t)
	ctx := context.Background()
	owner, _ := register(t, s, "+14155550111", nil)
	early, _ := register(t, s, "+14155550112", nil)
	late, _ := register(t, s, "+14155550113", nil)

	ch, err := owner.CreateChannel(ctx, "@bastion_news", "Bastion news", "What is new", false)
	if err != nil {
		t.Fatalf("CreateChannel() = %v", err)
	}
	if ch.Role != client.ChannelRoleOwner || ch.Handle != "@bastion_news" || ch.Private {
		t.Fatalf("CreateChannel() = %+v", ch)
	}
	if _, err := early.CreateChannel(ctx, "bastion_news", "Mine", "", false); !isAPICode(err, api.CodeHandleTaken) {
		t.Fatalf("CreateChannel(taken handle) = %v, want %s", err, api.CodeHandleTaken)
	}
	if _, err := early.FollowChannel(ctx, "@bastion_news"); err != nil {
		t.Fatalf("FollowChannel() = %v", err)
	}
	post(t, owner, "@bastion_news", "first", "second", "third")
	if _, err := owner.EditChannelPost(ctx, "@bastion_news", 2, "second, corrected"); err != nil {
		t.Fatalf("EditChannelPost() = %v", err)
	}
	if _, err := owner.DeleteChannelPost(ctx, "@bastion_news", 3); err != nil {
		t.Fatalf("DeleteChannelPost() = %v", err)
	}
	want := []string{"first", "second, corrected", "(deleted)"}
	es := readChannel(t, early, "@bastion_news", 0)
	if got := texts(es); !slices.Equal(got, want) {
		t.Fatalf("early.ReadChannel() = %q, want %q", got, want)
	}
	if !es[0].ByOwner || !es[1].Edited || es[0].Seq != 1 || es[2].Seq != 3 {
		t.Fatalf("early.ReadChannel() entries = %+v", es)
	}
	// Read again: nothing new, the same view, and no second count of views.
	if got := texts(readChannel(t, early, "@bastion_news", 0)); !slices.Equal(got, want) {
		t.Fatalf("early.ReadChannel() again = %q, want %q", got, want)
	}
	if got := fake.views("bastion_news"); !slices.Equal(got, []int64{1, 1, 1}) {
		t.Fatalf("views after one reader = %v, want one each", got)
	}

	// A late follower starts at the owner's head and reads the history backwards.
	if _, err := late.FollowChannel(ctx, "bastion_news"); err != nil {
		t.Fatalf("late.FollowChannel() = %v", err)
	}
	post(t, owner, "@bastion_news", "fourth")
	if got, want := texts(readChannel(t, late, "@bastion_news", 10)), append(want, "fourth"); !slices.Equal(got, want) {
		t.Fatalf("late.ReadChannel() = %q, want %q", got, want)
	}
	if got, want := texts(readChannel(t, late, "@bastion_news", 2)), []string{"(deleted)", "fourth"}; !slices.Equal(got, want) {
		t.Fatalf("late.ReadChannel(limit 2) = %q, want %q", got, want)
	}
	if _, err := early.FollowChannel(ctx, "@bastion_news"); err != nil {
		t.Fatalf("FollowChannel() again = %v", err)
	}
	if got := fake.followers("bastion_news"); got != 2 {
		t.Fatalf("followers = %d, want 2 (following twice counts once)", got)
	}

	id, err := late.ReportChannelPost(ctx, "@bastion_news", 1, api.ReportTerms, "spam")
	if err != nil || id == "" {
		t.Fatalf("ReportChannelPost() = %q, %v", id, err)
	}
	if _, err := late.ReportChannelPost(ctx, "@bastion_news", 1, "dislike", ""); err == nil {
		t.Fatal("ReportChannelPost(reason dislike) = nil, want an error")
	}
	if err := late.UnfollowChannel(ctx, "@bastion_news"); err != nil {
		t.Fatalf("UnfollowChannel() = %v", err)
	}
	if _, err := late.ReadChannel(ctx, "@bastion_news", 0); !errors.Is(err, client.ErrNotFollowing) {
		t.Fatalf("ReadChannel() after unfollowing = %v, want ErrNotFollowing", err)
	}
	if err := owner.UnfollowChannel(ctx, "@bastion_news"); err == nil {
		t.Fatal("owner.UnfollowChannel() = nil, want an error")
	}
	if _, err := early.PostToChannel(ctx, "@bastion_news", "mine now"); !errors.Is(err, client.ErrNotChannelSigner) {
		t.Fatalf("follower.PostToChannel() = %v, want ErrNotChannelSigner", err)
	}
}

func isAPICode(err error, code string) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Body.Code == code
}

// TestChannelMisbehavingServer is issue 9's proof: a server that forges, alters,
// drops or reorders a post, or withholds one without a statement of reasons, is caught
// by the subscriber's Read, which shows and stores nothing it did not verify; once the
// server behaves, the honest posts are accepted (the refusal left no trace).
func TestChannelMisbehavingServer(t *testing.T) {
	stranger, err := channel.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, page []api.ChannelPost) []api.ChannelPost
		want   error
		gap    *channel.GapError
	}{
		{"forged", func(t *testing.T, page []api.ChannelPost) []api.ChannelPost {
			// Post 2 replaced by one a key never delegated signed, at the right place.
			p1, _ := channel.ParsePost(page[0].Post)
			f, err := channel.Sign(stranger, p1.Channel(), 2, p1.Hash(), channel.Draft{Kind: channel.KindPost, Body: []byte("BAD forged"), Time: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			page[1].Post = f.Bytes()
			return page
		}, channel.ErrForged, nil},
		{"altered", func(t *testing.T, page []api.ChannelPost) []api.ChannelPost {
			page[1].Post = bytes.Replace(bytes.Clone(page[1].Post), []byte("two"), []byte("BAD"), 1)
			return page
		}, channel.ErrAltered, nil},
		{"dropped", func(t *testing.T, page []api.ChannelPost) []api.ChannelPost {
			return slices.Delete(page, 1, 2)
		}, channel.ErrGap, &channel.GapError{From: 2, To: 2}},
		{"reordered", func(t *testing.T, page []api.ChannelPost) []api.ChannelPost {
			page[1], page[2] = page[2], page[1]
			return page
		}, channel.ErrReordered, nil},
		{"withheld without notice", func(t *testing.T, page []api.ChannelPost) []api.ChannelPost {
			p, _ := channel.ParsePost(page[1].Post)
			page[1].Post = p.Withhold().Bytes()
			return page
		}, channel.ErrWithheld, nil},
		{"withheld with a notice not the operator's", func(t *testing.T, page []api.ChannelPost) []api.ChannelPost {
			p, _ := channel.ParsePost(page[1].Post)
			_, other, _ := ed25519.GenerateKey(nil)
			n, err := channel.SignNotice(other, channel.Notice{Channel: p.Channel(), Seq: 2, Post: p.Hash(),
				Action: channel.ActionRemove, Reason: "made up", Time: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			page[1] = api.ChannelPost{Post: p.Withhold().Bytes(), Notice: n.Bytes()}
			return page
		}, channel.ErrWithheld, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, fake := startMITM(t)
			ctx := context.Background()
			owner, _ := register(t, s, "+14155550121", nil)
			sub, _ := register(t, s, "+14155550122", nil)
			if _, err := owner.CreateChannel(ctx, "honest_news", "Honest news", "", false); err != nil {
				t.Fatal(err)
			}
			if _, err := sub.FollowChannel(ctx, "@honest_news"); err != nil {
				t.Fatal(err)
			}
			post(t, owner, "@honest_news", "post one", "post two", "post three")

			fake.setTamper(func(page []api.ChannelPost) []api.ChannelPost { return tc.tamper(t, page) })
			es, err := sub.ReadChannel(ctx, "@honest_news", 0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadChannel() error = %v, want %v", err, tc.want)
			}
			if tc.gap != nil {
				var gap *channel.GapError
				if !errors.As(err, &gap) || *gap != *tc.gap {
					t.Fatalf("ReadChannel() error = %v, want gap %v", err, tc.gap)
				}
			}
			if got, want := texts(es), []string{"post one"}; !slices.Equal(got, want) {
				t.Fatalf("ReadChannel() shows %q, want %q (nothing unverified)", got, want)
			}
			// The profile stored nothing but post one: with the tampering still on, a
			// second read refuses again and shows the same.
			es, err = sub.ReadChannel(ctx, "@honest_news", 0)
			if !errors.Is(err, tc.want) || !slices.Equal(texts(es), []string{"post one"}) {
				t.Fatalf("ReadChannel() again = %q, %v; want post one and %v", texts(es), err, tc.want)
			}
			fake.setTamper(nil)
			if got, want := texts(readChannel(t, sub, "@honest_news", 0)), []string{"post one", "post two", "post three"}; !slices.Equal(got, want) {
				t.Fatalf("ReadChannel() from an honest server = %q, want %q", got, want)
			}
		})
	}
}

// A server that holds back the newest posts is caught by the owner's head: it names a
// post the subscriber was not served.
func TestChannelHeldBackPosts(t *testing.T) {
	s, fake := startMITM(t)
	ctx := context.Background()
	owner, _ := register(t, s, "+14155550131", nil)
	sub, _ := register(t, s, "+14155550132", nil)
	if _, err := owner.CreateChannel(ctx, "fresh_news", "Fresh", "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.FollowChannel(ctx, "@fresh_news"); err != nil {
		t.Fatal(err)
	}
	post(t, owner, "@fresh_news", "one", "two")
	fake.setTamper(func(page []api.ChannelPost) []api.ChannelPost {
		if len(page) > 1 {
			return page[:1] // serve only the first, and claim nothing newer
		}
		return page
	})
	fake.setNewest(1)
	es, err := sub.ReadChannel(ctx, "@fresh_news", 0)
	var gap *channel.GapError
	if !errors.As(err, &gap) || gap.From != 2 || gap.To != 2 {
		t.Fatalf("ReadChannel() = %v, want a gap at post 2 from the owner's head", err)
	}
	if got := texts(es); !slices.Equal(got, []string{"one"}) {
		t.Fatalf("ReadChannel() = %q, want one", got)
	}
}

// The operator withholds a post with a signed statement of reasons: a subscriber in
// that jurisdiction sees the notice in its place, the owner sees it among the channel's
// notices, and a subscriber that read the post before a removal has it withheld on its
// next read; a restriction elsewhere leaves it alone.
func TestChannelWithheldPost(t *testing.T) {
	s, fake := startMITM(t)
	ctx := context.Background()
	owner, _ := register(t, s, "+14155550141", nil)
	us, _ := register(t, s, "+14155550142", nil)
	de, _ := register(t, s, "+4915123456142", nil)
	if _, err := owner.CreateChannel(ctx, "loud_news", "Loud", "", false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{us, de} {
		if _, err := c.FollowChannel(ctx, "@loud_news"); err != nil {
			t.Fatal(err)
		}
	}
	post(t, owner, "@loud_news", "fine", "illegal in DE", "also fine")
	all := []string{"fine", "illegal in DE", "also fine"}
	if got := texts(readChannel(t, us, "@loud_news", 0)); !slices.Equal(got, all) {
		t.Fatalf("us.ReadChannel() = %q, want %q", got, all)
	}

	fake.withhold(t, "loud_news", 2, nil, "DE", "Unlawful under §130 StGB; appeal at https://example/appeal")
	es := readChannel(t, de, "@loud_news", 0)
	if got, want := texts(es), []string{"fine", "(withheld)", "also fine"}; !slices.Equal(got, want) {
		t.Fatalf("de.ReadChannel() = %q, want %q", got, want)
	}
	w := es[1].Withheld
	if w.Action != "restricted" || w.Jurisdiction != "DE" || !strings.Contains(w.Reason, "130 StGB") || es[1].Text != "" {
		t.Fatalf("withheld entry = %+v, notice %+v", es[1], w)
	}
	if got := texts(readChannel(t, us, "@loud_news", 0)); !slices.Equal(got, all) {
		t.Fatalf("us.ReadChannel() after a DE restriction = %q, want %q", got, all)
	}

	fake.withhold(t, "loud_news", 3, nil, "", "Removed: terms of service, spam")
	if got, want := texts(readChannel(t, us, "@loud_news", 0)), []string{"fine", "illegal in DE", "(withheld)"}; !slices.Equal(got, want) {
		t.Fatalf("us.ReadChannel() after a removal = %q, want %q", got, want)
	}
	// A notice signed by someone else than the operator changes nothing held.
	_, other, _ := ed25519.GenerateKey(nil)
	fake.withhold(t, "loud_news", 1, other, "", "made up")
	if got, want := texts(readChannel(t, us, "@loud_news", 0)), []string{"fine", "illegal in DE", "(withheld)"}; !slices.Equal(got, want) {
		t.Fatalf("us.ReadChannel() after a forged notice = %q, want %q", got, want)
	}

	ns, err := owner.ChannelNotices(ctx, "@loud_news")
	if len(ns) != 2 || ns[0].Seq != 2 || ns[0].Jurisdiction != "DE" || ns[1].Seq != 3 || ns[1].Action != "removed" {
		t.Fatalf("ChannelNotices() = %+v, want the DE restriction of post 2 and the removal of post 3", ns)
	}
	if err == nil {
		t.Fatal("ChannelNotices() with a notice not the operator's = nil error, want one")
	}
}

// An admin key delegated by the owner posts; after the owner revokes it, the admin's
// own client refuses to post, and a post the stolen key signs later (served by a
// colluding server) is refused by every subscriber.
func TestChannelAdmins(t *testing.T) {
	s, fake := startMITM(t)
	ctx := context.Background()
	owner, _ := register(t, s, "+14155550151", nil)
	admin, _ := register(t, s, "+14155550152", nil)
	sub, _ := register(t, s, "+14155550153", nil)
	if _, err := owner.CreateChannel(ctx, "staff_news", "Staff", "", false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{admin, sub} {
		if _, err := c.FollowChannel(ctx, "@staff_news"); err != nil {
			t.Fatal(err)
		}
	}
	key, err := admin.ChannelAdminKey(ctx, "@staff_news")
	if err != nil {
		t.Fatalf("ChannelAdminKey() = %v", err)
	}
	if again, _ := admin.ChannelAdminKey(ctx, "@staff_news"); again != key {
		t.Fatalf("ChannelAdminKey() again = %s, want the same key %s", again, key)
	}
	if _, err := admin.PostToChannel(ctx, "@staff_news", "before delegation"); err == nil {
		t.Fatal("PostToChannel() by an undelegated admin = nil, want an error")
	}
	if _, err := owner.AddChannelAdmin(ctx, "@staff_news", key); err != nil {
		t.Fatalf("AddChannelAdmin() = %v", err)
	}
	// The admin's view is behind (it has not read the delegation): it catches up before
	// it signs. Then the owner, behind the admin's post, loses the race for post 3 and
	// signs again after the admin's (409 channel_conflict).
	post(t, admin, "@staff_news", "from the admin")
	post(t, owner, "@staff_news", "from the owner")
	admins, err := sub.ChannelAdmins(ctx, "@staff_news")
	if err != nil {
		t.Fatal(err)
	}
	es := readChannel(t, sub, "@staff_news", 0)
	if got, want := texts(es), []string{"admin key " + key + " delegated from post 2", "from the admin", "from the owner"}; !slices.Equal(got, want) {
		t.Fatalf("ReadChannel() = %q, want %q", got, want)
	}
	if es[1].ByOwner || es[1].Signer != key || !es[2].ByOwner {
		t.Fatalf("ReadChannel() signers = %+v", es)
	}
	if admins, _ = sub.ChannelAdmins(ctx, "@staff_news"); len(admins) != 1 || admins[0].Key != key || admins[0].From != 2 {
		t.Fatalf("ChannelAdmins() = %+v, want %s from 2", admins, key)
	}

	if _, err := owner.RevokeChannelAdmin(ctx, "@staff_news", key); err != nil {
		t.Fatalf("RevokeChannelAdmin() = %v", err)
	}
	if _, err := admin.PostToChannel(ctx, "@staff_news", "after revocation"); !errors.Is(err, channel.ErrRevoked) {
		t.Fatalf("PostToChannel() by a revoked admin = %v, want ErrRevoked", err)
	}

	// A key the test holds, delegated and revoked, then used by a colluding server.
	stolen, _ := channel.GenerateSigningKey(nil)
	if _, err := owner.AddChannelAdmin(ctx, "@staff_news", stolen.Public().String()); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.RevokeChannelAdmin(ctx, "@staff_news", stolen.Public().String()); err != nil {
		t.Fatal(err)
	}
	p6, _ := channel.ParsePost(fake.rawPost("staff_news", 6))
	evil, err := channel.Sign(stolen, p6.Channel(), 7, p6.Hash(), channel.Draft{Kind: channel.KindPost, Body: []byte("BAD by a revoked key"), Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	fake.setTamper(func(page []api.ChannelPost) []api.ChannelPost {
		return append(page, api.ChannelPost{Post: evil.Bytes()})
	})
	es, err = sub.ReadChannel(ctx, "@staff_news", 0)
	if !errors.Is(err, channel.ErrRevoked) {
		t.Fatalf("ReadChannel() with a revoked key's post = %v, want ErrRevoked", err)
	}
	for _, e := range es {
		if strings.Contains(e.Text, "BAD") {
			t.Fatalf("ReadChannel() shows %q", e.Text)
		}
	}
	if n := len(es); n != 6 || es[n-1].Kind != "revoke" {
		t.Fatalf("ReadChannel() = %q, want six entries ending with the revocation", texts(es))
	}
}

// A private channel: the owner admits one follower over their 1:1 session; it reads
// the posts, a follower never admitted cannot, and the server holds only ciphertext.
func TestPrivateChannel(t *testing.T) {
	s, fake := startMITM(t)
	ctx := context.Background()
	owner, _ := register(t, s, "+14155550161", nil)
	member, _ := register(t, s, "+14155550162", nil)
	outsider, _ := register(t, s, "+14155550163", nil)
	if _, err := owner.CreateChannel(ctx, "inner_circle", "Inner circle", "", true); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{member, outsider} {
		if _, err := c.FollowChannel(ctx, "@inner_circle"); err != nil {
			t.Fatal(err)
		}
	}
	if err := owner.AdmitToChannel(ctx, "@inner_circle", "+14155550162"); err != nil {
		t.Fatalf("AdmitToChannel() = %v", err)
	}
	if got := receiveTexts(t, member); len(got) != 0 {
		t.Fatalf("member.Receive() = %q, want no message for an admission", got)
	}
	const secret = "members only: meet at nine"
	post(t, owner, "@inner_circle", secret)

	if got, want := texts(readChannel(t, member, "@inner_circle", 0)), []string{secret}; !slices.Equal(got, want) {
		t.Fatalf("member.ReadChannel() = %q, want %q", got, want)
	}
	es := readChannel(t, outsider, "@inner_circle", 0)
	if len(es) != 1 || !es[0].Undecryptable || es[0].Text != "" {
		t.Fatalf("outsider.ReadChannel() = %+v, want one undecryptable post", es)
	}
	if got, want := texts(readChannel(t, owner, "@inner_circle", 0)), []string{secret}; !slices.Equal(got, want) {
		t.Fatalf("owner.ReadChannel() = %q, want %q", got, want)
	}
	// The scan sees the stored post (its ciphertext), and no plaintext anywhere.
	stored := fake.stored("inner_circle")
	if !bytes.Contains(stored, fake.rawPost("inner_circle", 1)) {
		t.Fatal("the scan of the server's store does not find the post it holds")
	}
	if bytes.Contains(stored, []byte("meet at nine")) {
		t.Fatal("the server's store holds the private post's plaintext")
	}
	if chs, err := member.Channels(ctx); err != nil || len(chs) != 1 || chs[0].Admitter == "" {
		t.Fatalf("member.Channels() = %+v, %v; want the admitter recorded", chs, err)
	}
	if err := member.AdmitToChannel(ctx, "@inner_circle", "+14155550163"); !errors.Is(err, client.ErrNotChannelSigner) {
		t.Fatalf("member.AdmitToChannel() = %v, want ErrNotChannelSigner", err)
	}
}

// Who may admit (docs/channels.md, "Private channels"): an admission to a channel the
// profile does not follow is dropped; only an admission the owner's channel key signed
// for this very account is accepted, whoever sends it first: a hostile follower's own
// chain, an unsigned (old layout) admission, a wrongly signed one and the owner's
// admission of another account replayed are all dropped; an admission never shows as
// a message.
func TestPrivateChannelAdmissionRules(t *testing.T) {
	s, _ := startMITM(t)
	ctx := context.Background()
	owner, _ := register(t, s, "+14155550181", nil)
	member, _ := register(t, s, "+14155550182", nil)
	mallory, _ := register(t, s, "+14155550183", nil)
	if _, err := owner.CreateChannel(ctx, "secret_club", "Secret club", "", true); err != nil {
		t.Fatal(err)
	}
	// Admitted before following: dropped, so the owner's posts stay closed to it.
	if err := owner.AdmitToChannel(ctx, "@secret_club", "+14155550182"); err != nil {
		t.Fatal(err)
	}
	if got := receiveTexts(t, member); len(got) != 0 {
		t.Fatalf("member.Receive() = %q, want nothing", got)
	}
	for _, c := range []*client.Client{member, mallory} {
		if _, err := c.FollowChannel(ctx, "@secret_club"); err != nil {
			t.Fatal(err)
		}
	}
	post(t, owner, "@secret_club", "one")
	es := readChannel(t, member, "@secret_club", 0)
	if len(es) != 1 || !es[0].Undecryptable {
		t.Fatalf("member.ReadChannel() after an admission before following = %+v, want undecryptable", es)
	}
	ownerKey, err := hex.DecodeString(es[0].Signer)
	if err != nil {
		t.Fatal(err)
	}
	chs, err := member.Channels(ctx)
	if err != nil || len(chs) != 1 || chs[0].Admitter != "" {
		t.Fatalf("member.Channels() = %+v, %v; want no admitter yet", chs, err)
	}
	id, _ := hex.DecodeString(chs[0].ID)
	cid, _ := channel.ParseID(chs[0].ID)
	pk, _ := channel.NewPublicKey(ownerKey)
	dm, err := private.NewPoster(senderkey.NewMemoryStore(), cid, pk).Distribution(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Mallory, another follower, gets there first. What she can send without the
	// owner's key, and the owner's own admission of her replayed to the member:
	_, _, realDist, realSig, err := owner.ChannelAdmissionForTest(ctx, "@secret_club", "+14155550183")
	if err != nil {
		t.Fatal(err)
	}
	bogus := bytes.Repeat([]byte{7}, 64)
	for _, tc := range []struct {
		name      string
		dist, sig []byte
	}{
		{"her own chain, unsigned (the old field layout)", dm.Bytes(), nil},
		{"her own chain, with a signature not by the owner", dm.Bytes(), bogus},
		{"her own chain, with the owner's signature of another chain", dm.Bytes(), realSig},
		{"the owner's chain, admitted for Mallory, replayed", realDist, realSig},
	} {
		if err := mallory.SendChannelAdmissionForTest(ctx, "+14155550182", id, ownerKey, tc.dist, tc.sig); err != nil {
			t.Fatal(err)
		}
		if got := receiveTexts(t, member); len(got) != 0 {
			t.Fatalf("%s: member.Receive() = %q, want no message for an admission", tc.name, got)
		}
		if chs, _ := member.Channels(ctx); chs[0].Admitter != "" {
			t.Fatalf("%s: admitter = %q, want the admission dropped", tc.name, chs[0].Admitter)
		}
	}
	post(t, owner, "@secret_club", "two")
	if got, want := texts(readChannel(t, member, "@secret_club", 0)), []string{"(undecryptable)", "(undecryptable)"}; !slices.Equal(got, want) {
		t.Fatalf("member.ReadChannel() after refused admissions = %q, want %q", got, want)
	}

	// The owner's admission, after all of those: accepted, the next post opens.
	if err := owner.AdmitToChannel(ctx, "@secret_club", "+14155550182"); err != nil {
		t.Fatal(err)
	}
	receiveTexts(t, member)
	me, _ := owner.Whoami(ctx)
	if chs, _ := member.Channels(ctx); chs[0].Admitter != me.AccountID.String() {
		t.Fatalf("admitter = %q, want the owner's account %s", chs[0].Admitter, me.AccountID)
	}
	post(t, owner, "@secret_club", "three")
	if got, want := texts(readChannel(t, member, "@secret_club", 0)), []string{"(undecryptable)", "(undecryptable)", "three"}; !slices.Equal(got, want) {
		t.Fatalf("member.ReadChannel() = %q, want %q", got, want)
	}
	if got, want := texts(readChannel(t, mallory, "@secret_club", 0)), []string{"(undecryptable)", "(undecryptable)", "(undecryptable)"}; !slices.Equal(got, want) {
		t.Fatalf("mallory.ReadChannel() = %q, want %q", got, want)
	}
}

// Removing a subscriber from a private channel: the owner starts a new chain and
// re-admits the others; the removed one cannot read the posts made after it, the
// others can, and what the removed one read before stays readable to it.
func TestPrivateChannelRemove(t *testing.T) {
	s, _ := startMITM(t)
	ctx := context.Background()
	owner, _ := register(t, s, "+14155550191", nil)
	stays, _ := register(t, s, "+14155550192", nil)
	goes, _ := register(t, s, "+14155550193", nil)
	if _, err := owner.CreateChannel(ctx, "book_club", "Book club", "", true); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{stays, goes} {
		if _, err := c.FollowChannel(ctx, "@book_club"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"+14155550192", "+14155550193", "+14155550192"} {
		if err := owner.AdmitToChannel(ctx, "@book_club", n); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := owner.ChannelAdmitted(ctx, "@book_club"); err != nil || !slices.Equal(got, []string{"+14155550192", "+14155550193"}) {
		t.Fatalf("ChannelAdmitted() = %q, %v; want both, once each", got, err)
	}
	receiveTexts(t, stays)
	receiveTexts(t, goes)
	post(t, owner, "@book_club", "before")
	for _, c := range []*client.Client{stays, goes} {
		if got, want := texts(readChannel(t, c, "@book_club", 0)), []string{"before"}; !slices.Equal(got, want) {
			t.Fatalf("ReadChannel() before the removal = %q, want %q", got, want)
		}
	}

	if _, err := owner.RemoveFromChannel(ctx, "@book_club", "+14155550100"); err == nil {
		t.Fatal("RemoveFromChannel(a number never admitted) = nil, want an error")
	}
	if n, err := owner.RemoveFromChannel(ctx, "@book_club", "+14155550193"); err != nil || n != 1 {
		t.Fatalf("RemoveFromChannel() = %d, %v; want 1 re-admitted", n, err)
	}
	if got, err := owner.ChannelAdmitted(ctx, "@book_club"); err != nil || !slices.Equal(got, []string{"+14155550192"}) {
		t.Fatalf("ChannelAdmitted() after the removal = %q, %v", got, err)
	}
	receiveTexts(t, stays)
	receiveTexts(t, goes)
	post(t, owner, "@book_club", "after")
	if got, want := texts(readChannel(t, stays, "@book_club", 0)), []string{"before", "after"}; !slices.Equal(got, want) {
		t.Fatalf("remaining subscriber's ReadChannel() = %q, want %q", got, want)
	}
	if got, want := texts(readChannel(t, goes, "@book_club", 0)), []string{"before", "(undecryptable)"}; !slices.Equal(got, want) {
		t.Fatalf("removed subscriber's ReadChannel() = %q, want %q", got, want)
	}
	if got, want := texts(readChannel(t, owner, "@book_club", 0)), []string{"before", "after"}; !slices.Equal(got, want) {
		t.Fatalf("owner's ReadChannel() = %q, want %q", got, want)
	}
	// Admitted again, the removed subscriber reads what comes next.
	if err := owner.AdmitToChannel(ctx, "@book_club", "+14155550193"); err != nil {
		t.Fatal(err)
	}
	receiveTexts(t, goes)
	post(t, owner, "@book_club", "again")
	if got, want := texts(readChannel(t, goes, "@book_club", 0)), []string{"before", "(undecryptable)", "again"}; !slices.Equal(got, want) {
		t.Fatalf("re-admitted subscriber's ReadChannel() = %q, want %q", got, want)
	}
}

// An owner who reads its channel submits a new head when the server's is more than an
// hour old, so that subscribers keep a recent bound on what they may be missing.
func TestChannelOwnerRefreshesHead(t *testing.T) {
	s, fake := startMITM(t)
	ctx := context.Background()
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	now := start
	owner, err := client.Open(ctx, filepath.Join(t.TempDir(), "owner"), client.Options{Server: s.URL, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if err := owner.RequestCode(ctx, "+14155550191"); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Verify(ctx, s.Code("+14155550191")); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CreateChannel(ctx, "slow_news", "Slow", "", false); err != nil {
		t.Fatal(err)
	}
	post(t, owner, "@slow_news", "rarely") // its head is from start
	for _, tc := range []struct {
		after time.Duration
		want  int // heads submitted so far
	}{
		{30 * time.Minute, 0}, // fresh enough: none
		{2 * time.Hour, 1},    // stale: one, signed now
	} {
		now = start.Add(tc.after)
		readChannel(t, owner, "@slow_news", 0)
		heads := fake.submittedHeads()
		if len(heads) != tc.want {
			t.Fatalf("heads submitted after a read %v later = %d, want %d", tc.after, len(heads), tc.want)
		}
		if tc.want > 0 {
			h, err := channel.ParseHead(heads[len(heads)-1])
			if err != nil || !h.Time().Equal(now) || h.Seq() != 1 {
				t.Fatalf("submitted head = seq %d at %v (%v), want seq 1 at %v", h.Seq(), h.Time(), err, now)
			}
		}
	}
}
