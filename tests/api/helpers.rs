//! `spawn_app()` → `TestApp`: the real application on port 0 with a database of its own.
//!
//! Every test runs on each backend of [`backends()`]: the embedded one always (SQLite file in a temp dir, no
//! Redis), and MariaDB/MySQL + Redis when `WXSHOP_TEST_DATABASE_URL` (a server URL; each test creates and drops
//! its own uuid-named database) and `WXSHOP_TEST_REDIS_URL` (keys under a per-test prefix) are set.

use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;
use wxshop::config::{Config, DsnUrl};
use wxshop::startup::Application;
use wxshop::state::AppState;

#[derive(Debug, Clone)]
pub enum Backend {
    Embedded,
    ScaleOut { server_url: String, redis_url: Option<String> },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded (sqlite, in-process)",
            Backend::ScaleOut { .. } => "scale-out (mysql + redis)",
        }
    }

    pub fn is_scale_out(&self) -> bool {
        matches!(self, Backend::ScaleOut { .. })
    }
}

/// The backends this run covers.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Embedded];
    if let Some(server_url) = std::env::var("WXSHOP_TEST_DATABASE_URL").ok().filter(|s| !s.is_empty()) {
        let redis_url = std::env::var("WXSHOP_TEST_REDIS_URL").ok().filter(|s| !s.is_empty());
        all.push(Backend::ScaleOut { server_url, redis_url });
    }
    all
}

/// The scale-out backend, when this run has one.
pub fn scale_out_backend() -> Option<Backend> {
    backends().into_iter().find(Backend::is_scale_out)
}

pub struct TestApp {
    pub address: String,
    /// The ops listener (`/metrics`, `/debug/*`).
    pub ops_address: String,
    pub client: reqwest::Client,
    pub config: Config,
    /// The running application's state: its pools, cache and Redis, for arranging and inspecting.
    pub state: AppState,
    _data_dir: tempfile::TempDir,
    cleanup: Cleanup,
}

/// What a test leaves behind and its `Drop` removes.
#[derive(Default, Clone)]
struct Cleanup {
    mysql: Option<(String, String)>,
    redis: Option<(String, String)>,
}

/// Starts the application on `backend` with the test defaults.
pub async fn spawn_app(backend: &Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the application on `backend` after `customize` has adjusted the configuration.
pub async fn spawn_app_with(backend: &Backend, customize: impl FnOnce(&mut Config)) -> TestApp {
    init_test_logging();
    eprintln!("backend: {}", backend.name());
    let data_dir = tempfile::tempdir().expect("temp dir");
    let test_id = uuid::Uuid::new_v4().simple().to_string();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ops_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_path_buf(),
        redis_prefix: format!("wxshop-test:{test_id}:"),
        ..Config::default()
    };
    config.db.seed_demo = Some(true);
    config.db.acquire_timeout_ms = 5_000;
    let mut cleanup = Cleanup::default();
    if let Backend::ScaleOut { server_url, redis_url } = backend {
        let database = format!("wxshop_test_{test_id}");
        create_mysql_database(server_url, &database).await;
        config.database_url = Some(DsnUrl::new(mysql_url(server_url, &database)));
        cleanup.mysql = Some((server_url.clone(), database));
        if let Some(redis_url) = redis_url {
            config.redis_url = Some(DsnUrl::new(redis_url.clone()));
            cleanup.redis = Some((redis_url.clone(), config.redis_prefix.clone()));
        }
    }
    customize(&mut config);
    config.validate().expect("test config is valid");

    let (address, ops_address, state) = start(config.clone()).await;
    TestApp { address, ops_address, client: http_client(), config, state, _data_dir: data_dir, cleanup }
}

async fn start(config: Config) -> (String, String, AppState) {
    let app = Application::build(config).await.expect("application starts");
    let address = format!("http://{}", app.local_addr());
    let ops_address = format!("http://{}", app.ops_addr());
    let state = app.state();
    tokio::spawn(app.run_until(std::future::pending()));
    (address, ops_address, state)
}

/// The tests' client. It drops a pooled connection after 5 s idle: the server closes idle keep-alive connections
/// after `http.header_read_timeout_ms` (10 s), and a client that reuses one just as the server closes it sees the
/// request fail (`IncompleteMessage`: seen once, in the 20,000-claim coupon test on MariaDB; the likeliest cause,
/// not a proven one).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

