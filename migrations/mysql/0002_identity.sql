-- Identity: mini-program users, admin accounts, refresh-token families, the persisted deny-list, stock audit.
CREATE TABLE app_user (
    id               BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    app_id           VARCHAR(64)   NOT NULL,
    openid           VARCHAR(128)  NOT NULL,
    unionid          VARCHAR(128)  NULL,
    nickname         VARCHAR(64)   NOT NULL DEFAULT '',
    avatar_url       VARCHAR(512)  NOT NULL DEFAULT '',
    phone            VARCHAR(32)   NULL,
    session_key_enc  VARCHAR(255)  NOT NULL DEFAULT '',
    status           VARCHAR(16)   NOT NULL DEFAULT 'active',
    created_at       BIGINT        NOT NULL,
    updated_at       BIGINT        NOT NULL,
    last_login_at    BIGINT        NOT NULL,
    UNIQUE KEY app_user_openid (app_id, openid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE admin_user (
    id             BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username       VARCHAR(64)   NOT NULL,
    password_hash  VARCHAR(255)  NOT NULL,
    role           VARCHAR(16)   NOT NULL,
    status         VARCHAR(16)   NOT NULL DEFAULT 'active',
    created_at     BIGINT        NOT NULL,
    updated_at     BIGINT        NOT NULL,
    last_login_at  BIGINT        NULL,
    UNIQUE KEY admin_user_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE auth_family (
    id                   BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    subject_kind         VARCHAR(8)   NOT NULL,
    subject_id           BIGINT       NOT NULL,
    created_at           BIGINT       NOT NULL,
    absolute_expires_at  BIGINT       NOT NULL,
    revoked_at           BIGINT       NULL,
    revoke_reason        VARCHAR(16)  NULL,
    KEY auth_family_subject (subject_kind, subject_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE refresh_token (
    id               BIGINT    NOT NULL AUTO_INCREMENT PRIMARY KEY,
    auth_family_id   BIGINT    NOT NULL,
    token_hash       CHAR(64)  NOT NULL,
    created_at       BIGINT    NOT NULL,
    idle_expires_at  BIGINT    NOT NULL,
    rotated_at       BIGINT    NULL,
    UNIQUE KEY refresh_token_hash (token_hash),
    KEY refresh_token_family (auth_family_id),
    CONSTRAINT refresh_token_family_fk FOREIGN KEY (auth_family_id) REFERENCES auth_family (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE revocation (
    revoked_key  VARCHAR(128)  NOT NULL PRIMARY KEY,
    expires_at   BIGINT        NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE stock_adjustment (
    id             BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    sku_id         BIGINT        NOT NULL,
    admin_user_id  BIGINT        NOT NULL,
    delta          BIGINT        NOT NULL,
    stock_after    BIGINT        NOT NULL,
    reason         VARCHAR(255)  NOT NULL,
    created_at     BIGINT        NOT NULL,
    KEY stock_adjustment_sku (sku_id, id),
    CONSTRAINT stock_adjustment_sku_fk FOREIGN KEY (sku_id) REFERENCES sku (id),
    CONSTRAINT stock_adjustment_admin_fk FOREIGN KEY (admin_user_id) REFERENCES admin_user (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
