-- WeChat Pay: one payment per order (out_trade_no = order_no), the notification inbox, anomalies, refunds,
-- shipping-info uploads, reconciliation reports; and the order's lifecycle times.
ALTER TABLE shop_order ADD COLUMN paid_at INTEGER NULL;
ALTER TABLE shop_order ADD COLUMN shipped_at INTEGER NULL;
ALTER TABLE shop_order ADD COLUMN completed_at INTEGER NULL;
-- Auto-completion: shipped orders by shipping time.
CREATE INDEX shop_order_status_shipped ON shop_order (status, shipped_at);

CREATE TABLE payment (
    order_id        INTEGER PRIMARY KEY REFERENCES shop_order (id),
    out_trade_no    TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL,   -- pending | paid | closed | refunded_after_cancel
    prepay_body     TEXT    NOT NULL,   -- the first prepay request, replayed byte for byte
    prepay_id       TEXT    NULL,
    prepay_expires_at INTEGER NULL,     -- a prepay id lives 2 h
    transaction_id  TEXT    NULL UNIQUE,
    amount_fen      INTEGER NOT NULL,
    paid_at         INTEGER NULL,
    next_check_at   INTEGER NOT NULL,   -- the poller's next query
    check_attempts  INTEGER NOT NULL DEFAULT 0,
    last_queried_at INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX payment_state_check ON payment (state, next_check_at);

-- Every notification applied, once (WeChat's event id).
CREATE TABLE pay_event (
    event_id     TEXT    PRIMARY KEY,
    event_type   TEXT    NOT NULL,
    reference    TEXT    NOT NULL,   -- out_trade_no or out_refund_no
    outcome      TEXT    NOT NULL,
    received_at  INTEGER NOT NULL
);

CREATE TABLE pay_anomaly (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    out_trade_no  TEXT    NOT NULL,
    kind          TEXT    NOT NULL,   -- amount_mismatch | currency_mismatch | mchid_mismatch | appid_mismatch | unknown_order | bill_mismatch
    source        TEXT    NOT NULL,   -- notify | query | reconcile
    detail        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX pay_anomaly_created ON pay_anomaly (created_at, id);

CREATE TABLE refund (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id        INTEGER NOT NULL REFERENCES shop_order (id),
    out_refund_no   TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,   -- request | after_cancel
    status          TEXT    NOT NULL,   -- requested | rejected | processing | succeeded | abnormal | closed
    amount_fen      INTEGER NOT NULL CHECK (amount_fen > 0),
    reason          TEXT    NOT NULL,
    decision_note   TEXT    NULL,
    order_status_before TEXT NULL,      -- where the order goes back to after a partial or failed refund
    refund_id       TEXT    NULL,
    request_body    TEXT    NULL,       -- stored before the call, replayed on retry
    next_check_at   INTEGER NOT NULL DEFAULT 0,
    decided_by      INTEGER NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX refund_order ON refund (order_id, id);
CREATE INDEX refund_status_check ON refund (status, next_check_at);

-- upload_shipping_info to WeChat, retried until accepted.
CREATE TABLE shipping_upload (
    order_id        INTEGER PRIMARY KEY REFERENCES shop_order (id),
    state           TEXT    NOT NULL,   -- pending | done
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT    NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX shipping_upload_state ON shipping_upload (state, next_attempt_at);

CREATE TABLE reconciliation_run (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    bill_date   TEXT    NOT NULL,
    status      TEXT    NOT NULL,   -- done | failed
    report      TEXT    NOT NULL,   -- JSON
    created_at  INTEGER NOT NULL
);
CREATE INDEX reconciliation_run_date ON reconciliation_run (bill_date, id);
