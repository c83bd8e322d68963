package legal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"
)

// Log entry kinds.
const (
	KindReceived = "received" // an order came in
	KindOutcome  = "outcome"  // it was answered or rejected
	KindMarket   = "market"   // a market was withdrawn or restored
	// A report (a notice under DSA Art. 16) about a public channel post reached the desk,
	// and its decision (moderation.go).
	KindNotice     = "channel_notice"
	KindModeration = "channel_action"
)

// LogEntry is one entry of the public legal log, encoded as compact JSON. It holds no
// personal data: no name, number, account or free text about a person.
type LogEntry struct {
	Kind string `json:"kind"`
	// Order is the desk's order number, which links an outcome to its order (two orders
	// may have the same text, hence the same hash).
	Order        int64  `json:"order,omitempty"`
	OrderSHA256  string `json:"order_sha256,omitempty"`
	Jurisdiction string `json:"jurisdiction"`
	DateIssued   string `json:"date_issued,omitempty"`
	// Received is when the order reached the desk; Acknowledged when an operator first
	// decided on it (approval or rejection); Concluded when it was answered or rejected.
	Received            time.Time  `json:"received,omitzero"`
	Acknowledged        *time.Time `json:"acknowledged,omitempty"`
	Concluded           *time.Time `json:"concluded,omitempty"`
	CategoriesRequested []string   `json:"categories_requested,omitempty"`
	CategoriesDisclosed []string   `json:"categories_disclosed,omitempty"`
	CategoriesNotHeld   []string   `json:"categories_not_held,omitempty"`
	// Accounts is, for "received", the number of targets named; for "outcome", the
	// number of accounts data was disclosed about.
	Accounts int    `json:"accounts"`
	Outcome  string `json:"outcome,omitempty"`
	// Market entries: the action ("withdraw" or "restore"), its time and the published
	// statement.
	Action    string    `json:"action,omitempty"`
	At        time.Time `json:"at,omitzero"`
	Statement string    `json:"statement,omitempty"`
	// Channel notice entries: the desk's report number (which links a decision to its
	// receipt), the ground, Received, and for the decision its Action, Concluded, and
	// for a restriction the country in Jurisdiction. Never the post, the notifier's text
	// or the statement of reasons (those reach the channel owner with the notice).
	Report int64  `json:"report,omitempty"`
	Ground string `json:"ground,omitempty"`
}

// Encode returns the entry's log bytes.
func (e LogEntry) Encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding log entry: %w", err)
	}
	return b, nil
}

// ParseLogEntry decodes a log entry strictly.
func ParseLogEntry(b []byte) (LogEntry, error) {
	var e LogEntry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return LogEntry{}, fmt.Errorf("parsing log entry: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return LogEntry{}, errors.New("parsing log entry: trailing data")
	}
	switch e.Kind {
	case KindReceived, KindOutcome, KindMarket, KindNotice, KindModeration:
	default:
		return LogEntry{}, fmt.Errorf("parsing log entry: unknown kind %q", e.Kind)
	}
	return e, nil
}

// Report is the transparency report: per jurisdiction and half-year, the fields of the
// EU Digital Services Act, Art. 15(1)(a), for orders from authorities.
type Report struct {
	GeneratedFrom ReportSource  `json:"generated_from"`
	Periods       []PeriodStats `json:"periods"`
	Markets       []MarketEvent `json:"market_events"`
	// ChannelNotices counts the notices about public channel posts and the actions
	// taken on them (DSA Art. 15(1)(b)), per half-year received, newest first.
	ChannelNotices []NoticeStats `json:"channel_notices"`
}

// NoticeStats is one half-year of notices about channel posts, by the date received.
type NoticeStats struct {
	Period   string         `json:"period"`
	Received int            `json:"notices_received"`
	ByGround map[string]int `json:"notices_by_ground"` // illegal, terms
	Pending  int            `json:"notices_pending"`
	// Actions counts decisions: dismissed, duplicate (a report of a post already acted
	// on), restricted, removed; ActionsByGround the same per ground.
	Actions         map[string]int            `json:"actions"`
	ActionsByGround map[string]map[string]int `json:"actions_by_ground"`
	// RestrictedByCountry counts restrictions per ISO 3166-1 alpha-2 country.
	RestrictedByCountry map[string]int `json:"restricted_by_country"`
	// MedianHoursToDecide is the median time from receipt to decision, in hours.
	MedianHoursToDecide float64 `json:"median_hours_to_decide"`
}

