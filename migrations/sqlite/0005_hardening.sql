-- The flash-sale hand-off retries a purchase whose order cannot be made with backoff, then parks it as failed.
-- (SQLite compares TEXT byte for byte already: nothing to change for identifiers.)
ALTER TABLE flash_purchase ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flash_purchase ADD COLUMN retry_at INTEGER NOT NULL DEFAULT 0;
