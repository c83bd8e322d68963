package client

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
)

// Notices from the service's operator (a lawful-request notice, a market withdrawal)
// arrive as envelopes whose body is an [api.ServerNotice] instead of sealed sender. Any
// user can queue any body for anyone, so a notice is shown only if it carries the
// server's Ed25519 signature; an unsigned or forged one is dropped like any body that
// does not open. Notices are stored as messages from the nil account and come back
// from [Client.Receive] with [Message.FromOperator] set.

// metaNoticeKey holds the server's notice-signing key, fetched on first need.
const metaNoticeKey = "notice_key"

// openNotice returns the text to show for body if it is a notice the server signed.
func (c *Client) openNotice(ctx context.Context, body []byte) (string, bool) {
	if len(body) == 0 || body[0] != '{' { // sealed sender starts with 0x11
		return "", false
	}
	var sn api.ServerNotice
	if err := json.Unmarshal(body, &sn); err != nil || len(sn.Notice) == 0 {
		return "", false
	}
	key, err := c.noticeKey(ctx)
	if err != nil {
		c.log.Debug("notice key unavailable", "err", err)
		return "", false
	}
	signed := append([]byte(api.NoticeContext), sn.Notice...)
	if !ed25519.Verify(key, signed, sn.Signature) {
		c.log.Debug("notice signature does not verify")
		return "", false
	}
	return renderNotice(sn.Notice)
}

// noticeKey returns the server's notice key, fetching and keeping it on first use.
// Fetching it late is sound: the threat is another user forging a notice, and users do
// not choose the key the server serves.
func (c *Client) noticeKey(ctx context.Context) (ed25519.PublicKey, error) {
	if b, err := getMeta(ctx, c.db, metaNoticeKey); err == nil && len(b) == ed25519.PublicKeySize {
		return b, nil
	}
	var resp struct {
		Key string `json:"ed25519_public_key"`
	}
	if err := c.api.do(ctx, "GET", "/v1/legal/key", nil, nil, &resp); err != nil {
		return nil, fmt.Errorf("fetching the server's notice key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(resp.Key)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("server sent a bad notice key")
	}
	if err := setMeta(ctx, c.db, metaNoticeKey, key); err != nil {
		return nil, err
	}
	return key, nil
}

// renderNotice turns a notice's JSON into the text a person reads.
func renderNotice(raw []byte) (string, bool) {
	var n struct {
		Type                string   `json:"type"`
		From                string   `json:"from"`
		IssuingAuthority    string   `json:"issuing_authority"`
		Court               string   `json:"court"`
		Jurisdiction        string   `json:"jurisdiction"`
		LegalBasis          string   `json:"legal_basis"`
		CaseReference       string   `json:"case_reference"`
		CategoriesRequested []string `json:"categories_requested"`
		CategoriesDisclosed []string `json:"categories_disclosed"`
		Country             string   `json:"country"`
		Statement           string   `json:"statement"`
		Link                string   `json:"link"`
	}
	if err := json.Unmarshal(raw, &n); err != nil || n.From != "operator" {
		return "", false
	}
	list := func(s []string) string {
		if len(s) == 0 {
			return "nothing"
		}
		return strings.Join(s, ", ")
	}
	switch n.Type {
	case "legal_notice":
		return fmt.Sprintf("A legal order about your account was answered. Issued by %s (%s, %s) under %s, case %s. "+
			"Requested: %s. Disclosed: %s.", n.IssuingAuthority, n.Court, n.Jurisdiction, n.LegalBasis, n.CaseReference,
			list(n.CategoriesRequested), list(n.CategoriesDisclosed)), true
	case "market_withdrawn":
		return fmt.Sprintf("The service is withdrawn from %s: %s (%s)", n.Country, n.Statement, n.Link), true
	}
	return "", false
}

// storeNotice stores a verified notice as a message from the operator.
func (c *Client) storeNotice(ctx context.Context, e api.Envelope, text string, markSeen func(querier) error) error {
	return c.inTx(ctx, func(tx *sql.Tx) error {
		content := &Content{Text: text, SentMS: uint64(e.ServerTime)}
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages (id, account, device, content_enc, server_ms, received_ms, identity_changed)
			VALUES (?, ?, 0, ?, ?, ?, 0)`, e.ID.String(), uuid.Nil.String(),
			c.seal.seal(content.marshal(), "message/"+e.ID.String()), e.ServerTime, c.now().UnixMilli()); err != nil {
			return fmt.Errorf("storing notice: %w", err)
		}
		return markSeen(tx)
	})
}
