-- Client data reporting (数据上报): events as received (deduplicated per source), the rejected ones with their
-- reason, and the daily aggregates the processor builds.
CREATE TABLE track_event (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT    NOT NULL,   -- u:<user id> | a:<anon id>
    event_id     TEXT    NOT NULL,
    type         TEXT    NOT NULL,   -- page_view | click | error | perf | custom
    page         TEXT    NOT NULL,
    props        TEXT    NOT NULL,   -- JSON object
    occurred_at  INTEGER NOT NULL,   -- corrected for the device's clock
    client_time  INTEGER NOT NULL,   -- as the device said
    received_at  INTEGER NOT NULL,
    processed    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, event_id)
);
CREATE INDEX track_event_unprocessed ON track_event (processed, id);
CREATE INDEX track_event_received ON track_event (received_at);

CREATE TABLE track_bad_row (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT    NOT NULL,
    event_id     TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    raw          TEXT    NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE INDEX track_bad_row_received ON track_bad_row (received_at);

CREATE TABLE traffic_daily (
    day      TEXT    NOT NULL,
    page     TEXT    NOT NULL,
    pv       INTEGER NOT NULL DEFAULT 0,
    uv       INTEGER NOT NULL DEFAULT 0,
    clicks   INTEGER NOT NULL DEFAULT 0,
    errors   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, page)
);

-- Who was counted in a day's UV of a page (exact distinct counts).
CREATE TABLE traffic_visitor (
    day      TEXT    NOT NULL,
    page     TEXT    NOT NULL,
    visitor  TEXT    NOT NULL,
    PRIMARY KEY (day, page, visitor)
);

-- Performance samples per day and page in fixed buckets (upper bound in ms), for percentiles.
CREATE TABLE traffic_perf (
    day       TEXT    NOT NULL,
    page      TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,
    samples   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, page, bucket_ms)
);
