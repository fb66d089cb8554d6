-- Catalog: categories, products, SKUs. Money in integer fen, times in epoch milliseconds (UTC).
CREATE TABLE category (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id   INTEGER NULL REFERENCES category (id),
    name        TEXT    NOT NULL,
    icon_url    TEXT    NOT NULL DEFAULT '',
    sort_order  INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL DEFAULT 'active',   -- active | delisted
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE product (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    category_id  INTEGER NOT NULL REFERENCES category (id),
    title        TEXT    NOT NULL,
    subtitle     TEXT    NOT NULL DEFAULT '',
    description  TEXT    NOT NULL DEFAULT '',
    image_urls   TEXT    NOT NULL DEFAULT '[]',      -- JSON array of URLs; the first is the main image
    status       TEXT    NOT NULL DEFAULT 'on_sale', -- on_sale | delisted
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- The listing walks (status, id) newest first, optionally within a category.
CREATE INDEX product_status_id ON product (status, id);
CREATE INDEX product_category_status_id ON product (category_id, status, id);

CREATE TABLE sku (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id  INTEGER NOT NULL REFERENCES product (id),
    title       TEXT    NOT NULL,
    price_fen   INTEGER NOT NULL CHECK (price_fen >= 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    attributes  TEXT    NOT NULL DEFAULT '{}',       -- JSON object, e.g. {"颜色": "红", "尺码": "L"}
    status      TEXT    NOT NULL DEFAULT 'active',   -- active | delisted
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX sku_product ON sku (product_id, status);
