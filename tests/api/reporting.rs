//! Client data reporting (数据上报): limits, deduplication, durable answers, backpressure, aggregates.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{backends, scale_out_backend, spawn_app, spawn_app_with, Backend, TestApp};

fn event(id: &str, kind: &str, page: &str) -> Value {
    json!({"event_id": id, "type": kind, "occurred_at": wxshop::db::rfc3339(wxshop::db::now_ms()), "page": page})
}

async fn send(app: &TestApp, token: Option<&str>, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    app.call(reqwest::Method::POST, "/api/v1/track/batch", Some(body), token).await
}

/// Processes what is stored, until nothing is left unprocessed (the background processor may hold some rows).
async fn process(app: &TestApp) {
    wxshop::reporting::processor::pass(&app.state).await.unwrap();
    let done = crate::helpers::eventually(Duration::from_secs(60), || async {
        app.scalar("SELECT COUNT(*) AS n FROM track_event WHERE processed = 0").await == 0
    })
    .await;
    assert!(done, "every report processed");
}

/// Sends like the SDK: again after `Retry-After` on a 503.
async fn send_until_stored(app: &TestApp, body: &Value) -> Value {
    for _ in 0..30 {
        let (status, _, answer) = send(app, None, body).await;
        if status == 200 {
            return answer;
        }
        assert_eq!(status, 503, "{answer}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("never stored");
}

#[tokio::test]
async fn reports_are_stored_once_and_counted_once() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let admin = app.admin_token("viewer").await;
        let token = app.login("reporter").await.access_token;
        let now = wxshop::db::rfc3339(wxshop::db::now_ms());
        let batch = json!({"sent_at": now, "context": {"platform": "ios"}, "batch": [
            event("e1", "page_view", "pages/index/index"),
            event("e2", "page_view", "pages/index/index"),
            event("e3", "click", "pages/index/index"),
            {"event_id": "e4", "type": "perf", "occurred_at": now, "page": "pages/index/index", "props": {"value_ms": 180}},
            {"event_id": "e5", "type": "scroll", "occurred_at": now},
            event("e6", "error", "pages/cart/cart"),
        ]});
        let (status, _, answer) = send(&app, Some(&token), &batch).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!((answer["accepted"].as_i64(), answer["duplicates"].as_i64()), (Some(5), Some(0)), "{answer}");
        assert_eq!(answer["rejected"], json!([{"index": 4, "event_id": "e5", "reason": "invalid_event"}]));
        assert_eq!(
            app.scalar("SELECT COUNT(*) AS n FROM track_bad_row").await,
            1,
            "the bad row is kept with its reason"
        );
        // The same batch again (the SDK's retry): nothing new.
        let (_, _, again) = send(&app, Some(&token), &batch).await;
        assert_eq!((again["accepted"].as_i64(), again["duplicates"].as_i64()), (Some(0), Some(5)), "{again}");
        // An anonymous visitor, the same event ids: another sender, so new events.
        let anonymous = json!({"anon_id": "anon-0000-1111", "batch": [event("e1", "page_view", "pages/index/index")]});
        let (status, _, anon) = send(&app, None, &anonymous).await;
        assert_eq!((status, anon["accepted"].as_i64()), (200, Some(1)), "{anon}");
        process(&app).await;
        let (status, stats) = app.get_auth("/admin/api/v1/stats/traffic", &admin).await;
        assert_eq!(status, 200, "{stats}");
        let items = stats["items"].as_array().unwrap();
        let index = items.iter().find(|i| i["page"] == "pages/index/index").expect("the index page");
        assert_eq!((index["pv"].as_i64(), index["uv"].as_i64()), (Some(3), Some(2)), "{index}");
        assert_eq!(index["clicks"], 1);
        assert_eq!((index["perf_samples"].as_i64(), index["perf_p50_ms"].as_i64()), (Some(1), Some(200)));
        let cart = items.iter().find(|i| i["page"] == "pages/cart/cart").unwrap();
        assert_eq!(cart["errors"], 1);
        // Processing again changes nothing: each event counts once.
        process(&app).await;
        let (_, again) = app.get_auth("/admin/api/v1/stats/traffic", &admin).await;
        assert_eq!(again, stats);
    }
}

