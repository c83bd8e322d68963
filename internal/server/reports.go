package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/legal"
	"github.com/bastionchat/bastion/internal/store"
)

// Notice and action for public channel posts (docs/channels.md "Notice and action",
// EU Digital Services Act, Art. 16 and 17):
//
//	POST /v1/channels/{id}/reports   api.ReportRequest -> 202 api.ReportResponse
//	GET  /v1/channels/{id}/notices   -> api.NoticesResponse, every operator notice, oldest first
//
// A report is stored in the shared store with its post, reason, text and time, and
// nothing about who sent it: not the account, not the device, not the address. The
// per-account rate limit is keyed by the account alone (as a keyed digest, see
// ratelimit.go), so that the limiter does not record who reported what either. Operators
// decide reports on the legal desk (internal/legal/moderation.go), which signs and stores
// the notices every node serves.

// reportRate bounds the reports one account may send, over every channel: enough for a
// reader who meets several unlawful posts in a day, too few to flood the review queue.
var reportRate = Rate{N: 10, Per: time.Hour}

// maxReportBody bounds a report request: its text is at most api.MaxReportText bytes,
// which JSON may escape to six bytes each.
const maxReportBody = 6*api.MaxReportText + 1024

// reportRoutes registers the reports and notices endpoints.
func (s *Server) reportRoutes(m *http.ServeMux) {
	// The rate limits' own key and, on PostgreSQL, their shared buckets, as every other
	// limiter of this server has them.
	l := newLimiter(reportRate, s.lookup.hashKey, s.now)
	if s.lookup.shared != nil {
		l.share("channel_report", s.lookup.shared)
	}
	h := s.handle
	m.Handle("POST /v1/channels/{id}/reports", h(s.authed(func(w http.ResponseWriter, r *http.Request, d device) error {
		return s.report(w, r, d, l)
	})))
	m.Handle("GET /v1/channels/{id}/notices", h(s.authed(s.notices)))
}

func reportChannelID(r *http.Request) (channel.ID, error) {
	id, err := channel.ParseID(r.PathValue("id"))
	if err != nil {
		return channel.ID{}, newError(http.StatusNotFound, api.CodeNotFound, "no such channel: want its id as 32 hex digits")
	}
	return id, nil
}

func (s *Server) report(w http.ResponseWriter, r *http.Request, d device, l *limiter) error {
	ctx := r.Context()
	id, err := reportChannelID(r)
	if err != nil {
		return err
	}
	var req api.ReportRequest
	if err := decodeJSON(w, r, maxReportBody, &req); err != nil {
		return err
	}
	if req.Reason != api.ReportIllegal && req.Reason != api.ReportTerms {
		return badRequest(fmt.Sprintf("reason must be %q or %q", api.ReportIllegal, api.ReportTerms))
	}
	if strings.TrimSpace(req.Text) == "" || len(req.Text) > api.MaxReportText || !utf8.ValidString(req.Text) {
		return badRequest(fmt.Sprintf("text must be 1 to %d bytes of UTF-8 explaining why", api.MaxReportText))
	}
	if req.Seq == 0 {
		return badRequest("seq must name a post (1 or more): the genesis cannot be reported")
	}
	// Keyed by the account only, not the channel or post: the bucket says how much an
	// account reported, never what.
	if err := s.limit(ctx, "channel_report", l, d.account[:]); err != nil {
		return err
	}
	c, err := s.store.Channel(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return newError(http.StatusNotFound, api.CodeNotFound, "no such channel")
	}
	if err != nil {
		return fmt.Errorf("reading channel: %w", err)
	}
	if c.Private {
		// The operator cannot read a private channel's posts, so it cannot judge them.
		return badRequest("posts of private channels cannot be reported to the operator")
	}
	if _, err := channelPost(ctx, s.store, id, req.Seq); err != nil {
		if errors.Is(err, legal.ErrNoReport) {
			return newError(http.StatusNotFound, api.CodeNotFound, "no such post")
		}
		return err
	}
	rep := store.ChannelReport{
		ID: uuid.New(), Channel: id, Seq: req.Seq, Reason: req.Reason, Text: req.Text,
		CreatedAt: s.now().UTC().Truncate(time.Second), Status: store.ReportOpen,
	}
	if err := s.store.AddChannelReport(ctx, rep); err != nil {
		return fmt.Errorf("storing report: %w", err)
	}
	if s.legal != nil {
		// The desk on this node numbers it now, so the transparency report counts it; a
		// desk on another node does so at its operators' next review.
		if err := s.legal.TakeInReport(ctx, deskReport(rep)); err != nil {
			s.log.Error("legal desk: taking in channel reports", "err", err)
		}
	}
	writeJSON(w, http.StatusAccepted, api.ReportResponse{ID: rep.ID.String()})
	return nil
}

