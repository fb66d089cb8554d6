-- Flash sales (秒杀) and their purchases, coupon campaigns (抢券) and coupons; orders learn where they came from.
CREATE TABLE flash_sale (
    id                 BIGINT  NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sku_id             BIGINT  NOT NULL,
    price_fen          BIGINT  NOT NULL,
    stock              BIGINT  NOT NULL,
    per_user_limit     BIGINT  NOT NULL,
    starts_at          BIGINT  NOT NULL,
    ends_at            BIGINT  NOT NULL,
    ended_early_at     BIGINT  NULL,
    stock_returned_at  BIGINT  NULL,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    KEY flash_sale_ends (ends_at),
    CONSTRAINT flash_sale_sku_fk FOREIGN KEY (sku_id) REFERENCES sku (id),
    CONSTRAINT flash_sale_positive CHECK (price_fen > 0 AND stock > 0 AND per_user_limit > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE flash_purchase (
    id             VARCHAR(64)   NOT NULL PRIMARY KEY,
    flash_sale_id  BIGINT        NOT NULL,
    user_id        BIGINT        NOT NULL,
    quantity       BIGINT        NOT NULL,
    address_id     BIGINT        NOT NULL,
    idem_key       VARCHAR(255)  NOT NULL,
    status         VARCHAR(16)   NOT NULL,
    order_id       BIGINT        NULL,
    reason         VARCHAR(64)   NULL,
    decided_at     BIGINT        NOT NULL,
    updated_at     BIGINT        NOT NULL,
    UNIQUE KEY flash_purchase_idem (flash_sale_id, user_id, idem_key),
    UNIQUE KEY flash_purchase_order (order_id),
    KEY flash_purchase_sale_status (flash_sale_id, status, decided_at),
    CONSTRAINT flash_purchase_sale_fk FOREIGN KEY (flash_sale_id) REFERENCES flash_sale (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE coupon_campaign (
    id              BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    title           VARCHAR(64)  NOT NULL,
    discount_fen    BIGINT       NOT NULL,
    min_spend_fen   BIGINT       NOT NULL,
    total           BIGINT       NOT NULL,
    issued          BIGINT       NOT NULL DEFAULT 0,
    per_user_limit  BIGINT       NOT NULL,
    starts_at       BIGINT       NOT NULL,
    ends_at         BIGINT       NOT NULL,
    valid_days      BIGINT       NOT NULL,
    stopped_at      BIGINT       NULL,
    created_at      BIGINT       NOT NULL,
    updated_at      BIGINT       NOT NULL,
    KEY coupon_campaign_ends (ends_at),
    CONSTRAINT coupon_campaign_quota CHECK (issued >= 0 AND issued <= total)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE coupon (
    id                  BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    coupon_campaign_id  BIGINT       NOT NULL,
    user_id             BIGINT       NOT NULL,
    title               VARCHAR(64)  NOT NULL,
    discount_fen        BIGINT       NOT NULL,
    min_spend_fen       BIGINT       NOT NULL,
    status              VARCHAR(16)  NOT NULL,
    order_id            BIGINT       NULL,
    valid_from          BIGINT       NOT NULL,
    valid_until         BIGINT       NOT NULL,
    claimed_at          BIGINT       NOT NULL,
    used_at             BIGINT       NULL,
    KEY coupon_user (user_id, id),
    KEY coupon_campaign_user (coupon_campaign_id, user_id),
    KEY coupon_order (order_id),
    CONSTRAINT coupon_campaign_fk FOREIGN KEY (coupon_campaign_id) REFERENCES coupon_campaign (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

ALTER TABLE shop_order
    ADD COLUMN flash_sale_id BIGINT NULL,
    ADD COLUMN coupon_id BIGINT NULL,
    ADD COLUMN discount_fen BIGINT NOT NULL DEFAULT 0;