#[tokio::test]
async fn oversized_overfull_anonymous_and_too_frequent_batches_are_refused() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.rate_limit.track_per_user = 3).await;
        let token = app.login("limits").await.access_token;
        let many: Vec<Value> = (0..201).map(|i| event(&format!("m{i}"), "click", "p")).collect();
        let (status, _, body) = send(&app, Some(&token), &json!({"batch": many})).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("too_many_events")));
        let big = json!({"batch": [{"event_id": "big", "type": "custom", "occurred_at": "2026-12-01T00:00:00Z", "props": {"x": "y".repeat(600 * 1024)}}]});
        let (status, _, body) = send(&app, Some(&token), &big).await;
        assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")));
        let (status, _, body) = send(&app, None, &json!({"batch": [event("a", "click", "p")]})).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_parameter")), "no token, no anon_id");
        let (status, _, _) = send(&app, Some("not-a-token"), &json!({"batch": []})).await;
        assert_eq!(status, 401);
        let mut limited = None;
        for i in 0..5 {
            let (status, headers, _) =
                send(&app, Some(&token), &json!({"batch": [event(&format!("r{i}"), "click", "p")]})).await;
            if status == 429 {
                limited = headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                break;
            }
        }
        assert!(limited.is_some(), "429 with Retry-After after 3 batches in the window");
    }
}

#[tokio::test]
async fn a_blocked_database_is_a_quick_503_with_retry_after_and_nothing_acknowledged_is_lost() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.reporting.queue_capacity = 2).await;
        let token = app.login("blocked").await.access_token;
        // Another connection holds what the writer needs.
        let mut blocker = sqlx::AnyConnection::connect(&app.config.database_url()).await.unwrap();
        match &backend {
            Backend::Embedded => {
                sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();
            }
            Backend::ScaleOut { .. } => {
                sqlx::query("LOCK TABLES track_event WRITE").execute(&mut blocker).await.unwrap();
            }
        }
        let batches: Vec<Value> =
            (0..6).map(|i| json!({"batch": [event(&format!("b{i}"), "page_view", "pages/a/a")]})).collect();
        let started = std::time::Instant::now();
        let calls = batches.iter().map(|b| send(&app, Some(&token), b));
        let answers = futures_util::future::join_all(calls).await;
        assert!(started.elapsed() < Duration::from_secs(5), "answered within the 3 s bound: {:?}", started.elapsed());
        for (status, headers, body) in &answers {
            assert_eq!(*status, 503, "{body}");
            assert_eq!(headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
            assert!(matches!(body["code"].as_str(), Some("ingest_busy" | "ingest_timeout")), "{body}");
        }
        match &backend {
            Backend::Embedded => sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap(),
            Backend::ScaleOut { .. } => sqlx::query("UNLOCK TABLES").execute(&mut blocker).await.unwrap(),
        };
        drop(blocker);
        // The clients retry after Retry-After: every event ends up stored once, whether its first attempt committed
        // late or not.
        for batch in &batches {
            let mut answer = None;
            for _ in 0..10 {
                let (status, _, body) = send(&app, Some(&token), batch).await;
                if status == 200 {
                    answer = Some(body);
                    break;
                }
                assert_eq!(status, 503, "{body}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let body = answer.expect("accepted once the database is back");
            assert_eq!(body["accepted"].as_i64().unwrap() + body["duplicates"].as_i64().unwrap(), 1);
        }
        assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM track_event").await, 6);
    }
}

/// Instances take turns processing reports (two at once deadlocked on the aggregates' gap locks batch after batch):
/// while another instance holds the turn, neither this instance's processor nor an explicit pass processes
/// anything; once it commits, every event is counted once.
#[tokio::test]
async fn instances_take_turns_processing_reports() {
    let Some(backend) = scale_out_backend() else { return };
    let app = spawn_app(&backend).await;
    let admin = app.admin_token("viewer").await;
    let mut holder = app.state.db.begin_write().await.unwrap();
    wxshop::db::take_turn(&mut holder, app.state.db.dialect, "reporting.processor").await.unwrap();
    let events: Vec<Value> = (0..50).map(|i| event(&format!("t{i}"), "page_view", "pages/turn/turn")).collect();
    let answer = send_until_stored(&app, &json!({"anon_id": "anon-turns", "batch": events})).await;
    assert_eq!(answer["accepted"], 50, "{answer}");
    let state = app.state.clone();
    let waiting =
        tokio::spawn(async move { wxshop::reporting::processor::pass(&state).await.map_err(|e| e.to_string()) });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "the pass waits for its turn");
    let unprocessed = app.scalar("SELECT COUNT(*) AS n FROM track_event WHERE processed = 0").await;
    assert_eq!(unprocessed, 50, "nothing processed while another instance holds the turn");
    holder.commit().await.unwrap();
    waiting.await.unwrap().unwrap();
    process(&app).await;
    let (_, stats) = app.get_auth("/admin/api/v1/stats/traffic", &admin).await;
    let page = stats["items"].as_array().unwrap().iter().find(|i| i["page"] == "pages/turn/turn").cloned();
    let page = page.expect("the page's aggregate");
    assert_eq!((page["pv"].as_i64(), page["uv"].as_i64()), (Some(50), Some(1)), "{page}");
}

