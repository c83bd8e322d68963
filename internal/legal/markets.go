package legal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// Markets is what the server reads at registration: whether the service is withdrawn
// from a country.
type Markets interface {
	// Withdrawn reports the withdrawal in force for an ISO 3166-1 alpha-2 country code.
	Withdrawn(ctx context.Context, country string) (w Withdrawal, withdrawn bool, err error)
}

var _ Markets = (*DB)(nil)

// Withdrawal is the service's withdrawal from one country.
type Withdrawal struct {
	Country       string    `json:"country"`
	Reason        string    `json:"reason"` // the published statement
	WithdrawnAt   time.Time `json:"withdrawn_at"`
	CloseExisting bool      `json:"close_existing"`
}

// Withdrawn implements [Markets].
func (d *DB) Withdrawn(ctx context.Context, country string) (Withdrawal, bool, error) {
	w := Withdrawal{Country: strings.ToUpper(country)}
	var at int64
	var closeEx int
	err := d.db.QueryRowContext(ctx, `SELECT reason, withdrawn_at, close_existing FROM markets WHERE country = ?`, w.Country).
		Scan(&w.Reason, &at, &closeEx)
	if errors.Is(err, sql.ErrNoRows) {
		return Withdrawal{}, false, nil
	}
	if err != nil {
		return Withdrawal{}, false, fmt.Errorf("reading markets: %w", err)
	}
	w.WithdrawnAt, w.CloseExisting = time.Unix(at, 0).UTC(), closeEx != 0
	return w, true, nil
}

// Withdrawals lists the withdrawals in force, by country.
func (d *DB) Withdrawals(ctx context.Context) ([]Withdrawal, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT country, reason, withdrawn_at, close_existing FROM markets ORDER BY country`)
	if err != nil {
		return nil, fmt.Errorf("reading markets: %w", err)
	}
	defer rows.Close()
	out := []Withdrawal{}
	for rows.Next() {
		var w Withdrawal
		var at int64
		var closeEx int
		if err := rows.Scan(&w.Country, &w.Reason, &at, &closeEx); err != nil {
			return nil, err
		}
		w.WithdrawnAt, w.CloseExisting = time.Unix(at, 0).UTC(), closeEx != 0
		out = append(out, w)
	}
	return out, rows.Err()
}

// MarketHistory lists every withdrawal and restoration, oldest first.
func (d *DB) MarketHistory(ctx context.Context) ([]MarketEvent, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT country, action, reason, at FROM market_events ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading market history: %w", err)
	}
	defer rows.Close()
	out := []MarketEvent{}
	for rows.Next() {
		var e MarketEvent
		var at int64
		if err := rows.Scan(&e.Country, &e.Action, &e.Statement, &at); err != nil {
			return nil, err
		}
		e.At = time.Unix(at, 0).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

func checkCountry(cc string) (string, error) {
	cc = strings.ToUpper(strings.TrimSpace(cc))
	if len(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z' {
		return "", fmt.Errorf("%q is not an ISO 3166-1 alpha-2 country code", cc)
	}
	// Registrations are matched to a market by their number's region, so a code no
	// number belongs to would withdraw nothing while publishing that it did.
	if _, ok := phonenumbers.GetSupportedRegions()[cc]; !ok {
		return "", fmt.Errorf("%q is not a country with its own phone numbers", cc)
	}
	return cc, nil
}

// maxStatement bounds a published withdrawal statement.
const maxStatement = 2000

// Withdraw withdraws the service from a country: new registrations with its numbers are
// refused from now on, and the withdrawal with its reason is published. With
// closeExisting, existing accounts there are sent a notice and their connections closed
// (through the server, when the desk has that hook).
func (d *Desk) Withdraw(ctx context.Context, op Operator, country, reason string, closeExisting bool) (Withdrawal, error) {
	cc, err := checkCountry(country)
	if err != nil {
		return Withdrawal{}, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > maxStatement {
		return Withdrawal{}, fmt.Errorf("a withdrawal needs a reason of 1 to %d bytes: it is published", maxStatement)
	}
	now := d.now().UTC().Truncate(time.Second)
	tx, err := d.db.db.BeginTx(ctx, nil)
	if err != nil {
		return Withdrawal{}, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO markets (country, reason, withdrawn_at, close_existing) VALUES (?, ?, ?, ?)`,
		cc, reason, now.Unix(), closeExisting); err != nil {
		return Withdrawal{}, fmt.Errorf("withdrawing market: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO market_events (country, action, reason, at) VALUES (?, 'withdraw', ?, ?)`, cc, reason, now.Unix()); err != nil {
		return Withdrawal{}, fmt.Errorf("withdrawing market: %w", err)
	}
	if err := queueLog(ctx, tx, LogEntry{Kind: KindMarket, Jurisdiction: cc, Action: "withdraw", At: now, Statement: reason}); err != nil {
		return Withdrawal{}, err
	}
	if err := tx.Commit(); err != nil {
		return Withdrawal{}, fmt.Errorf("withdrawing market: %w", err)
	}
	d.logger.Info("market withdrawn", "country", cc, "operator", op.Name, "close_existing", closeExisting)
	if err := d.afterAction(ctx); err != nil {
		return Withdrawal{}, err
	}
	if err := d.publishMarkets(ctx); err != nil {
		return Withdrawal{}, err
	}
	if closeExisting {
		if d.marketClose == nil {
			return Withdrawal{}, errors.New("market withdrawn, but this desk cannot close existing connections")
		}
		if err := d.marketClose(ctx, cc); err != nil {
			return Withdrawal{}, fmt.Errorf("market withdrawn, closing existing connections: %w", err)
		}
	}
	return Withdrawal{Country: cc, Reason: reason, WithdrawnAt: now, CloseExisting: closeExisting}, nil
}

