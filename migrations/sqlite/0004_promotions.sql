-- Flash sales (秒杀) and their purchases, coupon campaigns (抢券) and coupons; orders learn where they came from.
CREATE TABLE flash_sale (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    sku_id             INTEGER NOT NULL REFERENCES sku (id),
    price_fen          INTEGER NOT NULL CHECK (price_fen > 0),
    stock              INTEGER NOT NULL CHECK (stock > 0),
    per_user_limit     INTEGER NOT NULL CHECK (per_user_limit > 0),
    starts_at          INTEGER NOT NULL,
    ends_at            INTEGER NOT NULL,
    ended_early_at     INTEGER NULL,
    stock_returned_at  INTEGER NULL,   -- leftover units went back to the SKU's ordinary stock
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX flash_sale_ends ON flash_sale (ends_at);

-- A won purchase attempt: queued → created (with its order) or failed; created → released when the order is
-- cancelled (the unit goes back to the sale). queued and created hold units.
CREATE TABLE flash_purchase (
    id             TEXT    PRIMARY KEY,
    flash_sale_id  INTEGER NOT NULL REFERENCES flash_sale (id),
    user_id        INTEGER NOT NULL,
    quantity       INTEGER NOT NULL,
    address_id     INTEGER NOT NULL,
    idem_key       TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    order_id       INTEGER NULL UNIQUE,
    reason         TEXT    NULL,
    decided_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (flash_sale_id, user_id, idem_key)
);
CREATE INDEX flash_purchase_sale_status ON flash_purchase (flash_sale_id, status, decided_at);

CREATE TABLE coupon_campaign (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    title           TEXT    NOT NULL,
    discount_fen    INTEGER NOT NULL,
    min_spend_fen   INTEGER NOT NULL,
    total           INTEGER NOT NULL,
    issued          INTEGER NOT NULL DEFAULT 0,
    per_user_limit  INTEGER NOT NULL,
    starts_at       INTEGER NOT NULL,
    ends_at         INTEGER NOT NULL,
    valid_days      INTEGER NOT NULL,
    stopped_at      INTEGER NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CHECK (issued >= 0 AND issued <= total)
);
CREATE INDEX coupon_campaign_ends ON coupon_campaign (ends_at);

CREATE TABLE coupon (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    coupon_campaign_id  INTEGER NOT NULL REFERENCES coupon_campaign (id),
    user_id             INTEGER NOT NULL,
    title               TEXT    NOT NULL,
    discount_fen        INTEGER NOT NULL,
    min_spend_fen       INTEGER NOT NULL,
    status              TEXT    NOT NULL,   -- unused | used
    order_id            INTEGER NULL,
    valid_from          INTEGER NOT NULL,
    valid_until         INTEGER NOT NULL,
    claimed_at          INTEGER NOT NULL,
    used_at             INTEGER NULL
);
CREATE INDEX coupon_user ON coupon (user_id, id);
CREATE INDEX coupon_campaign_user ON coupon (coupon_campaign_id, user_id);
CREATE INDEX coupon_order ON coupon (order_id);

ALTER TABLE shop_order ADD COLUMN flash_sale_id INTEGER NULL;
ALTER TABLE shop_order ADD COLUMN coupon_id INTEGER NULL;
ALTER TABLE shop_order ADD COLUMN discount_fen INTEGER NOT NULL DEFAULT 0;
