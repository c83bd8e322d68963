-- Countries the service is withdrawn from (store.Markets), so that every node refuses
-- their registrations; the legal desk's own database is the authority and mirrors each
-- change here. Public data: it is what /v1/markets publishes.

CREATE TABLE market_withdrawals (
    country TEXT    NOT NULL PRIMARY KEY,
    since   TIMESTAMPTZ     NOT NULL,
    reason  TEXT    NOT NULL
);