// Restore ends a withdrawal: registrations from the country are accepted again.
func (d *Desk) Restore(ctx context.Context, op Operator, country string) error {
	cc, err := checkCountry(country)
	if err != nil {
		return err
	}
	now := d.now().UTC().Truncate(time.Second)
	tx, err := d.db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM markets WHERE country = ?`, cc)
	if err != nil {
		return fmt.Errorf("restoring market: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("the service is not withdrawn from %s", cc)
	}
	const stmt = "service restored"
	if _, err := tx.ExecContext(ctx, `INSERT INTO market_events (country, action, reason, at) VALUES (?, 'restore', ?, ?)`, cc, stmt, now.Unix()); err != nil {
		return fmt.Errorf("restoring market: %w", err)
	}
	if err := queueLog(ctx, tx, LogEntry{Kind: KindMarket, Jurisdiction: cc, Action: "restore", At: now, Statement: stmt}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("restoring market: %w", err)
	}
	d.logger.Info("market restored", "country", cc, "operator", op.Name)
	if err := d.afterAction(ctx); err != nil {
		return err
	}
	return d.publishMarkets(ctx)
}

// publishMarkets tells the server that the withdrawn markets changed. The desk's own
// record is already committed; a failure here means other nodes do not know yet (the
// server reconciles again when the desk starts), and the operator is told so.
func (d *Desk) publishMarkets(ctx context.Context) error {
	if d.marketsChanged == nil {
		return nil
	}
	if err := d.marketsChanged(ctx); err != nil {
		return fmt.Errorf("recorded in the desk, but not yet on every node (retried when the desk next starts): %w", err)
	}
	return nil
}

// DB returns the desk's database (for [Markets]).
func (d *Desk) DB() *DB { return d.db }

// Report computes the transparency report from the legal log. The last report is kept
// until the log grows, so that serving the public page does not reread the log.
func (d *Desk) Report(ctx context.Context) (Report, error) {
	tree, err := d.log.Tree(ctx)
	if err != nil {
		return Report{}, err
	}
	d.reportMu.Lock()
	defer d.reportMu.Unlock()
	if c := d.reportCache; c != nil && c.GeneratedFrom.TreeSize == tree.N && c.GeneratedFrom.TreeHash == tree.Hash.String() {
		return *c, nil
	}
	var entries [][]byte
	for start := int64(0); start < tree.N; {
		end := min(start+1024, tree.N)
		es, err := d.log.Entries(ctx, start, end)
		if err != nil {
			return Report{}, err
		}
		entries = append(entries, es...)
		start = end
	}
	rep, err := ComputeReport(entries)
	if err != nil {
		return Report{}, err
	}
	rep.GeneratedFrom = ReportSource{Log: LogOrigin, TreeSize: tree.N, TreeHash: tree.Hash.String()}
	d.reportCache = &rep
	return rep, nil
}
