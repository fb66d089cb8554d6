-- Identity: mini-program users, admin accounts, refresh-token families, the persisted deny-list, stock audit.
CREATE TABLE app_user (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id           TEXT    NOT NULL,
    openid           TEXT    NOT NULL,
    unionid          TEXT    NULL,
    nickname         TEXT    NOT NULL DEFAULT '',
    avatar_url       TEXT    NOT NULL DEFAULT '',
    phone            TEXT    NULL,
    session_key_enc  TEXT    NOT NULL DEFAULT '',   -- AES-256-GCM sealed WeChat session_key, never returned
    status           TEXT    NOT NULL DEFAULT 'active', -- active | banned
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    last_login_at    INTEGER NOT NULL,
    UNIQUE (app_id, openid)
);

CREATE TABLE admin_user (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    username       TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,               -- argon2id PHC string
    role           TEXT    NOT NULL,               -- admin | operator | viewer
    status         TEXT    NOT NULL DEFAULT 'active',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    last_login_at  INTEGER NULL
);

-- One login = one family; every refresh token descended from it belongs to it.
CREATE TABLE auth_family (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_kind         TEXT    NOT NULL,         -- user | admin
    subject_id           INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    absolute_expires_at  INTEGER NOT NULL,
    revoked_at           INTEGER NULL,
    revoke_reason        TEXT    NULL              -- logout | reuse | ban
);
CREATE INDEX auth_family_subject ON auth_family (subject_kind, subject_id);

CREATE TABLE refresh_token (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    auth_family_id   INTEGER NOT NULL REFERENCES auth_family (id),
    token_hash       TEXT    NOT NULL UNIQUE,      -- SHA-256 hex; the token itself is never stored
    created_at       INTEGER NOT NULL,
    idle_expires_at  INTEGER NOT NULL,
    rotated_at       INTEGER NULL
);
CREATE INDEX refresh_token_family ON refresh_token (auth_family_id);

-- The embedded deny-list survives restarts here (scale-out keeps it in Redis).
CREATE TABLE revocation (
    revoked_key  TEXT    NOT NULL PRIMARY KEY,     -- jti:<id> | sid:<family> | user:<id>
    expires_at   INTEGER NOT NULL
);

CREATE TABLE stock_adjustment (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    sku_id         INTEGER NOT NULL REFERENCES sku (id),
    admin_user_id  INTEGER NOT NULL REFERENCES admin_user (id),
    delta          INTEGER NOT NULL,
    stock_after    INTEGER NOT NULL,
    reason         TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX stock_adjustment_sku ON stock_adjustment (sku_id, id);
