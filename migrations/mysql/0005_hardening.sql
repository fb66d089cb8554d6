-- Identifiers and secret-derived values compare byte for byte: `Key-1` and `key-1` are two idempotency keys, two
-- openids differing in case are two users. (The tables' default collation, utf8mb4_unicode_ci, folds case and
-- accents; human text keeps it.)
ALTER TABLE app_user
    MODIFY app_id   VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY openid   VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY unionid  VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
ALTER TABLE refresh_token MODIFY token_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL;
ALTER TABLE revocation MODIFY revoked_key VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE shop_order MODIFY order_no VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE idempotency_key
    MODIFY idem_key      VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY request_hash  CHAR(64)     CHARACTER SET ascii   COLLATE ascii_bin   NOT NULL;
ALTER TABLE flash_purchase
    MODIFY id        VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY idem_key  VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;

-- The flash-sale hand-off retries a purchase whose order cannot be made with backoff, then parks it as failed.
ALTER TABLE flash_purchase
    ADD COLUMN attempts  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN retry_at  BIGINT NOT NULL DEFAULT 0;
