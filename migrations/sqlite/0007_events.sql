-- The transactional outbox (Debezium-compatible column names), the bus's own log for in-process consumers, the
-- consumers' inbox and offsets, the relay's lease, dead letters, and what the consumers build: sales statistics.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,   -- the CloudEvents id
    aggregatetype   TEXT    NOT NULL,          -- order | refund | sku | flash_purchase | coupon | user | track
    aggregateid     TEXT    NOT NULL,          -- the Kafka key and partitionkey
    type            TEXT    NOT NULL,          -- cn.wxshop.order.paid.v1
    payload         TEXT    NOT NULL,          -- the whole CloudEvent (structured JSON)
    occurred_at     INTEGER NOT NULL,
    published_at    INTEGER NULL,              -- NULL pending; -1 dead (parked)
    log_offset      INTEGER NULL UNIQUE,       -- the in-process log's position, assigned by the relay on publish
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NULL
);
CREATE INDEX outbox_pending ON outbox (published_at, seq);
CREATE INDEX outbox_occurred ON outbox (occurred_at);

-- One leader per database for the relay (and the in-process consumers): a lease a dead instance loses.
CREATE TABLE bus_lease (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- Inbox: each consumer applies each event once, recorded in the consumer's own transaction.
CREATE TABLE processed_event (
    consumer      TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    processed_at  INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_event_at ON processed_event (processed_at);

-- In-process consumers' positions in the log (log_offset).
CREATE TABLE consumer_offset (
    consumer    TEXT    PRIMARY KEY,
    log_offset  INTEGER NOT NULL
);

CREATE TABLE dead_letter (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer    TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    error       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Sales per day (Beijing time) and SKU, built by the sales consumer.
CREATE TABLE sales_daily (
    day         TEXT    NOT NULL,
    sku_id      INTEGER NOT NULL,
    orders      INTEGER NOT NULL DEFAULT 0,
    units       INTEGER NOT NULL DEFAULT 0,
    gmv_fen     INTEGER NOT NULL DEFAULT 0,
    refunds     INTEGER NOT NULL DEFAULT 0,
    refund_fen  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, sku_id)
);