impl TestApp {
    /// Another instance of the same deployment: same database, same Redis and key prefix, its own port and
    /// process-local state. The first app owns the clean-up.
    pub async fn spawn_peer(&self) -> TestApp {
        self.spawn_peer_with(|_| {}).await
    }

    /// [`spawn_peer`](Self::spawn_peer) with an adjusted configuration.
    pub async fn spawn_peer_with(&self, customize: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        config.db.seed_demo = Some(false);
        customize(&mut config);
        let (address, ops_address, state) = start(config.clone()).await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        TestApp {
            address,
            ops_address,
            client: http_client(),
            config,
            state,
            _data_dir: data_dir,
            cleanup: Cleanup::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    /// GET and parse the JSON body, returning the status too.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or_else(|e| panic!("GET {path}: body is not JSON: {e}"));
        (status, body)
    }
}

impl Drop for TestApp {
    /// Drops the test's database and Redis keys on a detached thread. Not joined: `DROP DATABASE` waits for the
    /// app's open transactions, whose tasks run on this test's runtime, which a join would block (a deadlock).
    /// Once the test returns its runtime stops, the pool closes and the drop proceeds; `scripts/test.sh` sweeps up
    /// whatever a finished test binary left behind.
    fn drop(&mut self) {
        let cleanup = self.cleanup.clone();
        if cleanup.mysql.is_none() && cleanup.redis.is_none() {
            return;
        }
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                if let Some((server_url, database)) = cleanup.mysql {
                    if let Ok(mut conn) = sqlx::AnyConnection::connect(&server_url).await {
                        let _ = sqlx::query("SET SESSION lock_wait_timeout = 60").execute(&mut conn).await;
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{database}`")).execute(&mut conn).await;
                    }
                }
                if let Some((redis_url, prefix)) = cleanup.redis {
                    let _ = delete_redis_prefix(&redis_url, &prefix).await;
                }
            });
        });
    }
}

/// `server_url` with its database path replaced by `database`.
pub fn mysql_url(server_url: &str, database: &str) -> String {
    let mut url = url::Url::parse(server_url).expect("WXSHOP_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

pub async fn create_mysql_database(server_url: &str, database: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test MySQL server at WXSHOP_TEST_DATABASE_URL: {e}"));
    sqlx::query(&format!("CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let _ = conn.close().await;
}

async fn delete_redis_prefix(redis_url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await?;
    if !keys.is_empty() {
        redis::cmd("DEL").arg(keys).query_async::<()>(&mut conn).await?;
    }
    Ok(())
}

/// `TEST_LOG=1` shows the application's logs in test output.
fn init_test_logging() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt().with_env_filter("info,sqlx=warn").with_test_writer().try_init();
    }
}

/// A TCP server that accepts connections and never answers: a dependency that stalls.
pub async fn stalling_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handle = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (address, handle)
}

/// An address on which nothing listens (bound, then released).
pub fn closed_port_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}

/// A signed-in mini-program user.
#[derive(Debug, Clone)]
pub struct UserSession {
    pub user_id: i64,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    /// Sends `method path` with an optional JSON body and bearer token; returns status, headers and JSON body
    /// (`Value::Null` when the body is empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {bytes:?}"))
        };
        (status, headers, body)
    }

    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
        let (status, _, body) = self.call(reqwest::Method::POST, path, Some(body), token).await;
        (status, body)
    }

    /// [`get_auth`](Self::get_auth) with owned arguments, for futures that outlive the caller's borrows.
    pub async fn get_auth_owned(&self, path: String, token: String) -> (u16, Value) {
        self.get_auth(&path, &token).await
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> (u16, Value) {
        let (status, _, body) = self.call(reqwest::Method::GET, path, None, Some(token)).await;
        (status, body)
    }

    /// Logs in through the WeChat simulator with `code` (`NAME` or `NAME:NONCE`).
    pub async fn login(&self, code: &str) -> UserSession {
        let (status, body) = self.post("/api/v1/auth/wechat/login", &serde_json::json!({ "code": code }), None).await;
        assert_eq!(status, 200, "login {code}: {body}");
        UserSession {
            user_id: body["user"]["id"].as_i64().unwrap(),
            access_token: body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Creates an admin account with `role` (directly, as `wxshop admin create` does) and logs it in over HTTP.
    /// Returns the access token.
    pub async fn admin_token(&self, role: &str) -> String {
        let username = format!("{role}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        wxshop::admins::service::create_admin(&self.state.db, &username, role, "a-long-test-password")
            .await
            .expect("create admin");
        let body = serde_json::json!({ "username": username, "password": "a-long-test-password" });
        let (status, body) = self.post("/admin/api/v1/auth/login", &body, None).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A new address for the user with `token` (`shopping::address`); returns its id.
    pub async fn address_id(&self, token: &str) -> i64 {
        let (status, address) = self.post("/api/v1/addresses", &crate::shopping::address("甲"), Some(token)).await;
        assert_eq!(status, 201, "{address}");
        address["id"].as_i64().unwrap()
    }

    /// Calls counted by the mounted WeChat simulator, per API.
    pub async fn simulator_calls(&self, api: &str) -> u64 {
        let (_, body) = self.get_json("/__simulator/wechat/_stats").await;
        body[api].as_u64().unwrap()
    }
}

/// Waits (at most 15 s) until `url` answers at all: a server process started by a test is up.
pub async fn wait_until_up(client: &reqwest::Client, url: &str) {
    for _ in 0..300 {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}

/// Polls `check` until it holds or `within` has passed; returns whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A user made directly in the database (for bursts of thousands), with an access token and an address.
#[derive(Debug, Clone)]
pub struct Buyer {
    pub user_id: i64,
    pub token: String,
    pub address_id: i64,
}

impl TestApp {
    /// `n` users with one address each, inserted in bulk, with access tokens signed by this deployment's key.
    pub async fn buyers(&self, n: usize) -> Vec<Buyer> {
        let seeded = wxshop::demo_data::seed_load_test_data(&self.state.db, "wxtest", n, 0).await.expect("seed users");
        let now = wxshop::auth::tokens::now_secs();
        (0..n as i64)
            .map(|i| Buyer {
                user_id: seeded.first_user_id + i,
                token: self
                    .state
                    .tokens
                    .issue(seeded.first_user_id + i, wxshop::auth::USER_AUDIENCE, 0, None, now)
                    .unwrap()
                    .token,
                address_id: seeded.first_address_id + i,
            })
            .collect()
    }

    /// A scalar from the database (`SELECT COUNT(*) AS n ...` and the like; the column must be named `n`).
    pub async fn scalar(&self, sql: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sql).fetch_one(&self.state.db.pool).await.unwrap().try_get("n").unwrap()
    }

    /// POST with an `Idempotency-Key`; returns status, headers and JSON body.
    pub async fn post_keyed(
        &self,
        path: &str,
        body: &Value,
        token: &str,
        key: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

/// The real `wxshop serve` process on the embedded backend with JSON logs, its log lines collected as they come.
pub struct BinaryServer {
    pub child: std::process::Child,
    /// `http://address` of the public and the ops listener.
    pub base: String,
    pub ops: String,
    /// Its log lines as written (each one checked to be JSON).
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    _data_dir: tempfile::TempDir,
}

impl BinaryServer {
    /// Starts the binary with `env` on top of a clean environment; waits for its "listening" line.
    pub fn start(env: &[(&str, &str)]) -> BinaryServer {
        use std::io::BufRead;
        let data_dir = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wxshop"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WXSHOP_LOG__FORMAT", "json")
            .env("WXSHOP_LISTEN", "127.0.0.1:0")
            .env("WXSHOP_OPS_LISTEN", "127.0.0.1:0")
            .env("WXSHOP_DATA_DIR", data_dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (addresses_tx, addresses_rx) = std::sync::mpsc::channel();
        let reader = {
            let lines = lines.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                    let entry: Value = serde_json::from_str(&line).expect("every log line is JSON");
                    if let (Some(public), Some(ops)) = (entry["address"].as_str(), entry["ops_address"].as_str()) {
                        let _ = addresses_tx.send((public.to_owned(), ops.to_owned()));
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let (public, ops) = addresses_rx.recv_timeout(Duration::from_secs(30)).expect("the binary starts");
        BinaryServer {
            child,
            base: format!("http://{public}"),
            ops: format!("http://{ops}"),
            lines,
            reader: Some(reader),
            _data_dir: data_dir,
        }
    }

    /// The log lines so far, parsed.
    pub fn log_entries(&self) -> Vec<Value> {
        self.lines.lock().unwrap().iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// SIGTERM, then waits (at most 10 s) for a clean exit and for the last log line.
    pub async fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status:?}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "did not stop within 10 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