/// The reporting volume: `WXSHOP_TEST_REPORT_EVENTS` events (default 100,000) from 1,000 users in batches, each
/// batch sent twice and every seventh five times, concurrently; every event is stored and counted once.
#[tokio::test]
async fn a_hundred_thousand_events_sent_twice_or_five_times_count_once() {
    let total: usize = std::env::var("WXSHOP_TEST_REPORT_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| {
            c.rate_limit.track_per_user = 0;
            c.rate_limit.track_per_ip = 0;
        })
        .await;
        let admin = app.admin_token("viewer").await;
        let users = 1_000;
        let per_batch = 100;
        let batches: Vec<(String, Value)> = (0..total / per_batch)
            .map(|b| {
                let user = b % users;
                let events: Vec<Value> = (0..per_batch)
                    .map(|i| {
                        let kind = if i % 4 == 0 { "click" } else { "page_view" };
                        event(&format!("b{b}-e{i}"), kind, &format!("pages/p{}/p", i % 10))
                    })
                    .collect();
                (format!("anon-user-{user:06}"), json!({"anon_id": format!("anon-user-{user:06}"), "batch": events}))
            })
            .collect();
        let mut sends = Vec::new();
        for (b, (_, body)) in batches.iter().enumerate() {
            let copies = if b % 7 == 0 { 5 } else { 2 };
            sends.extend(std::iter::repeat_n(body, copies));
        }
        let started = std::time::Instant::now();
        let (mut accepted, mut duplicates) = (0i64, 0i64);
        for chunk in sends.chunks(32) {
            let answers = futures_util::future::join_all(chunk.iter().map(|body| send_until_stored(&app, body))).await;
            for body in answers {
                accepted += body["accepted"].as_i64().unwrap();
                duplicates += body["duplicates"].as_i64().unwrap();
            }
        }
        eprintln!(
            "{}: {} sends, {total} events accepted in {:?} ({:.0} events/s including duplicates)",
            backend.name(),
            sends.len(),
            started.elapsed(),
            (accepted + duplicates) as f64 / started.elapsed().as_secs_f64()
        );
        assert_eq!(accepted, total as i64, "each event stored once");
        assert_eq!(accepted + duplicates, sends.len() as i64 * per_batch as i64);
        process(&app).await;
        let (_, stats) = app.get_auth("/admin/api/v1/stats/traffic", &admin).await;
        let pv: i64 = stats["items"].as_array().unwrap().iter().map(|i| i["pv"].as_i64().unwrap()).sum();
        let clicks: i64 = stats["items"].as_array().unwrap().iter().map(|i| i["clicks"].as_i64().unwrap()).sum();
        let recount_pv = app.scalar("SELECT COUNT(*) AS n FROM track_event WHERE type = 'page_view'").await;
        let recount_clicks = app.scalar("SELECT COUNT(*) AS n FROM track_event WHERE type = 'click'").await;
        assert_eq!((pv, clicks), (recount_pv, recount_clicks), "the aggregates equal a recount");
        assert_eq!(pv + clicks, total as i64);
        let uv: i64 = stats["items"].as_array().unwrap().iter().map(|i| i["uv"].as_i64().unwrap()).sum();
        let recount_uv = app
            .scalar("SELECT COUNT(*) AS n FROM (SELECT DISTINCT page, source FROM track_event WHERE type = 'page_view') AS v")
            .await;
        assert_eq!(uv, recount_uv);
    }
}

