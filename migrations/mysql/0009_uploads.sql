-- Uploads straight to object storage: one row per upload credential, from pending to committed (content-addressed
-- key, checked image) or rejected (with its code); and the CDN purges that taking an image down enqueues.
CREATE TABLE upload (
    id            CHAR(32)      CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    owner_kind    VARCHAR(8)    CHARACTER SET ascii NOT NULL,
    owner_id      BIGINT        NOT NULL,
    purpose       VARCHAR(16)   CHARACTER SET ascii NOT NULL,
    incoming_key  VARCHAR(200)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    content_type  VARCHAR(32)   CHARACTER SET ascii NOT NULL,
    max_bytes     BIGINT        NOT NULL,
    status        VARCHAR(16)   CHARACTER SET ascii NOT NULL,
    reject_code   VARCHAR(48)   CHARACTER SET ascii NULL,
    reject_message VARCHAR(255) NULL,
    object_key    VARCHAR(120)  CHARACTER SET ascii COLLATE ascii_bin NULL,
    sha256        CHAR(64)      CHARACTER SET ascii NULL,
    final_type    VARCHAR(32)   CHARACTER SET ascii NULL,
    width         INT           NULL,
    height        INT           NULL,
    size_bytes    BIGINT        NULL,
    expires_at    BIGINT        NOT NULL,
    created_at    BIGINT        NOT NULL,
    committed_at  BIGINT        NULL,
    KEY upload_owner (owner_kind, owner_id, created_at),
    KEY upload_pending (status, expires_at),
    KEY upload_sha (sha256)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE cdn_purge (
    id            BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    url           VARCHAR(1024) NOT NULL,
    status        VARCHAR(16)   CHARACTER SET ascii NOT NULL,
    attempts      INT           NOT NULL DEFAULT 0,
    next_at       BIGINT        NOT NULL,
    lease_owner   VARCHAR(40)   CHARACTER SET ascii NULL,
    task_id       VARCHAR(128)  NULL,
    last_error    VARCHAR(512)  NULL,
    enqueued_at   BIGINT        NOT NULL,
    submitted_at  BIGINT        NULL,
    done_at       BIGINT        NULL,
    KEY cdn_purge_due (status, next_at),
    KEY cdn_purge_submitted (submitted_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
