-- Catalog: categories, products, SKUs. Money in integer fen, times in epoch milliseconds (UTC).
CREATE TABLE category (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    parent_id   BIGINT       NULL,
    name        VARCHAR(64)  NOT NULL,
    icon_url    VARCHAR(512) NOT NULL DEFAULT '',
    sort_order  BIGINT       NOT NULL DEFAULT 0,
    status      VARCHAR(16)  NOT NULL DEFAULT 'active',
    created_at  BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    CONSTRAINT category_parent FOREIGN KEY (parent_id) REFERENCES category (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE product (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    category_id  BIGINT       NOT NULL,
    title        VARCHAR(128) NOT NULL,
    subtitle     VARCHAR(256) NOT NULL DEFAULT '',
    description  TEXT         NOT NULL,
    image_urls   TEXT         NOT NULL,
    status       VARCHAR(16)  NOT NULL DEFAULT 'on_sale',
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL,
    KEY product_status_id (status, id),
    KEY product_category_status_id (category_id, status, id),
    CONSTRAINT product_category FOREIGN KEY (category_id) REFERENCES category (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE sku (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    product_id  BIGINT       NOT NULL,
    title       VARCHAR(128) NOT NULL,
    price_fen   BIGINT       NOT NULL,
    stock       BIGINT       NOT NULL,
    attributes  TEXT         NOT NULL,
    status      VARCHAR(16)  NOT NULL DEFAULT 'active',
    created_at  BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    KEY sku_product (product_id, status),
    CONSTRAINT sku_product_fk FOREIGN KEY (product_id) REFERENCES product (id),
    CONSTRAINT sku_price_non_negative CHECK (price_fen >= 0),
    CONSTRAINT sku_stock_non_negative CHECK (stock >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
