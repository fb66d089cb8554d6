-- The order list reads a user's page from the index alone (issue 16, growth): shop_order_user_created carries what
-- a listing shows, so a page of 20 costs one index range instead of 20 row lookups, however large the table.
DROP INDEX shop_order_user_created;
CREATE INDEX shop_order_user_created ON shop_order (user_id, created_at, id, status, total_fen, order_no);