func (s *Server) notices(w http.ResponseWriter, r *http.Request, _ device) error {
	id, err := reportChannelID(r)
	if err != nil {
		return err
	}
	if _, err := s.store.Channel(r.Context(), id); errors.Is(err, store.ErrNotFound) {
		return newError(http.StatusNotFound, api.CodeNotFound, "no such channel")
	} else if err != nil {
		return fmt.Errorf("reading channel: %w", err)
	}
	ns, err := s.store.ChannelNotices(r.Context(), id)
	if err != nil {
		return fmt.Errorf("reading notices: %w", err)
	}
	resp := api.NoticesResponse{Notices: make([][]byte, len(ns))}
	for i, n := range ns {
		resp.Notices[i] = n.Notice
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// channelPost returns the bytes of post seq, an error wrapping legal.ErrNoReport if
// there is none.
func channelPost(ctx context.Context, st store.Channels, id channel.ID, seq uint64) ([]byte, error) {
	if seq == 0 {
		return nil, fmt.Errorf("post 0: %w", legal.ErrNoReport)
	}
	ps, err := st.ChannelPostsAfter(ctx, id, seq-1, 1)
	if err != nil {
		return nil, fmt.Errorf("reading post: %w", err)
	}
	if len(ps) == 0 || ps[0].Seq != seq {
		return nil, fmt.Errorf("post %d: %w", seq, legal.ErrNoReport)
	}
	return ps[0].Post, nil
}

// deskChannels is the desk's view of channels: reports, the posts they name, and the
// notices. It holds the store only through [store.Channels].
type deskChannels struct{ st store.Channels }

var _ legal.Channels = deskChannels{}

func (c deskChannels) ChannelReports(ctx context.Context, status string) ([]legal.ChannelReport, error) {
	rs, err := c.st.ChannelReports(ctx, status)
	if err != nil {
		return nil, err
	}
	out := make([]legal.ChannelReport, len(rs))
	for i, r := range rs {
		out[i] = deskReport(r)
	}
	return out, nil
}

func deskReport(r store.ChannelReport) legal.ChannelReport {
	return legal.ChannelReport{ID: r.ID, Channel: r.Channel, Seq: r.Seq, Reason: r.Reason, Text: r.Text,
		Received: r.CreatedAt, Status: r.Status, Decided: r.DecidedAt}
}

func (c deskChannels) ChannelReport(ctx context.Context, id uuid.UUID) (legal.ChannelReport, error) {
	r, err := c.st.ChannelReport(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return legal.ChannelReport{}, fmt.Errorf("report %s: %w", id, legal.ErrNoReport)
	}
	if err != nil {
		return legal.ChannelReport{}, err
	}
	return deskReport(r), nil
}

func (c deskChannels) DecideChannelReport(ctx context.Context, id uuid.UUID, status string, at time.Time) error {
	err := c.st.DecideChannelReport(ctx, id, status, at)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("report %s: %w", id, legal.ErrNoReport)
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("report %s: %w", id, legal.ErrDecided)
	}
	return err
}

func (c deskChannels) ChannelPost(ctx context.Context, ch channel.ID, seq uint64) ([]byte, error) {
	return channelPost(ctx, c.st, ch, seq)
}

func (c deskChannels) ChannelNotices(ctx context.Context, ch channel.ID) ([][]byte, error) {
	ns, err := c.st.ChannelNotices(ctx, ch)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(ns))
	for i, n := range ns {
		out[i] = n.Notice
	}
	return out, nil
}

func (c deskChannels) PutChannelNotice(ctx context.Context, n *channel.Notice, at time.Time) error {
	return c.st.PutChannelNotice(ctx, store.ChannelNotice{
		Channel: n.Channel, Seq: n.Seq, Action: uint8(n.Action), Jurisdiction: n.Jurisdiction,
		Notice: n.Bytes(), CreatedAt: at,
	})
}
