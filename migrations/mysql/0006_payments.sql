-- WeChat Pay: one payment per order (out_trade_no = order_no), the notification inbox, anomalies, refunds,
-- shipping-info uploads, reconciliation reports; and the order's lifecycle times.
ALTER TABLE shop_order
    ADD COLUMN paid_at      BIGINT NULL,
    ADD COLUMN shipped_at   BIGINT NULL,
    ADD COLUMN completed_at BIGINT NULL,
    ADD KEY shop_order_status_shipped (status, shipped_at);

CREATE TABLE payment (
    order_id          BIGINT        NOT NULL PRIMARY KEY,
    out_trade_no      VARCHAR(32)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    state             VARCHAR(32)   NOT NULL,
    prepay_body       VARCHAR(2048) NOT NULL,
    prepay_id         VARCHAR(64)   CHARACTER SET ascii COLLATE ascii_bin NULL,
    prepay_expires_at BIGINT        NULL,
    transaction_id    VARCHAR(32)   CHARACTER SET ascii COLLATE ascii_bin NULL,
    amount_fen        BIGINT        NOT NULL,
    paid_at           BIGINT        NULL,
    next_check_at     BIGINT        NOT NULL,
    check_attempts    BIGINT        NOT NULL DEFAULT 0,
    last_queried_at   BIGINT        NOT NULL DEFAULT 0,
    created_at        BIGINT        NOT NULL,
    updated_at        BIGINT        NOT NULL,
    UNIQUE KEY payment_out_trade_no (out_trade_no),
    UNIQUE KEY payment_transaction_id (transaction_id),
    KEY payment_state_check (state, next_check_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE pay_event (
    event_id     VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    event_type   VARCHAR(32)  NOT NULL,
    reference    VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    outcome      VARCHAR(32)  NOT NULL,
    received_at  BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE pay_anomaly (
    id            BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    out_trade_no  VARCHAR(64)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kind          VARCHAR(32)   NOT NULL,
    source        VARCHAR(16)   NOT NULL,
    detail        VARCHAR(1024) NOT NULL,
    created_at    BIGINT        NOT NULL,
    KEY pay_anomaly_created (created_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE refund (
    id                  BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    order_id            BIGINT        NOT NULL,
    out_refund_no       VARCHAR(64)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kind                VARCHAR(16)   NOT NULL,
    status              VARCHAR(16)   NOT NULL,
    amount_fen          BIGINT        NOT NULL,
    reason              VARCHAR(255)  NOT NULL,
    decision_note       VARCHAR(255)  NULL,
    order_status_before VARCHAR(20)   NULL,
    refund_id           VARCHAR(64)   CHARACTER SET ascii COLLATE ascii_bin NULL,
    request_body        VARCHAR(2048) NULL,
    next_check_at       BIGINT        NOT NULL DEFAULT 0,
    decided_by          BIGINT        NULL,
    created_at          BIGINT        NOT NULL,
    updated_at          BIGINT        NOT NULL,
    UNIQUE KEY refund_out_refund_no (out_refund_no),
    KEY refund_order (order_id, id),
    KEY refund_status_check (status, next_check_at),
    CONSTRAINT refund_amount_positive CHECK (amount_fen > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE shipping_upload (
    order_id         BIGINT        NOT NULL PRIMARY KEY,
    state            VARCHAR(16)   NOT NULL,
    attempts         BIGINT        NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT        NOT NULL,
    last_error       VARCHAR(255)  NULL,
    updated_at       BIGINT        NOT NULL,
    KEY shipping_upload_state (state, next_attempt_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE reconciliation_run (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    bill_date   VARCHAR(10)  NOT NULL,
    status      VARCHAR(16)  NOT NULL,
    report      TEXT         NOT NULL,
    created_at  BIGINT       NOT NULL,
    KEY reconciliation_run_date (bill_date, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
