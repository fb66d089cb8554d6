//! The `wxshop` binary's configuration handling: layering, redaction, errors that name the key.

use std::process::Command;

fn wxshop() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxshop"));
    // Start from a clean slate: no inherited WXSHOP_* and no wxshop.toml in the working directory.
    for (key, _) in std::env::vars() {
        if key.starts_with("WXSHOP_") {
            command.env_remove(key);
        }
    }
    // Commands that serve must not collide on the default ops port.
    command.env("WXSHOP_OPS_LISTEN", "127.0.0.1:0");
    command.current_dir(std::env::temp_dir());
    command
}

/// A merchant's key files for production starts (keys generated once per test run, never the simulator's).
fn merchant_keys() -> &'static std::path::Path {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let merchant = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let platform = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        std::fs::write(dir.path().join("apiclient_key.pem"), merchant.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes())
            .unwrap();
        let public = platform.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        std::fs::write(dir.path().join("pub_key.pem"), public).unwrap();
        std::fs::write(dir.path().join("simulator_key.pem"), wxshop::simulator::pay::keys::MERCHANT_KEY_PEM).unwrap();
        dir
    })
    .path()
}

/// Settings a production start needs: real secrets, a WeChat app and a WeChat Pay merchant.
fn production_env() -> Vec<(&'static str, String)> {
    let keys = merchant_keys();
    let path = |name: &str| keys.join(name).to_str().unwrap().to_owned();
    vec![
        ("WXSHOP_MODE", "production".into()),
        ("WXSHOP_AUTH__JWT_SECRET", "a-production-jwt-secret-that-is-long-enough".into()),
        ("WXSHOP_AUTH__DATA_KEY", "cHJvZHVjdGlvbi1kYXRhLWtleS0zMi1ieXRlcy1sb24=".into()),
        ("WXSHOP_WECHAT__APP_ID", "wx0123456789abcdef".into()),
        ("WXSHOP_WECHAT__APP_SECRET", "0123456789abcdef0123456789abcdef".into()),
        ("WXSHOP_PAY__MCH_ID", "1900000109".into()),
        ("WXSHOP_PAY__MERCHANT_SERIAL", "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C".into()),
        ("WXSHOP_PAY__MERCHANT_KEY_FILE", path("apiclient_key.pem")),
        ("WXSHOP_PAY__API_V3_KEY", "the-production-api-v3-key-32byte".into()),
        ("WXSHOP_PAY__PUBLIC_KEY_ID", "PUB_KEY_ID_0119000001092026120100000000000001".into()),
        ("WXSHOP_PAY__PUBLIC_KEY_FILE", path("pub_key.pem")),
        ("WXSHOP_PAY__NOTIFY_URL", "https://shop.example/api/v1/payments/wechat/notify".into()),
    ]
}

#[test]
fn config_prints_layered_values_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wxshop.toml");
    std::fs::write(&file, "listen = \"0.0.0.0:9000\"\n[db]\nmax_connections = 7\nslow_statement_ms = 250\n").unwrap();
    let output = wxshop()
        .args(["--config", file.to_str().unwrap(), "config"])
        .env("WXSHOP_DATABASE_URL", "mysql://shop:hunter2@10.0.0.5:3306/shop")
        .env("WXSHOP_DB__MAX_CONNECTIONS", "12")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let config: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(config["listen"].as_str(), Some("0.0.0.0:9000"), "from the file");
    assert_eq!(config["db"]["max_connections"].as_integer(), Some(12), "the environment wins over the file");
    assert_eq!(config["db"]["slow_statement_ms"].as_integer(), Some(250));
    assert_eq!(config["database_url"].as_str(), Some("mysql://shop:***@10.0.0.5:3306/shop"));
    assert!(!text.contains("hunter2"));
}

#[test]
fn config_file_from_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.toml");
    std::fs::write(
        &file,
        "mode = \"production\"\n[auth]\njwt_secret = \"from-the-file-from-the-file-from-the-file\"\n",
    )
    .unwrap();
    let mut command = wxshop();
    command.arg("config").env("WXSHOP_CONFIG", &file);
    for (key, value) in production_env().iter().filter(|(k, _)| *k != "WXSHOP_MODE" && *k != "WXSHOP_AUTH__JWT_SECRET")
    {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.contains("mode = \"production\""));
    assert!(!printed.contains("the-production-api-v3-key-32byte"), "the API v3 key is redacted:\n{printed}");
}

