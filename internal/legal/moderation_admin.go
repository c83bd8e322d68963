package legal

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/google/uuid"
)

// moderationRoutes adds the review of channel reports to the admin API:
//
//	GET  /desk/reports[?all=1]            -> []ReportSummary (open ones unless all)
//	GET  /desk/reports/{id}               -> ReportRecord
//	POST /desk/reports/{id}/decide        Decision -> ReportRecord
func (d *Desk) moderationRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /desk/reports", d.admin(func(r *http.Request, _ Operator, _ []byte) (any, error) {
		return d.Reports(r.Context(), r.URL.Query().Get("all") == "1")
	}))
	m.HandleFunc("GET /desk/reports/{id}", d.admin(func(r *http.Request, _ Operator, _ []byte) (any, error) {
		id, err := reportID(r)
		if err != nil {
			return nil, err
		}
		return d.ShowReport(r.Context(), id)
	}))
	m.HandleFunc("POST /desk/reports/{id}/decide", d.admin(func(r *http.Request, op Operator, body []byte) (any, error) {
		id, err := reportID(r)
		if err != nil {
			return nil, err
		}
		var dec Decision
		if err := json.Unmarshal(body, &dec); err != nil {
			return nil, fmt.Errorf("reading request: %w", err)
		}
		return d.Decide(r.Context(), op, id, dec)
	}))
}

func reportID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, fmt.Errorf("report id %q: %w", r.PathValue("id"), ErrNoReport)
	}
	return id, nil
}

// Reports lists the open reports, or every report with all.
func (c *Client) Reports(ctx context.Context, all bool) ([]ReportSummary, error) {
	p := "/desk/reports"
	if all {
		p += "?all=1"
	}
	var s []ReportSummary
	return s, c.Do(ctx, "GET", p, nil, &s)
}

// ShowReport returns one report with its post and notices.
func (c *Client) ShowReport(ctx context.Context, id string) (ReportRecord, error) {
	var r ReportRecord
	return r, c.Do(ctx, "GET", "/desk/reports/"+url.PathEscape(id), nil, &r)
}

// Decide decides a report as this client's operator.
func (c *Client) Decide(ctx context.Context, id string, dec Decision) (ReportRecord, error) {
	b, err := json.Marshal(dec)
	if err != nil {
		return ReportRecord{}, err
	}
	var r ReportRecord
	return r, c.Do(ctx, "POST", "/desk/reports/"+url.PathEscape(id)+"/decide", b, &r)
}
