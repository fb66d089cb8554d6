-- Addresses, carts, orders with their items and state history, idempotency keys.
CREATE TABLE address (
    id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id     BIGINT        NOT NULL,
    recipient   VARCHAR(64)   NOT NULL,
    phone       VARCHAR(32)   NOT NULL,
    province    VARCHAR(64)   NOT NULL,
    city        VARCHAR(64)   NOT NULL,
    district    VARCHAR(64)   NOT NULL DEFAULT '',
    detail      VARCHAR(255)  NOT NULL,
    is_default  BIGINT        NOT NULL DEFAULT 0,
    created_at  BIGINT        NOT NULL,
    updated_at  BIGINT        NOT NULL,
    KEY address_user (user_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE cart_item (
    user_id     BIGINT  NOT NULL,
    sku_id      BIGINT  NOT NULL,
    quantity    BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (user_id, sku_id),
    CONSTRAINT cart_item_quantity_positive CHECK (quantity > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE shop_order (
    id             BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_no       VARCHAR(32)   NOT NULL,
    user_id        BIGINT        NOT NULL,
    status         VARCHAR(20)   NOT NULL,
    total_fen      BIGINT        NOT NULL,
    address        VARCHAR(1024) NOT NULL,
    remark         VARCHAR(255)  NOT NULL DEFAULT '',
    pay_deadline   BIGINT        NOT NULL,
    carrier        VARCHAR(64)   NULL,
    tracking_no    VARCHAR(64)   NULL,
    created_at     BIGINT        NOT NULL,
    updated_at     BIGINT        NOT NULL,
    UNIQUE KEY shop_order_no (order_no),
    KEY shop_order_user_created (user_id, created_at, id),
    KEY shop_order_user_status_created (user_id, status, created_at, id),
    KEY shop_order_status_deadline (status, pay_deadline),
    KEY shop_order_created (created_at, id),
    CONSTRAINT shop_order_total_non_negative CHECK (total_fen >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE order_item (
    id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_id    BIGINT        NOT NULL,
    sku_id      BIGINT        NOT NULL,
    product_id  BIGINT        NOT NULL,
    title       VARCHAR(128)  NOT NULL,
    sku_title   VARCHAR(128)  NOT NULL,
    price_fen   BIGINT        NOT NULL,
    quantity    BIGINT        NOT NULL,
    KEY order_item_order (order_id),
    CONSTRAINT order_item_order_fk FOREIGN KEY (order_id) REFERENCES shop_order (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE order_event (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_id     BIGINT       NOT NULL,
    from_status  VARCHAR(20)  NULL,
    to_status    VARCHAR(20)  NOT NULL,
    actor        VARCHAR(64)  NOT NULL,
    created_at   BIGINT       NOT NULL,
    KEY order_event_order (order_id, id),
    CONSTRAINT order_event_order_fk FOREIGN KEY (order_id) REFERENCES shop_order (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE idempotency_key (
    user_id          BIGINT         NOT NULL,
    idem_key         VARCHAR(255)   NOT NULL,
    request_hash     CHAR(64)       NOT NULL,
    state            VARCHAR(16)    NOT NULL,
    response_status  BIGINT         NULL,
    response_body    MEDIUMTEXT     NULL,
    created_at       BIGINT         NOT NULL,
    expires_at       BIGINT         NOT NULL,
    PRIMARY KEY (user_id, idem_key),
    KEY idempotency_key_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
