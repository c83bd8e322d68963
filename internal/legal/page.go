package legal

import (
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strings"
)

// The transparency page is self-contained: inline CSS and an inline SVG chart, no script,
// no external asset, so that it loads under the strictest Content-Security-Policy and
// leaks no visit to a third party.
var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"join": func(m map[string]int) string {
		if len(m) == 0 {
			return "none"
		}
		parts := make([]string, 0, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
		}
		return strings.Join(parts, ", ")
	},
	"joinNested": func(m map[string]map[string]int) string {
		s := ""
		for _, k := range slices.Sorted(maps.Keys(m)) {
			for _, a := range slices.Sorted(maps.Keys(m[k])) {
				if s != "" {
					s += ", "
				}
				s += fmt.Sprintf("%s %s: %d", k, a, m[k][a])
			}
		}
		if s == "" {
			return "none"
		}
		return s
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bastion transparency report</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin:1rem 0}
.wide{overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;font-size:.9rem}
th{background:#f3f3f3}
.received{fill:#4a6fa5}.rejected{fill:#c0504d}.fulfilled{fill:#4f9a55}
</style>
</head>
<body>
<h1>Transparency report</h1>
<p>Every order from an authority and its outcome is recorded in a public, append-only log
(<a href="/v1/legal/checkpoint">checkpoint</a>, <a href="/v1/legal/entries">entries</a>);
the figures below are computed from that log alone
({{.Report.GeneratedFrom.TreeSize}} entries, root {{.Report.GeneratedFrom.TreeHash}}).
The service can disclose only a phone number and the IP addresses it connected from within
the retention window; it holds no message content, contacts or groups.
Machine-readable: <a href="/v1/transparency">/v1/transparency</a>,
<a href="/v1/markets">/v1/markets</a>.</p>

<h2>Orders per half-year</h2>
<svg id="chart" role="img" aria-label="Orders received, rejected and fulfilled per half-year" width="{{.Chart.Width}}" height="{{.Chart.Height}}" viewBox="0 0 {{.Chart.Width}} {{.Chart.Height}}" xmlns="http://www.w3.org/2000/svg">
<line x1="40" y1="{{.Chart.Base}}" x2="{{.Chart.Width}}" y2="{{.Chart.Base}}" stroke="#888"/>
{{range .Chart.Bars}}<rect class="{{.Class}}" data-period="{{.Period}}" data-value="{{.Value}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Period}} {{.Class}}: {{.Value}}</title></rect>
{{end}}{{range .Chart.Labels}}<text x="{{.X}}" y="{{.Y}}" font-size="11" text-anchor="middle">{{.Text}}</text>
{{end}}<text x="45" y="14" font-size="11"><tspan class="received">&#9632;</tspan> received <tspan class="rejected">&#9632;</tspan> rejected <tspan class="fulfilled">&#9632;</tspan> fulfilled (fully or partly)</text>
</svg>

<h2>By jurisdiction and half-year</h2>
{{if .Report.Periods}}<div class="wide"><table id="figures">
<tr><th>Period</th><th>Jurisdiction</th><th>Received</th><th>Rejected</th><th>Fulfilled</th><th>Partly fulfilled</th><th>Answered "not held"</th><th>Pending</th><th>Accounts affected</th><th>Categories requested</th><th>Categories disclosed</th><th>Median hours to acknowledge</th><th>Median hours to give effect</th></tr>
{{range .Report.Periods}}<tr><td>{{.Period}}</td><td>{{.Jurisdiction}}</td><td>{{.Received}}</td><td>{{.Rejected}}</td><td>{{.Fulfilled}}</td><td>{{.PartiallyFulfilled}}</td><td>{{.NotHeld}}</td><td>{{.Pending}}</td><td>{{.AccountsAffected}}</td><td>{{join .CategoriesRequested}}</td><td>{{join .CategoriesDisclosed}}</td><td>{{.MedianHoursToAcknowledge}}</td><td>{{.MedianHoursToEffect}}</td></tr>
{{end}}</table></div>{{else}}<p id="figures">No orders received.</p>{{end}}

<h2>Notices about channel posts</h2>
<p>Anyone can report a post of a public channel (EU Digital Services Act, Art. 16). An
operator dismisses the report, restricts the post in one country, or removes it; a
restricted or removed post is served with the operator's signed statement of reasons.
The service keeps no record of who reported.</p>
{{if .Report.ChannelNotices}}<div class="wide"><table id="notices">
<tr><th>Period</th><th>Notices received</th><th>By ground</th><th>Pending</th><th>Actions</th><th>Actions by ground</th><th>Restricted by country</th><th>Median hours to decide</th></tr>
{{range .Report.ChannelNotices}}<tr><td>{{.Period}}</td><td>{{.Received}}</td><td>{{join .ByGround}}</td><td>{{.Pending}}</td><td>{{join .Actions}}</td><td>{{joinNested .ActionsByGround}}</td><td>{{join .RestrictedByCountry}}</td><td>{{.MedianHoursToDecide}}</td></tr>
{{end}}</table></div>{{else}}<p id="notices">No notices received.</p>{{end}}

<h2>Markets withdrawn</h2>
{{if .Withdrawals}}<table id="markets">
<tr><th>Country</th><th>Since</th><th>Statement</th></tr>
{{range .Withdrawals}}<tr id="market-{{.Country}}"><td>{{.Country}}</td><td>{{.WithdrawnAt.Format "2006-01-02"}}</td><td>{{.Reason}}</td></tr>
{{end}}</table>{{else}}<p id="markets">The service is offered in every country.</p>{{end}}
{{if .Report.Markets}}<h3>History</h3><ul>
{{range .Report.Markets}}<li>{{.At.Format "2006-01-02"}} {{.Country}}: {{.Action}} ({{.Statement}})</li>
{{end}}</ul>{{end}}
</body>
</html>
`))

type chartBar struct {
	Class, Period string
	Value         int
	X, Y, W, H    int
}

type chartLabel struct {
	X, Y int
	Text string
}

type chart struct {
	Width, Height, Base int
	Bars                []chartBar
	Labels              []chartLabel
}

// buildChart draws three bars per half-year (all jurisdictions summed), oldest first.
func buildChart(r Report) chart {
	type tot struct{ rec, rej, ful int }
	byPeriod := map[string]*tot{}
	var periods []string
	for _, p := range r.Periods {
		t := byPeriod[p.Period]
		if t == nil {
			t = &tot{}
			byPeriod[p.Period] = t
			periods = append(periods, p.Period)
		}
		t.rec += p.Received
		t.rej += p.Rejected
		t.ful += p.Fulfilled + p.PartiallyFulfilled
	}
	slices.Sort(periods)
	const barW, gap, plotH, top = 18, 24, 160, 24
	c := chart{Height: top + plotH + 30, Base: top + plotH}
	c.Width = max(520, 50+len(periods)*(3*barW+gap))
	maxV := 1
	for _, t := range byPeriod {
		maxV = max(maxV, t.rec, t.rej, t.ful)
	}
	for i, p := range periods {
		t := byPeriod[p]
		x := 50 + i*(3*barW+gap)
		for j, b := range []struct {
			class string
			v     int
		}{{"received", t.rec}, {"rejected", t.rej}, {"fulfilled", t.ful}} {
			h := b.v * plotH / maxV
			c.Bars = append(c.Bars, chartBar{Class: b.class, Period: p, Value: b.v, X: x + j*barW, Y: c.Base - h, W: barW - 2, H: h})
		}
		c.Labels = append(c.Labels, chartLabel{X: x + 3*barW/2, Y: c.Base + 16, Text: p})
	}
	return c
}

// RenderPage writes the transparency page: the chart, the figures per jurisdiction and
// half-year, and the markets withdrawn.
func RenderPage(w io.Writer, r Report, withdrawals []Withdrawal) error {
	return pageTmpl.Execute(w, struct {
		Report      Report
		Withdrawals []Withdrawal
		Chart       chart
	}{r, withdrawals, buildChart(r)})
}