/// The server (its ingest writer) is killed while batches are in flight; the clients' retries are accepted, as new
/// or as duplicates, and every event is stored exactly once.
#[tokio::test]
async fn a_killed_ingest_writer_loses_nothing_the_clients_retry() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let listen = crate::helpers::closed_port_address();
        let base = format!("http://{listen}");
        let database = match &backend {
            Backend::ScaleOut { server_url, .. } => {
                let name = format!("wxshop_test_{}", uuid::Uuid::new_v4().simple());
                crate::helpers::create_mysql_database(server_url, &name).await;
                Some(crate::helpers::mysql_url(server_url, &name))
            }
            Backend::Embedded => None,
        };
        let start = || {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wxshop"));
            command
                .arg("serve")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("WXSHOP_DATA_DIR", dir.path())
                .env("WXSHOP_LISTEN", &listen)
                .env("WXSHOP_OPS_LISTEN", "127.0.0.1:0")
                .env("WXSHOP_LOG__FILTER", "warn")
                .env("WXSHOP_RATE_LIMIT__TRACK_PER_USER", "0")
                .env("WXSHOP_RATE_LIMIT__TRACK_PER_IP", "0")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if let Some(url) = &database {
                command.env("WXSHOP_DATABASE_URL", url);
            }
            command.spawn().unwrap()
        };
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        let mut server = start();
        crate::helpers::wait_until_up(&client, &format!("{base}/healthz")).await;
        let batches: Vec<Value> = (0..40)
            .map(|b| {
                let events: Vec<Value> =
                    (0..50).map(|i| event(&format!("k{b}-{i}"), "page_view", "pages/k/k")).collect();
                json!({"anon_id": format!("anon-kill-{b:04}"), "batch": events})
            })
            .collect();
        let url = format!("{base}/api/v1/track/batch");
        let first = batches.iter().map(|b| client.post(&url).json(b).send());
        let in_flight = tokio::spawn(futures_util::future::join_all(first));
        tokio::time::sleep(Duration::from_millis(30)).await;
        server.kill().unwrap();
        server.wait().unwrap();
        let acknowledged =
            in_flight.await.unwrap().into_iter().filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200)).count();
        eprintln!("{}: {acknowledged} of {} batches acknowledged before the kill", backend.name(), batches.len());
        let mut server = start();
        crate::helpers::wait_until_up(&client, &format!("{base}/healthz")).await;
        for batch in &batches {
            let answer: Value = client.post(&url).json(batch).send().await.unwrap().json().await.unwrap();
            assert_eq!(answer["accepted"].as_i64().unwrap() + answer["duplicates"].as_i64().unwrap(), 50, "{answer}");
        }
        let url = database.clone().unwrap_or_else(|| format!("sqlite://{}", dir.path().join("wxshop.db").display()));
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&url).await.unwrap();
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM track_event").fetch_one(&mut db).await.unwrap();
        assert_eq!(stored, 2_000, "every event once");
        drop(db);
        let _ = server.kill();
        let _ = server.wait();
        if let (Backend::ScaleOut { server_url, .. }, Some(url)) = (&backend, &database) {
            let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
            if let Ok(mut conn) = sqlx::AnyConnection::connect(server_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`")).execute(&mut conn).await;
            }
        }
    }
}
