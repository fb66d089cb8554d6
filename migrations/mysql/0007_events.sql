-- The transactional outbox (Debezium-compatible column names), the bus's own log for in-process consumers, the
-- consumers' inbox and offsets, the relay's lease, dead letters, and what the consumers build: sales statistics.
CREATE TABLE outbox (
    seq             BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    id              CHAR(36)      CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    aggregatetype   VARCHAR(32)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    aggregateid     VARCHAR(64)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    type            VARCHAR(128)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    payload         MEDIUMTEXT    NOT NULL,
    occurred_at     BIGINT        NOT NULL,
    published_at    BIGINT        NULL,
    log_offset      BIGINT        NULL,
    attempts        BIGINT        NOT NULL DEFAULT 0,
    next_attempt_at BIGINT        NOT NULL DEFAULT 0,
    last_error      VARCHAR(512)  NULL,
    UNIQUE KEY outbox_id (id),
    UNIQUE KEY outbox_log_offset (log_offset),
    KEY outbox_pending (published_at, seq),
    KEY outbox_occurred (occurred_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE bus_lease (
    name        VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    holder      VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    expires_at  BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE processed_event (
    consumer      VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    event_id      VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    processed_at  BIGINT       NOT NULL,
    PRIMARY KEY (consumer, event_id),
    KEY processed_event_at (processed_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE consumer_offset (
    consumer    VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    log_offset  BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE dead_letter (
    id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    consumer    VARCHAR(64)   NOT NULL,
    event_id    VARCHAR(64)   NOT NULL,
    type        VARCHAR(128)  NOT NULL,
    payload     MEDIUMTEXT    NOT NULL,
    error       VARCHAR(1024) NOT NULL,
    created_at  BIGINT        NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE sales_daily (
    day         CHAR(10)  CHARACTER SET ascii NOT NULL,
    sku_id      BIGINT    NOT NULL,
    orders      BIGINT    NOT NULL DEFAULT 0,
    units       BIGINT    NOT NULL DEFAULT 0,
    gmv_fen     BIGINT    NOT NULL DEFAULT 0,
    refunds     BIGINT    NOT NULL DEFAULT 0,
    refund_fen  BIGINT    NOT NULL DEFAULT 0,
    PRIMARY KEY (day, sku_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
