package client_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bastionchat/bastion/client"
)

// register opens a profile in a new temp dir and registers number on s.
func register(t *testing.T, s *testServer, number string, pass []byte) (*client.Client, string) {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "profile")
	c, err := client.Open(ctx, dir, client.Options{Server: s.URL, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.RequestCode(ctx, number); err != nil {
		t.Fatalf("RequestCode(%s) = %v", number, err)
	}
	if _, err := c.Verify(ctx, s.Code(number)); err != nil {
		t.Fatalf("Verify(%s) = %v", number, err)
	}
	return c, dir
}

func receiveTexts(t *testing.T, c *client.Client) []string {
	t.Helper()
	msgs, err := c.Receive(context.Background())
	if err != nil {
		t.Fatalf("Receive() = %v", err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Text)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestConversation(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice, _ := register(t, s, "+14155550101", nil)
	bob, _ := register(t, s, "+14155550102", nil)

	// Bob is offline: the messages wait in his queue.
	for _, text := range []string{"hello bob", "are you there?"} {
		if _, err := alice.Send(ctx, "+14155550102", text); err != nil {
			t.Fatalf("alice.Send(%q) = %v", text, err)
		}
	}
	if got, want := receiveTexts(t, bob), []string{"hello bob", "are you there?"}; !equal(got, want) {
		t.Fatalf("bob.Receive() = %q, want %q", got, want)
	}
	if got := receiveTexts(t, bob); len(got) != 0 {
		t.Fatalf("bob.Receive() again = %q, want nothing", got)
	}
	if _, err := bob.Send(ctx, "+1 415 555 0101", "yes, hi alice"); err != nil {
		t.Fatalf("bob.Send() = %v", err)
	}
	msgs, err := alice.Receive(ctx)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("alice.Receive() = %v, %v; want one message", msgs, err)
	}
	if m := msgs[0]; m.Text != "yes, hi alice" || m.FromNumber != "+14155550102" || m.FromDevice != 1 {
		t.Errorf("alice got %+v, want text %q from +14155550102 device 1", m, "yes, hi alice")
	}
	// Bob learned Alice's number from her first message, confirmed by the directory.
	bobsMsgs := func() []client.Contact { cs, _ := bob.Contacts(ctx); return cs }()
	if len(bobsMsgs) != 1 || bobsMsgs[0].Number != "+14155550101" || bobsMsgs[0].Trust != client.TrustTrusted {
		t.Errorf("bob.Contacts() = %+v, want alice, trusted", bobsMsgs)
	}

	an, err := alice.SafetyNumber(ctx, "+14155550102")
	if err != nil {
		t.Fatal(err)
	}
	bn, err := bob.SafetyNumber(ctx, "+14155550101")
	if err != nil {
		t.Fatal(err)
	}
	if an != bn || len(an) != 71 {
		t.Errorf("safety numbers: alice %q, bob %q; want equal, 60 digits in groups of 5", an, bn)
	}
}

func TestIdentityChange(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice, _ := register(t, s, "+14155550111", nil)
	bob, _ := register(t, s, "+14155550112", nil)
	if _, err := alice.Send(ctx, "+14155550112", "one"); err != nil {
		t.Fatal(err)
	}
	receiveTexts(t, bob)
	before, _ := alice.SafetyNumber(ctx, "+14155550112")

	// Bob re-registers on a new device: new identity key.
	bob2, _ := register(t, s, "+14155550112", nil)
	_, err := alice.Send(ctx, "+14155550112", "two")
	var ue *client.UntrustedIdentityError
	if !errors.As(err, &ue) || !errors.Is(err, client.ErrUntrustedIdentity) || ue.Number != "+14155550112" {
		t.Fatalf("Send after re-registration = %v, want *UntrustedIdentityError for +14155550112", err)
	}
	cs, _ := alice.Contacts(ctx)
	if len(cs) != 1 || cs[0].Trust != client.TrustChanged {
		t.Errorf("alice.Contacts() = %+v, want bob with trust %q", cs, client.TrustChanged)
	}
	after, _ := alice.SafetyNumber(ctx, "+14155550112")
	if after == before {
		t.Errorf("safety number unchanged after the key changed: %q", after)
	}
	if err := alice.Trust(ctx, "+14155550112"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, "+14155550112", "three"); err != nil {
		t.Fatalf("Send after trust = %v", err)
	}
	if got, want := receiveTexts(t, bob2), []string{"three"}; !equal(got, want) {
		t.Errorf("bob2.Receive() = %q, want %q", got, want)
	}
	// Bob's reply reaches Alice; Alice sees it normally.
	if _, err := bob2.Send(ctx, "+14155550111", "four"); err != nil {
		t.Fatal(err)
	}
	if got, want := receiveTexts(t, alice), []string{"four"}; !equal(got, want) {
		t.Errorf("alice.Receive() = %q, want %q", got, want)
	}
}

func TestErrors(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice, _ := register(t, s, "+14155550121", nil)
	if _, err := alice.Send(ctx, "+14155550199", "hi"); !errors.Is(err, client.ErrUnknownNumber) {
		t.Errorf("Send(unregistered) = %v, want ErrUnknownNumber", err)
	}
	c, err := client.Open(ctx, t.TempDir(), client.Options{Server: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.RequestCode(ctx, "+14155550122"); err != nil {
		t.Fatal(err)
	}
	wrong := "000000"
	if s.Code("+14155550122") == wrong {
		wrong = "111111"
	}
	_, err = c.Verify(ctx, wrong)
	var ce *client.CodeError
	if !errors.As(err, &ce) || !errors.Is(err, client.ErrIncorrectCode) || ce.AttemptsLeft != 4 {
		t.Errorf("Verify(wrong) = %v, want *CodeError with 4 attempts left", err)
	}
	if _, err := c.Send(ctx, "+14155550121", "x"); !errors.Is(err, client.ErrNotRegistered) {
		t.Errorf("Send before registering = %v, want ErrNotRegistered", err)
	}
	down, err := client.Open(ctx, t.TempDir(), client.Options{Server: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	if err := down.RequestCode(ctx, "+14155550123"); !errors.Is(err, client.ErrUnreachable) {
		t.Errorf("RequestCode(unreachable server) = %v, want ErrUnreachable", err)
	}
}

func TestPassphraseAndModes(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	pass := []byte("correct horse battery staple")
	alice, dir := register(t, s, "+14155550131", pass)
	acct, _ := alice.Whoami(ctx)
	alice.Close()

	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("profile dir mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v (%v), want 0600", filepath.Base(f), fi.Mode().Perm(), err)
		}
	}
	for _, tc := range []struct {
		name string
		pass []byte
		want error
	}{
		{"none", nil, client.ErrPassphraseRequired},
		{"wrong", []byte("wrong"), client.ErrWrongPassphrase},
	} {
		if c, err := client.Open(ctx, dir, client.Options{Passphrase: tc.pass}); !errors.Is(err, tc.want) {
			if c != nil {
				c.Close()
			}
			t.Errorf("Open(%s passphrase) = %v, want %v", tc.name, err, tc.want)
		}
	}
	c, err := client.Open(ctx, dir, client.Options{Passphrase: pass})
	if err != nil {
		t.Fatalf("Open(right passphrase) = %v", err)
	}
	defer c.Close()
	got, err := c.Whoami(ctx)
	if err != nil || got.AccountID != acct.AccountID || got.Number != "+14155550131" {
		t.Errorf("Whoami() = %+v, %v; want %+v", got, err, acct)
	}

	// Removing the passphrase: the profile opens without one, and its keys still work.
	if err := c.SetPassphrase(ctx, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if c, err := client.Open(ctx, dir, client.Options{Passphrase: pass}); !errors.Is(err, client.ErrNoPassphraseSet) {
		if c != nil {
			c.Close()
		}
		t.Errorf("Open(old passphrase) after removing it = %v, want ErrNoPassphraseSet", err)
	}
	c, err = client.Open(ctx, dir, client.Options{})
	if err != nil {
		t.Fatalf("Open(no passphrase) after removing it = %v", err)
	}
	defer c.Close()
	if _, err := c.Receive(ctx); err != nil {
		t.Errorf("Receive() after removing the passphrase = %v", err)
	}
}

// A contact who re-registered writes first: the message is shown, marked as coming
// with a new safety number, and replies are refused until the user trusts the key.
func TestIdentityChangeReceived(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice, _ := register(t, s, "+14155550181", nil)
	bob, _ := register(t, s, "+14155550182", nil)
	if _, err := bob.Send(ctx, "+14155550181", "hi"); err != nil {
		t.Fatal(err)
	}
	if msgs, err := alice.Receive(ctx); err != nil || len(msgs) != 1 || msgs[0].SafetyNumberChanged {
		t.Fatalf("alice.Receive() = %+v, %v; want one message, no change (first contact)", msgs, err)
	}

	bob2, _ := register(t, s, "+14155550182", nil)
	if _, err := bob2.Send(ctx, "+14155550181", "new phone"); err != nil {
		t.Fatal(err)
	}
	msgs, err := alice.Receive(ctx)
	if err != nil || len(msgs) != 1 || msgs[0].Text != "new phone" || !msgs[0].SafetyNumberChanged {
		t.Fatalf("alice.Receive() = %+v, %v; want %q marked SafetyNumberChanged", msgs, err, "new phone")
	}
	if _, err := alice.Send(ctx, "+14155550182", "who is this?"); !errors.Is(err, client.ErrUntrustedIdentity) {
		t.Fatalf("alice.Send() before trust = %v, want ErrUntrustedIdentity", err)
	}
	if err := alice.Trust(ctx, "+14155550182"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, "+14155550182", "welcome back"); err != nil {
		t.Fatalf("alice.Send() after trust = %v", err)
	}
	if got, want := receiveTexts(t, bob2), []string{"welcome back"}; !equal(got, want) {
		t.Errorf("bob2.Receive() = %q, want %q", got, want)
	}
}
