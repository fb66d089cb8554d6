//! Client data reporting (数据上报): the mini-program sends batches of events (`POST /api/v1/track/batch`); each
//! is checked, deduplicated on `(source, event_id)` and written durably before the answer; a processor turns them
//! into daily traffic aggregates (`GET /admin/api/v1/stats/traffic`).
//!
//! - `model`: the request, its limits and the per-event checks (a bad event is listed as rejected and stored with
//!   its reason, the rest accepted).
//! - `ingest`: one writer per instance group-commits many requests into one transaction and answers each only
//!   after that commit; a full queue or an unavailable database is a 503 with `Retry-After` within 3 s.
//! - `processor`: claims unprocessed rows, updates PV/UV/clicks/errors per page and perf histograms, marks the rows
//!   processed in the same transaction; forwards them to Kafka through the outbox when Kafka is configured.

pub mod admin_routes;
pub mod ingest;
pub mod model;
pub mod processor;
pub mod routes;
