-- Client data reporting (数据上报): events as received (deduplicated per source), the rejected ones with their
-- reason, and the daily aggregates the processor builds.
CREATE TABLE track_event (
    id           BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    source       VARCHAR(80)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    event_id     VARCHAR(64)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    type         VARCHAR(16)   NOT NULL,
    page         VARCHAR(256)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    props        MEDIUMTEXT    NOT NULL,
    occurred_at  BIGINT        NOT NULL,
    client_time  BIGINT        NOT NULL,
    received_at  BIGINT        NOT NULL,
    processed    BIGINT        NOT NULL DEFAULT 0,
    UNIQUE KEY track_event_source_id (source, event_id),
    KEY track_event_unprocessed (processed, id),
    KEY track_event_received (received_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE track_bad_row (
    id           BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    source       VARCHAR(80)   NOT NULL,
    event_id     VARCHAR(255)  NOT NULL,
    reason       VARCHAR(255)  NOT NULL,
    raw          MEDIUMTEXT    NOT NULL,
    received_at  BIGINT        NOT NULL,
    KEY track_bad_row_received (received_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE traffic_daily (
    day      CHAR(10)      CHARACTER SET ascii NOT NULL,
    page     VARCHAR(256)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    pv       BIGINT        NOT NULL DEFAULT 0,
    uv       BIGINT        NOT NULL DEFAULT 0,
    clicks   BIGINT        NOT NULL DEFAULT 0,
    errors   BIGINT        NOT NULL DEFAULT 0,
    PRIMARY KEY (day, page)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE traffic_visitor (
    day      CHAR(10)      CHARACTER SET ascii NOT NULL,
    page     VARCHAR(256)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    visitor  VARCHAR(80)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    PRIMARY KEY (day, page, visitor)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE traffic_perf (
    day       CHAR(10)      CHARACTER SET ascii NOT NULL,
    page      VARCHAR(256)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    bucket_ms BIGINT        NOT NULL,
    samples   BIGINT        NOT NULL DEFAULT 0,
    PRIMARY KEY (day, page, bucket_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