// ReportSource names the log state a report was computed from.
type ReportSource struct {
	Log      string `json:"log"`
	TreeSize int64  `json:"tree_size"`
	TreeHash string `json:"tree_hash"` // base64, as in the checkpoint
}

// PeriodStats is one jurisdiction in one half-year ("2026-H1"), by the date received.
type PeriodStats struct {
	Jurisdiction        string         `json:"jurisdiction"`
	Period              string         `json:"period"`
	Received            int            `json:"orders_received"`
	Rejected            int            `json:"orders_rejected"`
	Fulfilled           int            `json:"orders_fulfilled"`
	PartiallyFulfilled  int            `json:"orders_partially_fulfilled"`
	NotHeld             int            `json:"orders_answered_not_held"`
	Pending             int            `json:"orders_pending"`
	AccountsNamed       int            `json:"accounts_named"`
	AccountsAffected    int            `json:"accounts_affected"`
	CategoriesRequested map[string]int `json:"categories_requested"`
	CategoriesDisclosed map[string]int `json:"categories_disclosed"`
	// Medians over the orders concluded, in hours: from receipt to the first operator
	// decision, and from receipt to giving effect (answer or rejection).
	MedianHoursToAcknowledge float64 `json:"median_hours_to_acknowledge"`
	MedianHoursToEffect      float64 `json:"median_hours_to_give_effect"`
}

// MarketEvent is a market withdrawal or restoration as published in the log.
type MarketEvent struct {
	Country   string    `json:"country"`
	Action    string    `json:"action"`
	At        time.Time `json:"at"`
	Statement string    `json:"statement"`
}

// Period returns a time's half-year, "2026-H1" or "2026-H2".
func Period(t time.Time) string {
	t = t.UTC()
	h := 1
	if t.Month() > time.June {
		h = 2
	}
	return fmt.Sprintf("%d-H%d", t.Year(), h)
}

