package api

// Broadcast channels (issue 9, docs/channels.md). Posts, heads and notices travel as the
// exact bytes package channel defines; the server stores and serves them unchanged, and
// subscribers check every one of them, so nothing in these documents is trusted for more
// than routing. Channel ids travel as 32 lowercase hex digits; {ref} in a path is either
// such an id or "@handle".
//
// Every channel endpoint needs an account's credentials: the server restricts posts per
// jurisdiction by the reader's number, and limits abuse per account. It keeps no record of
// who follows, reads or reports what: follows and views are counters only.

// Channel limits.
const (
	// MaxPostsPage is the most posts one history page returns (the default is 100).
	MaxPostsPage = 500
	// MaxViewsBatch is the most sequence numbers one views request counts.
	MaxViewsBatch = 100
	// MaxReportText is the longest explanation a report may carry, in bytes.
	MaxReportText = 2048
	// MaxSubscriptions is the most channels one WebSocket connection can subscribe to.
	MaxSubscriptions = 1000
)

// Report reasons (the categories a notifier picks; DSA Art. 16 notices).
const (
	ReportIllegal = "illegal" // illegal content under the law of some jurisdiction
	ReportTerms   = "terms"   // against the service's terms (spam, impersonation, ...)
)

// Channel error codes.
const (
	CodeHandleTaken     = "handle_taken"     // 409: another channel has this handle
	CodeChannelConflict = "channel_conflict" // 409: the post is not the next in the chain; fetch the newest and sign again
	CodeBadPost         = "bad_post"         // 400: a post, head or genesis does not parse or verify
)

// CreateChannelRequest creates a channel: POST /v1/channels. Genesis is the owner-signed
// post 0; Head (optional) an owner head at post 0.
type CreateChannelRequest struct {
	Genesis []byte `json:"genesis"`
	Head    []byte `json:"head,omitempty"`
}

// ChannelInfo describes a channel: the answer to POST /v1/channels and GET
// /v1/channels/{ref}. A subscriber pins Genesis and starts its verifier at Head.
type ChannelInfo struct {
	ID          string `json:"id"`     // 32 hex digits
	Handle      string `json:"handle"` // without the "@"
	Private     bool   `json:"private"`
	Genesis     []byte `json:"genesis"`
	Head        []byte `json:"head,omitempty"` // the newest owner head the server holds
	Newest      uint64 `json:"newest"`         // the newest post's sequence number
	Subscribers int64  `json:"subscribers"`    // an aggregate count, never a list
}

// PostRequest submits a signed post (post, edit, delete, delegate, revoke): POST
// /v1/channels/{id}/posts. Head (optional) is an owner head at or below the post.
type PostRequest struct {
	Post []byte `json:"post"`
	Head []byte `json:"head,omitempty"`
}

// PostResponse acknowledges that a post is stored durably.
type PostResponse struct {
	Seq uint64 `json:"seq"`
}

// HeadRequest stores a newer owner head: PUT /v1/channels/{id}/head.
type HeadRequest struct {
	Head []byte `json:"head"`
}

// ChannelPost is one post as served to one reader. Post is the signed post, or its
// withheld form (header and body hash) when the operator restricted it in the reader's
// jurisdiction or removed it; Notice is then the operator's signed notice, the statement
// of reasons. Views is the post's aggregate view count.
type ChannelPost struct {
	Post   []byte `json:"post"`
	Notice []byte `json:"notice,omitempty"`
	Views  int64  `json:"views"`
}

// PostsPage is the answer to GET /v1/channels/{id}/posts?after=N&limit=L (posts with
// seq > N, oldest first) or ?before=N&limit=L (the up to L posts just below N, newest
// first; channel.Verifier.AcceptOlder takes a page in ascending order, so a client
// reverses it first). Newest is the channel's newest seq.
type PostsPage struct {
	Posts  []ChannelPost `json:"posts"`
	Newest uint64        `json:"newest"`
}

// ViewsRequest counts views of posts: POST /v1/channels/{id}/views. The server adds
// one to each post's counter and records nothing about the viewer.
type ViewsRequest struct {
	Seqs []uint64 `json:"seqs"`
}

// ReportRequest is a notice about a post (DSA Art. 16): POST /v1/channels/{id}/reports.
// Reason is ReportIllegal or ReportTerms; Text explains why, in the notifier's words.
// The server stores no reporter identity with it.
type ReportRequest struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
	Text   string `json:"text"`
}

// ReportResponse acknowledges a report: 202, with the id the operator's review uses.
type ReportResponse struct {
	ID string `json:"id"`
}

// NoticesResponse lists every operator notice (signed channel.Notice bytes: restrictions
// and removals with their statements of reasons) on a channel, oldest first: GET
// /v1/channels/{id}/notices. It is public: how a channel's owner receives the statement
// of reasons, and what anyone can audit.
type NoticesResponse struct {
	Notices [][]byte `json:"notices"`
}

// WebSocket frames for channels.
const (
	// FrameChannelSubscribe (client -> server) sets the channels whose new posts this
	// connection receives: Channels, ids in hex, at most MaxSubscriptions; an empty list
	// ends every subscription. Held in memory for the connection only, never stored.
	FrameChannelSubscribe = "channel_subscribe"
	// FrameChannelPosts (server -> client): new posts of a subscribed channel, in
	// sequence order: Channel (hex id) and Posts, each as GET .../posts would serve it.
	FrameChannelPosts = "channel_posts"
)
