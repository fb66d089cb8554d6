//! Building and running the application: the same path for `wxshop serve` and for the tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::Router;
use tokio::net::TcpListener;

use crate::auth::revocation::Revocations;
use crate::auth::tokens::TokenKeys;
use crate::cache::layered::Layered;
use crate::cache::Cache;
use crate::config::{Config, Mode, Secret};
use crate::counters::Counters;
use crate::crypto::SecretBox;
use crate::db::Db;
use crate::flash_sale::gate::Gate;
use crate::kv::Redis;
use crate::simulator::wechat::WechatSimulator;
use crate::soldout::SoldOut;
use crate::state::{App, AppState};
use crate::wechat::WechatClient;
use crate::{catalog, http, simulator, telemetry};

pub struct Application {
    listener: TcpListener,
    router: Router,
    ops_listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects the backends, applies migrations and seeds (as configured) and binds the listener
    /// (`127.0.0.1:0` picks a free port, as the tests do).
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let config = Arc::new(config);
        let db = Db::connect_lazy(&config)?;
        if config.db.migrate_on_start {
            db.migrate().await?;
        }
        if config.seed_demo() {
            let seeded = catalog::seed::seed_demo_catalog(&db).await.context("seeding the demo catalog")?;
            if seeded {
                tracing::info!("seeded the demo catalog into an empty database");
            }
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {} (config key `listen`)", config.listen))?;
        let local_addr = listener.local_addr()?;
        let redis = Redis::from_config(&config)?;
        if config.mode == Mode::Dev {
            tracing::warn!(
                database = db.dialect.name(),
                redis = redis.is_some(),
                "running in DEV mode: demo data and development defaults are enabled; set WXSHOP_MODE=production for real traffic"
            );
        }
        let (wechat, wechat_simulator) = wechat_client(&config, local_addr, redis.clone())?;
        let (pay, pay_simulator) = payments(&config, local_addr, wechat.app_id())?;
        let storage = crate::uploads::storage::Storage::from_config(&config, loopback(local_addr))?;
        let own_base = format!("http://{}", loopback(local_addr));
        let cdn = crate::cdn::CdnClient::from_config(&config, &own_base)?;
        let cdn_simulator = config
            .cdn
            .simulated(config.mode)
            .then(|| simulator::cdn::CdnSimulator::new(crate::cdn::SIM_SECRET_ID, crate::cdn::SIM_SECRET_KEY));
        let data_key = config.data_key().map_err(|e| anyhow::anyhow!("invalid config key `auth.data_key`: {e}"))?;
        let secret_box =
            SecretBox::new(&data_key).map_err(|e| anyhow::anyhow!("invalid config key `auth.data_key`: {e}"))?;
        let refresh_key = crate::crypto::hmac_sha256(&data_key, b"wxshop refresh-token successor key").to_vec();

        let (api, openapi) = http::api_router().split_for_parts();
        let openapi_json = Bytes::from(http::document::render(openapi).context("rendering the OpenAPI document")?);
        let metrics = telemetry::prometheus();
        // Counters the alert rules watch with increase(): present from the start, so their first increment counts.
        metrics::counter!("flash_sale_handoff_parked_total").increment(0);
        metrics::counter!("db_breaker_opened_total").increment(0);
        metrics::counter!("background_item_stuck_total", "queue" => "orders.timeout_sweep").increment(0);
        metrics::counter!("pay_anomalies_total", "kind" => "amount_mismatch").increment(0);
        metrics::counter!("pay_refund_abnormal_total").increment(0);
        metrics::counter!("pay_refund_after_cancel_total").increment(0);
        metrics::counter!("events_dead_total").increment(0);
        metrics::counter!("cdn_purge_parked_total").increment(0);
        metrics::gauge!("cdn_purge_oldest_age_seconds").set(0.0);
        metrics::gauge!("flag_snapshot_age_seconds").set(0.0);
        for outcome in ["unknown_serial", "undecryptable"] {
            metrics::counter!("pay_notifications_total", "outcome" => outcome).increment(0);
        }
        spawn_metrics_upkeep(metrics.clone());
        let redis_for_gate = redis.clone();
        let ingest = crate::reporting::ingest::Ingest::start(db.clone(), config.reporting.queue_capacity as usize);
        let state = AppState(Arc::new(App {
            config: config.clone(),
            revocations: Revocations::new(redis.clone(), &db).await,
            db,
            cache: Cache::new(redis.clone()),
            order_cache: Layered::new(
                "order",
                redis.clone(),
                Duration::from_millis(config.orders.local_cache_ttl_ms),
                config.orders.local_cache_mib * 1024 * 1024,
            ),
            order_lists: Layered::new(
                "order_list",
                redis.clone(),
                Duration::from_millis(config.orders.list_local_cache_ttl_ms),
                config.orders.list_cache_mib * 1024 * 1024,
            ),
            flags: crate::flags::Flags::new(
                config.flags.stale_after_ms,
                Some(
                    config.flags.bootstrap_file.clone().unwrap_or_else(|| config.data_dir.join("flags-snapshot.json")),
                ),
            ),
            counters: Counters::new(redis.clone()),
            redis,
            tokens: TokenKeys::new(&config.auth),
            secret_box,
            refresh_key,
            dummy_password_hash: tokio::sync::OnceCell::new(),
            wechat,
            events: crate::events::bus::from_config(&config)?,
            events_wake: tokio::sync::Notify::new(),
            ingest,
            reporting_wake: tokio::sync::Notify::new(),
            pay,
            storage,
            cdn,
            flash_gate: Gate::new(redis_for_gate),
            flash_wake: tokio::sync::Notify::new(),
            sold_out: SoldOut::new(Duration::from_millis(config.flash_sale.sold_out_recheck_ms)),
            metrics,
            heartbeats: crate::ops::Heartbeats::default(),
            openapi_json,
        }));
        crate::flags::sync::load_at_start(&state).await;
        let mut router = api.merge(http::docs_ui());
        router = simulator::mount(router, wechat_simulator, pay_simulator, cdn_simulator);
        let mut router = http::with_middleware(router.with_state(state.clone()), &config, &state.db);
        if config.storage.provider == crate::uploads::config::Provider::Local {
            // The embedded bucket: storage, not API; outside the API's middleware and body limit.
            router = router.merge(crate::uploads::files::router(state.clone()));
        }
        let ops_listener = TcpListener::bind(config.ops_listen)
            .await
            .with_context(|| format!("binding {} (config key `ops_listen`)", config.ops_listen))?;
        Ok(Application { listener, router, ops_listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The ops listener's address (`/metrics`, `/debug/*`).
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes; then stops accepting, gives in-flight requests up to
    /// `http.shutdown_timeout_ms` to finish, and closes the pools.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { listener, router, ops_listener, state } = self;
        let grace = state.config.shutdown_timeout();
        // Background work of the same binary, stopped with the server.
        let (stop_workers, workers_stop) = tokio::sync::watch::channel(false);
        let in_scope = |work| crate::db::guard::scope(state.db.write_guard(), work);
        let sweeper = tokio::spawn(in_scope(crate::orders::worker::run(state.clone(), workers_stop.clone())));
        let handoff = tokio::spawn(crate::db::guard::scope(
            state.db.write_guard(),
            crate::flash_sale::handoff::run(state.clone(), workers_stop.clone()),
        ));
        let prober = tokio::spawn(crate::ops::run_prober(state.clone(), workers_stop.clone()));
        let processor = tokio::spawn(crate::db::guard::scope(
            state.db.write_guard(),
            crate::reporting::processor::run(state.clone(), workers_stop.clone()),
        ));
        let relay = tokio::spawn(crate::db::guard::scope(
            state.db.write_guard(),
            crate::events::relay::run(state.clone(), workers_stop.clone()),
        ));
        #[cfg(feature = "kafka")]
        let kafka_consumers: Vec<_> = if matches!(state.events.transport, crate::events::bus::Transport::Kafka(_)) {
            crate::events::consumers::Consumer::ALL
                .into_iter()
                .map(|consumer| {
                    tokio::spawn(crate::db::guard::scope(
                        state.db.write_guard(),
                        crate::events::kafka::run_consumer(state.clone(), consumer, workers_stop.clone()),
                    ))
                })
                .collect()
        } else {
            Vec::new()
        };
        let flags_sync = tokio::spawn(crate::flags::sync::run(state.clone(), workers_stop.clone()));
        let uploads_sweep = tokio::spawn(crate::db::guard::scope(
            state.db.write_guard(),
            crate::uploads::worker::run(state.clone(), workers_stop.clone()),
        ));
        let cdn_purger = tokio::spawn(crate::db::guard::scope(
            state.db.write_guard(),
            crate::cdn::worker::run(state.clone(), workers_stop.clone()),
        ));
        let payments = tokio::spawn(crate::db::guard::scope(
            state.db.write_guard(),
            crate::payments::worker::run(state.clone(), workers_stop.clone()),
        ));
        let header_timeout = Duration::from_millis(state.config.http.header_read_timeout_ms);
        let mut ops_stop = workers_stop;
        let ops = tokio::spawn(http::serve::serve(
            ops_listener,
            crate::ops::router(state.clone()),
            http::serve::Bypass::None,
            header_timeout,
            async move {
                let _ = ops_stop.changed().await;
            },
        ));
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = http::serve::serve(listener, router, http::serve::Bypass::Healthz, header_timeout, async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing in-flight requests");
            let _ = stopping_tx.send(());
        });
        let deadline = async move {
            // Only starts counting once shutdown has begun; a dropped sender means the server ended first.
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = server => {},
            () = deadline => tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests did not finish in time; closing them"),
        }
        let _ = stop_workers.send(true);
        if tokio::time::timeout(Duration::from_secs(5), sweeper).await.is_err() {
            tracing::warn!("the order sweep did not stop in time");
        }
        if tokio::time::timeout(Duration::from_secs(5), handoff).await.is_err() {
            tracing::warn!("the flash-sale hand-off did not stop in time");
        }
        if tokio::time::timeout(Duration::from_secs(5), processor).await.is_err() {
            tracing::warn!("the report processor did not stop in time");
        }
        if tokio::time::timeout(Duration::from_secs(35), relay).await.is_err() {
            tracing::warn!("the event relay did not stop in time");
        }
        #[cfg(feature = "kafka")]
        for consumer in kafka_consumers {
            let _ = tokio::time::timeout(Duration::from_secs(5), consumer).await;
        }
        for (name, worker) in [("upload sweep", uploads_sweep), ("CDN purger", cdn_purger), ("flag sync", flags_sync)] {
            if tokio::time::timeout(Duration::from_secs(15), worker).await.is_err() {
                tracing::warn!("the {name} did not stop in time");
            }
        }
        if tokio::time::timeout(Duration::from_secs(5), payments).await.is_err() {
            tracing::warn!("the payment worker did not stop in time");
        }
        if tokio::time::timeout(Duration::from_secs(5), prober).await.is_err() {
            tracing::warn!("the dependency prober did not stop in time");
        }
        if tokio::time::timeout(Duration::from_secs(5), ops).await.is_err() {
            tracing::warn!("the ops listener did not stop in time");
        }
        state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `addr`, with an unspecified IP replaced by loopback (for URLs this server gives to itself: the simulators, the
/// embedded bucket).
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// The WeChat client: against the configured app, or, in dev mode without one, against the simulator mounted on
/// this server's own port (returned, to be mounted).
fn wechat_client(
    config: &Config,
    local_addr: SocketAddr,
    redis: Option<Redis>,
) -> anyhow::Result<(WechatClient, Option<Arc<WechatSimulator>>)> {
    let timeout = Duration::from_millis(config.wechat.timeout_ms);
    if !config.wechat_simulated() {
        let app_id = config.wechat.app_id.as_deref().unwrap_or_default();
        let secret = config.wechat.app_secret.clone().unwrap_or_else(|| Secret::new(""));
        return Ok((WechatClient::new(&config.wechat.api_base, app_id, secret, timeout, redis)?, None));
    }
    let host = loopback(local_addr);
    let base = format!("http://{host}{}/wechat", simulator::MOUNT_PATH);
    tracing::warn!(
        api_base = %base,
        app_id = simulator::SIM_APP_ID,
        "WeChat SIMULATOR in use: no wechat.app_id configured, logins accept simulator codes (NAME or NAME:NONCE). Development only."
    );
    let client =
        WechatClient::new(&base, simulator::SIM_APP_ID, Secret::new(simulator::SIM_APP_SECRET), timeout, redis)?;
    let simulator = Arc::new(WechatSimulator::new(simulator::SIM_APP_ID, simulator::SIM_APP_SECRET));
    Ok((client, Some(simulator)))
}

/// The WeChat Pay client: against `pay.api_base` with the merchant's keys, or, in dev mode without `pay.mch_id`,
/// against the simulator mounted on this server's own port (returned, to be mounted), with its keys.
fn payments(
    config: &Config,
    local_addr: SocketAddr,
    app_id: &str,
) -> anyhow::Result<(crate::payments::Payments, Option<Arc<simulator::pay::PaySimulator>>)> {
    let keys = Arc::new(config.pay.load_keys(config.mode).map_err(|e| anyhow::anyhow!("{e}"))?);
    let timeout = Duration::from_millis(config.pay.timeout_ms);
    let host = loopback(local_addr);
    let own_notify = format!("http://{host}/api/v1/payments/wechat/notify");
    let notify_url = config.pay.notify_url.clone().unwrap_or(own_notify);
    if !config.pay.simulated(config.mode) {
        let client = crate::payments::client::PayClient::new(&config.pay.api_base, keys.clone(), timeout)?;
        let pay = crate::payments::Payments { client, app_id: app_id.to_owned(), notify_url, keys };
        return Ok((pay, None));
    }
    let base = format!("http://{host}{}/pay", simulator::MOUNT_PATH);
    tracing::warn!(
        api_base = %base,
        mch_id = simulator::pay::keys::MCH_ID,
        "WeChat Pay SIMULATOR in use: no pay.mch_id configured, payments are simulated (pay through POST {base}/cashier). Development only."
    );
    let client = crate::payments::client::PayClient::new(&base, keys.clone(), timeout)?;
    let simulator = simulator::pay::PaySimulator::new(app_id, &base);
    Ok((crate::payments::Payments { client, app_id: app_id.to_owned(), notify_url, keys }, Some(simulator)))
}

/// Histograms buffer samples until rendered; drain them even when nobody scrapes.
fn spawn_metrics_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
