-- The order list reads a user's page from the index alone (issue 16, growth): shop_order_user_created carries what
-- a listing shows, so a page of 20 costs one index range instead of 20 row lookups, however large the table.
ALTER TABLE shop_order
    DROP INDEX shop_order_user_created,
    ADD INDEX shop_order_user_created (user_id, created_at, id, status, total_fen, order_no);