#[test]
fn invalid_config_stops_start_up_naming_the_key() {
    for (key, value, named) in [
        ("WXSHOP_DB__MAX_CONNECTIONS", "lots", "db.max_connections"),
        ("WXSHOP_LISTEN", "not-an-address", "listen"),
        ("WXSHOP_MODE", "staging", "mode"),
        ("WXSHOP_DATABASE_URL", "postgres://localhost/shop", "database_url"),
        ("WXSHOP_REDIS_URL", "http://localhost:6379", "redis_url"),
        ("WXSHOP_HTTP__REQUEST_TIMEOUT_MS", "0", "http.request_timeout_ms"),
        ("WXSHOP_HTTP__CORS_ORIGINS", "[\"shop.example\"]", "http.cors_origins"),
        ("WXSHOP_NO_SUCH_KEY", "1", "no_such_key"),
    ] {
        let output = wxshop().arg("serve").env(key, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{key}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{key}={value}: {stderr}");
    }
    let output = wxshop().args(["--config", "/nonexistent/wxshop.toml", "config"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn production_mode_refuses_demo_data() {
    let output = wxshop().arg("serve").envs(production_env()).env("WXSHOP_DB__SEED_DEMO", "true").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("db.seed_demo"), "{stderr}");
}

#[test]
fn migrate_and_seed_demo_subcommands_work_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrate = wxshop().arg("migrate").env("WXSHOP_DATA_DIR", &data).output().unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    assert!(data.join("wxshop.db").exists());
    for _ in 0..2 {
        let seed = wxshop().arg("seed-demo").env("WXSHOP_DATA_DIR", &data).output().unwrap();
        assert!(seed.status.success(), "{}", String::from_utf8_lossy(&seed.stderr));
    }
}

/// `dev-tokens` prints one verifiable token per seeded user with an address, and is refused in production mode.
#[test]
fn dev_tokens_prints_tokens_for_seeded_buyers_and_is_refused_in_production() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let seed = wxshop().args(["seed-demo", "--users", "3"]).env("WXSHOP_DATA_DIR", &data).output().unwrap();
    assert!(seed.status.success(), "{}", String::from_utf8_lossy(&seed.stderr));
    let out = wxshop().args(["dev-tokens", "--count", "5"]).env("WXSHOP_DATA_DIR", &data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let keys = wxshop::auth::tokens::TokenKeys::new(&wxshop::config::Config::default().auth);
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        let token = keys.verify(parts[1], wxshop::auth::USER_AUDIENCE, wxshop::auth::tokens::now_secs()).unwrap();
        assert_eq!(token.subject.to_string(), parts[0]);
        assert!(parts[2].parse::<i64>().is_ok(), "{line}");
    }
    let refused = wxshop().args(["dev-tokens"]).envs(production_env()).output().unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused in production"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// Statements slower than `db.slow_statement_ms` are logged at warn with their SQL text; faster ones are not.
#[test]
fn slow_statements_are_logged_at_warn_with_their_sql() {
    let slow_lines = |threshold_ms: &str| -> Vec<serde_json::Value> {
        let dir = tempfile::tempdir().unwrap();
        let output = wxshop()
            .arg("seed-demo")
            .env("WXSHOP_DATA_DIR", dir.path())
            .env("WXSHOP_DB__SLOW_STATEMENT_MS", threshold_ms)
            .env("WXSHOP_LOG__FORMAT", "json")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with("slow statement")))
            .collect()
    };
    let everything_is_slow = slow_lines("0");
    let insert = everything_is_slow
        .iter()
        .find(|e| e["summary"].as_str().is_some_and(|s| s.contains("INSERT INTO product")))
        .expect("the product INSERT is logged as slow");
    assert_eq!(insert["level"], "WARN");
    assert_eq!(insert["target"], "sqlx::query");
    assert!(slow_lines("60000").is_empty(), "nothing is slower than a minute");
}

#[test]
fn production_mode_refuses_weak_or_default_secrets_and_the_simulator() {
    for (key, value, named) in [
        ("WXSHOP_AUTH__JWT_SECRET", "wxshop-dev-jwt-secret-not-for-production-use", "auth.jwt_secret"),
        ("WXSHOP_AUTH__JWT_SECRET", "too-short", "auth.jwt_secret"),
        ("WXSHOP_AUTH__DATA_KEY", "d3hzaG9wLWRldi1kYXRhLWtleS1ub3QtZm9yLXByb2Q=", "auth.data_key"),
        ("WXSHOP_AUTH__DATA_KEY", "c2hvcnQ=", "auth.data_key"),
        ("WXSHOP_PAY__API_V3_KEY", "not-32-bytes", "pay.api_v3_key"),
        ("WXSHOP_PAY__API_V3_KEY", wxshop::simulator::pay::keys::API_V3_KEY, "pay.api_v3_key"),
        ("WXSHOP_PAY__MERCHANT_KEY_FILE", "/nonexistent/apiclient_key.pem", "pay.merchant_key_file"),
        (
            "WXSHOP_PAY__MERCHANT_KEY_FILE",
            merchant_keys().join("pub_key.pem").to_str().unwrap(),
            "pay.merchant_key_file",
        ),
        (
            "WXSHOP_PAY__MERCHANT_KEY_FILE",
            merchant_keys().join("simulator_key.pem").to_str().unwrap(),
            "pay.merchant_key_file",
        ),
        ("WXSHOP_PAY__MCH_ID", "", "pay.mch_id"),
    ] {
        let output = wxshop().arg("serve").envs(production_env()).env(key, value).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{key}={value}: {stderr}");
        assert!(stderr.contains(named), "{key}={value}: {stderr}");
        assert!(!stderr.contains("BEGIN"), "no key material in the message: {stderr}");
    }
    // No WeChat app: dev mode would use the simulator; production refuses to start.
    let output = wxshop()
        .arg("serve")
        .envs(production_env().into_iter().filter(|(k, _)| !k.starts_with("WXSHOP_WECHAT")))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("wechat.app_id"));
    let output = wxshop().args(["simulator", "--listen", "127.0.0.1:0"]).envs(production_env()).output().unwrap();
    assert!(!output.status.success(), "the standalone simulator is refused in production");
}

/// The test suite's own variables (`WXSHOP_TEST_*`, exported by scripts/test.sh) are not configuration keys.
#[test]
fn test_variables_are_not_config_keys() {
    let output = wxshop()
        .arg("config")
        .env("WXSHOP_TEST_DATABASE_URL", "mysql://x@127.0.0.1/")
        .env("WXSHOP_TEST_REDIS_URL", "redis://127.0.0.1/")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
