-- Addresses, carts, orders with their items and state history, idempotency keys.
CREATE TABLE address (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES app_user (id),
    recipient   TEXT    NOT NULL,
    phone       TEXT    NOT NULL,
    province    TEXT    NOT NULL,
    city        TEXT    NOT NULL,
    district    TEXT    NOT NULL DEFAULT '',
    detail      TEXT    NOT NULL,
    is_default  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX address_user ON address (user_id, id);

CREATE TABLE cart_item (
    user_id     INTEGER NOT NULL REFERENCES app_user (id),
    sku_id      INTEGER NOT NULL REFERENCES sku (id),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, sku_id)
);

-- `order` is a reserved word in SQL.
CREATE TABLE shop_order (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    order_no       TEXT    NOT NULL UNIQUE,
    user_id        INTEGER NOT NULL REFERENCES app_user (id),
    status         TEXT    NOT NULL,   -- pending_payment | paid | shipped | completed | cancelled | refunding | refunded
    total_fen      INTEGER NOT NULL CHECK (total_fen >= 0),
    address        TEXT    NOT NULL,   -- JSON snapshot of the address at order time
    remark         TEXT    NOT NULL DEFAULT '',
    pay_deadline   INTEGER NOT NULL,
    carrier        TEXT    NULL,
    tracking_no    TEXT    NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
-- A user's orders newest first (keyset on created_at, id), optionally by status.
CREATE INDEX shop_order_user_created ON shop_order (user_id, created_at, id);
CREATE INDEX shop_order_user_status_created ON shop_order (user_id, status, created_at, id);
-- The timeout sweep: unpaid orders by deadline.
CREATE INDEX shop_order_status_deadline ON shop_order (status, pay_deadline);
CREATE INDEX shop_order_created ON shop_order (created_at, id);

CREATE TABLE order_item (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id    INTEGER NOT NULL REFERENCES shop_order (id),
    sku_id      INTEGER NOT NULL REFERENCES sku (id),
    product_id  INTEGER NOT NULL,
    title       TEXT    NOT NULL,
    sku_title   TEXT    NOT NULL,
    price_fen   INTEGER NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity > 0)
);
CREATE INDEX order_item_order ON order_item (order_id);

CREATE TABLE order_event (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     INTEGER NOT NULL REFERENCES shop_order (id),
    from_status  TEXT    NULL,
    to_status    TEXT    NOT NULL,
    actor        TEXT    NOT NULL,   -- user:<id> | admin:<id> | system:timeout
    created_at   INTEGER NOT NULL
);
CREATE INDEX order_event_order ON order_event (order_id, id);

-- Idempotency-Key handling, per user: the first request's fingerprint and, once done, its response.
CREATE TABLE idempotency_key (
    user_id          INTEGER NOT NULL,
    idem_key         TEXT    NOT NULL,
    request_hash     TEXT    NOT NULL,
    state            TEXT    NOT NULL,   -- in_progress | done
    response_status  INTEGER NULL,
    response_body    TEXT    NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_key_expires ON idempotency_key (expires_at);
