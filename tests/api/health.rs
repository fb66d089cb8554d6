//! Liveness, readiness and metrics.

use crate::helpers::{
    backends, closed_port_address, eventually, spawn_app, spawn_app_with, stalling_server, Backend, BinaryServer,
};
use wxshop::config::DsnUrl;

#[tokio::test]
async fn healthz_and_readyz_are_ok_when_dependencies_are_up() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (status, body) = app.get_json("/healthz").await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
        // GET is answered before the middleware, HEAD by the router: the same status and type either way.
        let get = app.get("/healthz").await;
        assert_eq!(get.headers()["content-type"], "application/json");
        assert_eq!(get.text().await.unwrap(), r#"{"status":"ok"}"#);
        let head = app.client.head(app.url("/healthz")).send().await.unwrap();
        assert_eq!(
            (head.status().as_u16(), head.headers()["content-type"].to_str().unwrap()),
            (200, "application/json")
        );
        let post = app.client.post(app.url("/healthz")).send().await.unwrap();
        assert_eq!(post.status(), 405, "other methods still take the router");

        let (status, body) = app.get_json("/readyz").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["checks"]["database"], "ok");
        let expected_redis = if app.config.redis_url.is_some() { "ok" } else { "not_configured" };
        assert_eq!(body["checks"]["redis"], expected_redis);
    }
}

