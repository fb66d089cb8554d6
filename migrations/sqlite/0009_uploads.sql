-- Uploads straight to object storage: one row per upload credential, from pending to committed (content-addressed
-- key, checked image) or rejected (with its code); and the CDN purges that taking an image down enqueues.
CREATE TABLE upload (
    id            TEXT    NOT NULL PRIMARY KEY,
    owner_kind    TEXT    NOT NULL,   -- user | admin
    owner_id      INTEGER NOT NULL,
    purpose       TEXT    NOT NULL,   -- avatar | review_photo | product_image
    incoming_key  TEXT    NOT NULL,   -- incoming/<purpose>/<owner>/<id>
    content_type  TEXT    NOT NULL,   -- as declared (and pinned by the policy)
    max_bytes     INTEGER NOT NULL,
    status        TEXT    NOT NULL,   -- pending | committed | rejected | expired | removed
    reject_code   TEXT,
    reject_message TEXT,
    object_key    TEXT,               -- img/ab/<sha256>.<ext>
    sha256        TEXT,
    final_type    TEXT,               -- from the sniff
    width         INTEGER,
    height        INTEGER,
    size_bytes    INTEGER,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    committed_at  INTEGER
);
CREATE INDEX upload_owner ON upload (owner_kind, owner_id, created_at);
CREATE INDEX upload_pending ON upload (status, expires_at);
CREATE INDEX upload_sha ON upload (sha256);

CREATE TABLE cdn_purge (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    url           TEXT    NOT NULL,
    status        TEXT    NOT NULL,   -- pending | submitted | done | failed
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,   -- when it is next due (a call, or a task check)
    lease_owner   TEXT,
    task_id       TEXT,
    last_error    TEXT,
    enqueued_at   INTEGER NOT NULL,
    submitted_at  INTEGER,
    done_at       INTEGER
);
CREATE INDEX cdn_purge_due ON cdn_purge (status, next_at);
CREATE INDEX cdn_purge_submitted ON cdn_purge (submitted_at);