// ComputeReport computes the report from the legal log's entries alone, in log order.
func ComputeReport(entries [][]byte) (Report, error) {
	type key struct{ j, p string }
	stats := map[key]*PeriodStats{}
	acks := map[key][]float64{}
	effects := map[key][]float64{}
	received := map[int64]key{} // order number -> its period
	rep := Report{Periods: []PeriodStats{}, Markets: []MarketEvent{}, ChannelNotices: []NoticeStats{}}
	notices := map[string]*NoticeStats{}  // by period
	noticePeriod := map[int64]string{}    // open report number -> its period
	decideHours := map[string][]float64{} // by period
	getNotices := func(p string) *NoticeStats {
		s := notices[p]
		if s == nil {
			s = &NoticeStats{Period: p, ByGround: map[string]int{}, Actions: map[string]int{},
				ActionsByGround: map[string]map[string]int{}, RestrictedByCountry: map[string]int{}}
			notices[p] = s
		}
		return s
	}
	get := func(k key) *PeriodStats {
		s := stats[k]
		if s == nil {
			s = &PeriodStats{Jurisdiction: k.j, Period: k.p, CategoriesRequested: map[string]int{}, CategoriesDisclosed: map[string]int{}}
			stats[k] = s
		}
		return s
	}
	for i, b := range entries {
		e, err := ParseLogEntry(b)
		if err != nil {
			return Report{}, fmt.Errorf("entry %d: %w", i, err)
		}
		switch e.Kind {
		case KindNotice:
			if _, dup := noticePeriod[e.Report]; dup || e.Report <= 0 || e.Received.IsZero() {
				return Report{}, fmt.Errorf("entry %d: channel report %d received twice, or not numbered", i, e.Report)
			}
			p := Period(e.Received)
			noticePeriod[e.Report] = p
			s := getNotices(p)
			s.Received++
			s.Pending++
			s.ByGround[e.Ground]++
		case KindModeration:
			p, ok := noticePeriod[e.Report]
			if !ok {
				return Report{}, fmt.Errorf("entry %d: decision on a channel report never received, or decided twice", i)
			}
			if e.Concluded == nil {
				return Report{}, fmt.Errorf("entry %d: decision without its date", i)
			}
			switch e.Action {
			case ActionDismissed, ActionDuplicate, ActionRemoved:
			case ActionRestricted:
				if e.Jurisdiction == "" {
					return Report{}, fmt.Errorf("entry %d: restriction without a country", i)
				}
			default:
				return Report{}, fmt.Errorf("entry %d: unknown action %q", i, e.Action)
			}
			delete(noticePeriod, e.Report) // one decision per report
			s := getNotices(p)
			s.Pending--
			s.Actions[e.Action]++
			if s.ActionsByGround[e.Ground] == nil {
				s.ActionsByGround[e.Ground] = map[string]int{}
			}
			s.ActionsByGround[e.Ground][e.Action]++
			if e.Action == ActionRestricted {
				s.RestrictedByCountry[e.Jurisdiction]++
			}
			decideHours[p] = append(decideHours[p], e.Concluded.Sub(e.Received).Hours())
		case KindMarket:
			rep.Markets = append(rep.Markets, MarketEvent{Country: e.Jurisdiction, Action: e.Action, At: e.At.UTC(), Statement: e.Statement})
		case KindReceived:
			k := key{e.Jurisdiction, Period(e.Received)}
			if _, dup := received[e.Order]; dup || e.Order <= 0 {
				return Report{}, fmt.Errorf("entry %d: order %d received twice, or not numbered", i, e.Order)
			}
			received[e.Order] = k
			s := get(k)
			s.Received++
			s.Pending++
			s.AccountsNamed += e.Accounts
			for _, c := range e.CategoriesRequested {
				s.CategoriesRequested[c]++
			}
		case KindOutcome:
			k, ok := received[e.Order]
			if !ok {
				return Report{}, fmt.Errorf("entry %d: outcome of an order never received", i)
			}
			if e.Acknowledged == nil || e.Concluded == nil {
				return Report{}, fmt.Errorf("entry %d: outcome without its dates", i)
			}
			delete(received, e.Order) // one outcome per order
			s := get(k)
			s.Pending--
			switch e.Outcome {
			case OutcomeRejected:
				s.Rejected++
			case OutcomeFulfilled:
				s.Fulfilled++
			case OutcomePartial:
				s.PartiallyFulfilled++
			case OutcomeNotHeld:
				s.NotHeld++
			default:
				return Report{}, fmt.Errorf("entry %d: unknown outcome %q", i, e.Outcome)
			}
			s.AccountsAffected += e.Accounts
			for _, c := range e.CategoriesDisclosed {
				s.CategoriesDisclosed[c]++
			}
			acks[k] = append(acks[k], e.Acknowledged.Sub(e.Received).Hours())
			effects[k] = append(effects[k], e.Concluded.Sub(e.Received).Hours())
		}
	}
	for k, s := range stats {
		s.MedianHoursToAcknowledge = median(acks[k])
		s.MedianHoursToEffect = median(effects[k])
		rep.Periods = append(rep.Periods, *s)
	}
	for p, s := range notices {
		s.MedianHoursToDecide = median(decideHours[p])
		rep.ChannelNotices = append(rep.ChannelNotices, *s)
	}
	sort.Slice(rep.ChannelNotices, func(i, j int) bool { return rep.ChannelNotices[i].Period > rep.ChannelNotices[j].Period })
	sort.Slice(rep.Periods, func(i, j int) bool {
		a, b := rep.Periods[i], rep.Periods[j]
		if a.Period != b.Period {
			return a.Period > b.Period // newest first
		}
		return a.Jurisdiction < b.Jurisdiction
	})
	return rep, nil
}

// median returns the median rounded to 0.1 h, 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	m := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		m = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return float64(int64(m*10+0.5)) / 10
}
