//! Servers a test starts for itself, on a free port with a data dir of its own, so it can stop, restart, freeze
//! or flush them: the machine's shared MariaDB and Redis are never touched.

use std::process::{Child, Command, Stdio};

use sqlx::Connection;
use std::time::Duration;

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_until(what: &str, within: Duration, mut up: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !up() {
        assert!(std::time::Instant::now() < deadline, "{what} did not come up within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A private `redis-server` that keeps nothing on disk: a restart starts it empty.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let mut redis = OwnRedis { port: free_port(), child: None, dir: tempfile::tempdir().unwrap() };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again (empty) after [`stop`](Self::stop); the same port.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh)");
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server", Duration::from_secs(10), || answers(port)).await;
    }

    /// Kills it: every connection drops, and everything it held is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        wait_until("redis-server stop", Duration::from_secs(10), || !answers(port)).await;
    }

    /// `FLUSHALL` without a restart.
    pub async fn flush(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await.unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private MariaDB server (`mariadbd` from the machine's packages) on its own port and data dir, with a
/// `wxshop` database, reachable as root without a password on loopback. It can be frozen (SIGSTOP: connections
/// stay open, nothing answers), thawed, killed and started again on the same data.
pub struct OwnMariaDb {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl OwnMariaDb {
    pub async fn start() -> OwnMariaDb {
        let dir = tempfile::tempdir().unwrap();
        // A temporary directory of its own: bootstraps running at once in the shared /tmp collide on the names of
        // their temporary tables ("Unknown table 'mysql.tmp_user_sys'": seen once in CI; 2 of 12 with four at once here).
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let installed = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .arg(format!("--tmpdir={}", dir.path().join("tmp").display()))
            .output()
            .expect("mariadb-install-db is installed (scripts/services.sh)");
        assert!(
            installed.status.success(),
            "mariadb-install-db failed:\n{}{}",
            String::from_utf8_lossy(&installed.stdout),
            String::from_utf8_lossy(&installed.stderr)
        );
        let mut server = OwnMariaDb { port: free_port(), child: None, dir };
        server.restart().await;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&format!("mysql://root@127.0.0.1:{}/mysql", server.port))
            .await
            .expect("connect to the private MariaDB");
        sqlx::query("CREATE DATABASE wxshop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            .execute(&mut conn)
            .await
            .unwrap();
        server
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/wxshop", self.port)
    }

    /// Starts the server (again) on its data dir.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let data = self.dir.path().join("data");
        let child = Command::new("mariadbd")
            .args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1", "--skip-log-bin"])
            .args(["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", self.dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.path().join("pid").display()))
            .arg(format!("--tmpdir={}", self.dir.path().join("tmp").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd is installed (scripts/services.sh)");
        self.child = Some(child);
        let port = self.port;
        wait_until("mariadbd", Duration::from_secs(30), || answers(port)).await;
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    /// SIGSTOP: the server keeps its connections and answers nothing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Kills it: connections are refused until [`restart`](Self::restart).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        wait_until("mariadbd stop", Duration::from_secs(10), || !answers(port)).await;
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private S3-compatible server (s3s-fs 0.14.1, installed by scripts/services.sh) over a directory of its own,
/// with one bucket. It enforces SigV4 POST policies (signature, expiry, conditions, content-length-range).
pub struct OwnS3 {
    pub port: u16,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub root: tempfile::TempDir,
    child: Child,
}

impl OwnS3 {
    pub async fn start() -> OwnS3 {
        let binary = std::env::var("WXSHOP_TEST_S3S_FS").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            format!("{home}/.cache/wxshop/s3s-fs-0.14.1/bin/s3s-fs")
        });
        let root = tempfile::tempdir().unwrap();
        let bucket = "wxshop-media".to_owned();
        std::fs::create_dir_all(root.path().join(&bucket)).unwrap();
        let port = free_port();
        let (access_key, secret_key) = ("AKIDTESTS3S0000000001".to_owned(), "test-s3s-secret-key-0001".to_owned());
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", &access_key])
            .args(["--secret-key", &secret_key])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary}: {e} (scripts/services.sh installs s3s-fs)"));
        wait_until("s3s-fs", Duration::from_secs(10), || answers(port)).await;
        OwnS3 { port, bucket, access_key, secret_key, root, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bytes of an object, read from the server's directory.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.path().join(&self.bucket).join(key)).ok()
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
