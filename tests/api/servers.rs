//! Servers a test starts for itself, on a free port with a data dir of its own, so it can stop, restart, freeze
//! or flush them: the machine's shared MariaDB and Redis are never touched.

use std::process::{Child, Command, Stdio};
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
