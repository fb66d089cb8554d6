-- The order list's second implementation (issue 16) passed the same tests as the first: roll it out to everyone,
-- as an ordinary flag change (audited, versioned), so operators can still lower the rollout or disable it.
-- A deployment that created the flag itself keeps its own definition.
INSERT INTO feature_flag (flag_key, definition, version, updated_at)
SELECT 'orders.list_v2', '{"key":"orders.list_v2","description":"GET /api/v1/orders: the cached first page (v2) instead of the query (v1). Lower the rollout or disable it to send users back to v1.","enabled":true,"rollout_percent":100,"stickiness":"default","group_id":"orders.list_v2","rules":[],"variants":[],"client_visible":false,"version":1}', 1, CAST(strftime('%s', 'now') AS INTEGER) * 1000
WHERE NOT EXISTS (SELECT 1 FROM feature_flag WHERE flag_key = 'orders.list_v2');

INSERT INTO feature_flag_audit (flag_key, version, actor, action, before_json, after_json, reason, at)
SELECT 'orders.list_v2', 1, 'migration:0011', 'create', NULL, definition, 'issue 16: both order list implementations pass the same tests; v2 to 100%', updated_at
FROM feature_flag WHERE flag_key = 'orders.list_v2' AND NOT EXISTS (SELECT 1 FROM feature_flag_audit WHERE flag_key = 'orders.list_v2');

UPDATE feature_flag_state SET version = version + 1 WHERE id = 1;