#[tokio::test]
async fn readyz_names_redis_when_redis_is_unreachable() {
    for backend in backends() {
        let redis_url = format!("redis://{}", closed_port_address());
        let app = spawn_app_with(&backend, |c| c.redis_url = Some(DsnUrl::new(redis_url))).await;
        let (status, body) = app.get_json("/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], "dependency_unavailable");
        assert_eq!(body["failed"], serde_json::json!(["redis"]));
        assert_eq!(body["checks"]["database"], "ok");
        // Liveness does not depend on anything.
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
}

#[tokio::test]
async fn readyz_answers_in_bounded_time_when_redis_stalls() {
    let (address, _server) = stalling_server().await;
    let app =
        spawn_app_with(&Backend::Embedded, |c| c.redis_url = Some(DsnUrl::new(format!("redis://{address}")))).await;
    let started = std::time::Instant::now();
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failed"], serde_json::json!(["redis"]));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "readiness hung on a stalled Redis");
}

#[tokio::test]
async fn readyz_names_the_database_when_it_is_unreachable() {
    for backend in backends() {
        let unreachable = match &backend {
            Backend::Embedded => "sqlite:///nonexistent-wxshop-dir/sub/wxshop.db?mode=rw".to_owned(),
            Backend::ScaleOut { .. } => format!("mysql://root@{}/wxshop", closed_port_address()),
        };
        let app = spawn_app_with(&backend, |c| {
            c.database_url = Some(DsnUrl::new(unreachable));
            c.db.migrate_on_start = false;
            c.db.seed_demo = Some(false);
            c.db.acquire_timeout_ms = 300;
        })
        .await;
        let (status, body) = app.get_json("/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], "dependency_unavailable");
        assert!(body["failed"].as_array().unwrap().contains(&"database".into()), "{body}");
        assert_eq!(app.get("/healthz").await.status(), 200);

        // A request that needs the database gets a clear 503, not a 500.
        let (status, body) = app.get_json("/api/v1/categories").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], "database_unavailable");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_app(&Backend::Embedded).await;
    let series = r#"http_requests_total{method="GET",route="/api/v1/products/{id}",status="404"}"#;
    let metrics = || async { app.client.get(format!("{}/metrics", app.ops_address)).send().await.unwrap() };
    let before = metric_value(&metrics().await.text().await.unwrap(), series);
    for id in [900_001, 900_002, 900_003] {
        assert_eq!(app.get(&format!("/api/v1/products/{id}")).await.status(), 404);
    }
    let response = metrics().await;
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    let after = metric_value(&text, series);
    assert!(after >= before + 3.0, "{series}: before {before}, after {after}");
    // The raw path never becomes a label.
    let raw_path_labels: Vec<&str> = text
        .lines()
        .filter_map(|line| {
            line.split_once("route=\"").and_then(|(_, rest)| rest.split_once('"')).map(|(route, _)| route)
        })
        .filter(|route| route.contains("900001"))
        .collect();
    assert!(raw_path_labels.is_empty(), "raw paths as labels: {raw_path_labels:?}");
    assert!(text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/products/{id}",le="#));
}

fn metric_value(text: &str, series: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(series).map(|v| v.trim().parse::<f64>().unwrap())).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_and_debug_endpoints_are_on_the_ops_listener_only() {
    let app = spawn_app(&Backend::Embedded).await;
    for path in ["/metrics", "/debug/tasks"] {
        assert_eq!(app.get(path).await.status(), 404, "{path} is not on the public port");
    }
    assert_eq!(app.get("/api/v1/products/1").await.status(), 200);
    let text = app.client.get(format!("{}/metrics", app.ops_address)).send().await.unwrap().text().await.unwrap();
    for series in [
        "db_pool_connections{state=\"idle\"}",
        "db_pool_max_connections",
        "tokio_alive_tasks",
        "tokio_global_queue_depth",
        "http_requests_in_flight",
        "process_resident_memory_bytes",
        "cache_requests_total{",
        "cache_loads_total{cache=\"order_list\"}",
        "cache_refreshes_total{cache=\"order_list\"}",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }
    let tasks = || async {
        let tasks: serde_json::Value =
            app.client.get(format!("{}/debug/tasks", app.ops_address)).send().await.unwrap().json().await.unwrap();
        tasks
    };
    let has_workers = |tasks: &serde_json::Value| {
        let workers: Vec<&str> =
            tasks["workers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
        workers.contains(&"orders.timeout_sweep") && workers.contains(&"flash_sale.handoff")
    };
    // A worker shows up once it has finished its first pass.
    let listed = eventually(std::time::Duration::from_secs(5), || async { has_workers(&tasks().await) }).await;
    let tasks = tasks().await;
    assert!(listed, "{tasks}");
    assert!(tasks["runtime"]["alive_tasks"].as_u64().unwrap() > 0, "{tasks}");
}

#[tokio::test]
async fn cpu_profiles_come_as_pprof_protobuf_or_a_flame_graph() {
    use pprof::protos::Message;
    let app = spawn_app(&Backend::Embedded).await;
    let ops = app.ops_address.clone();
    let busy = {
        let app_client = app.client.clone();
        let url = app.url("/api/v1/products?limit=50");
        tokio::spawn(async move {
            loop {
                let _ = app_client.get(&url).send().await;
            }
        })
    };
    let profile = app.client.get(format!("{ops}/debug/pprof/profile?seconds=2"));
    let (profile, second) = tokio::join!(profile.send(), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        app.client.get(format!("{ops}/debug/pprof/profile?seconds=1")).send().await.unwrap()
    });
    assert_eq!(second.status(), 409, "one profile at a time");
    let profile = profile.unwrap();
    assert_eq!(profile.status(), 200);
    let bytes = profile.bytes().await.unwrap();
    let decoded = pprof::protos::Profile::parse_from_bytes(&bytes).expect("a pprof protobuf");
    assert!(!decoded.sample.is_empty(), "samples were taken while the app served requests");

    let svg = app.client.get(format!("{ops}/debug/pprof/profile?seconds=1&format=svg")).send().await.unwrap();
    busy.abort();
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    assert!(svg.contains("<svg"), "{}", &svg[..svg.len().min(300)]);
    for bad in ["seconds=0", "seconds=61", "format=gif"] {
        let response = app.client.get(format!("{ops}/debug/pprof/profile?{bad}")).send().await.unwrap();
        assert_eq!(response.status(), 422, "{bad}");
    }
    assert_eq!(app.get("/debug/pprof/profile?seconds=1").await.status(), 404, "not on the public port");

    // This test process does not start jemalloc with `prof:true` (only the binary does).
    let heap = app.client.get(format!("{ops}/debug/pprof/heap?seconds=1")).send().await.unwrap();
    assert_eq!(heap.status(), 501);
    assert_eq!(heap.json::<serde_json::Value>().await.unwrap()["code"], "heap_profiling_unavailable");
}

/// The real binary's heap profile: gzipped pprof with symbolized stacks, one profile (CPU or heap) at a time.
#[tokio::test]
async fn heap_profiles_come_from_jemalloc_as_gzipped_pprof() {
    use pprof::protos::Message;
    use std::io::Read;
    // Sample every allocation (the default is one per 512 KiB) so that a short, light window has samples.
    let mut server = BinaryServer::start(&[("MALLOC_CONF", "lg_prof_sample:0")]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let ops = server.ops.clone();
    let busy = {
        let client = client.clone();
        let url = format!("{}/api/v1/products?limit=50", server.base);
        tokio::spawn(async move {
            loop {
                let _ = client.get(&url).send().await;
            }
        })
    };
    let heap = client.get(format!("{ops}/debug/pprof/heap?seconds=2")).send();
    let (heap, cpu) = tokio::join!(heap, async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        client.get(format!("{ops}/debug/pprof/profile?seconds=1")).send().await.unwrap()
    });
    busy.abort();
    assert_eq!(cpu.status(), 409, "no CPU profile while heap sampling is on");
    let heap = heap.unwrap();
    assert_eq!(heap.status(), 200);
    let gzipped = heap.bytes().await.unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..]).read_to_end(&mut bytes).expect("gzip");
    let profile = pprof::protos::Profile::parse_from_bytes(&bytes).expect("a pprof protobuf");
    let sample_types: Vec<&str> =
        profile.sample_type.iter().map(|t| profile.string_table[t.ty as usize].as_str()).collect();
    assert!(sample_types.contains(&"inuse_space"), "{sample_types:?}");
    assert!(!profile.sample.is_empty(), "allocations made while serving requests were sampled");
    assert!(
        profile.string_table.iter().any(|s| s.starts_with("wxshop::")),
        "stacks are symbolized down to wxshop's own functions"
    );
    for bad in ["seconds=0", "seconds=301"] {
        let response = client.get(format!("{ops}/debug/pprof/heap?{bad}")).send().await.unwrap();
        assert_eq!(response.status(), 422, "{bad}");
    }
    let public = client.get(format!("{}/debug/pprof/heap?seconds=1", server.base)).send().await.unwrap();
    assert_eq!(public.status(), 404, "not on the public port");
    server.stop().await;
}
