//! A real `redis-server` (Debian's) for the shared-store tests: started on a free loopback
//! port with its own temporary directory and append-only file, killed on drop.
//!
//! Missing binary: a skip with a note locally, a failure when `CI=true` (`scripts/test`
//! installs it there).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{binary, free_port};

/// Debian's Redis.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

pub struct RedisServer {
    pub url: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl RedisServer {
    /// A fresh, empty Redis; `None` when it is not installed (outside CI).
    pub async fn start() -> Option<RedisServer> {
        let bin = binary(REDIS_SERVER)?;
        let mut dir = tempfile::tempdir().expect("tempdir");
        // A free port can be taken by another test before this server binds it: then it
        // exits at once, and a new port is tried.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port();
            let child = spawn(&bin, dir.path(), port);
            let mut server = RedisServer {
                url: format!("redis://127.0.0.1:{port}/0"),
                port,
                dir,
                child,
            };
            match server.ready().await {
                Ok(()) => return Some(server),
                Err(log) if attempts < 5 && log.contains("Address already in use") => {
                    dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tempdir"));
                }
                Err(log) => panic!("{log}"),
            }
        }
    }

    /// Starts it again on the same port and directory, after [`RedisServer::kill`]: it
    /// reloads its append-only file.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = spawn(
            std::path::Path::new(REDIS_SERVER),
            self.dir.path(),
            self.port,
        );
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        if let Err(log) = self.ready().await {
            panic!("{log}");
        }
    }

    /// Waits until this server (its own process, not another on the port) answers.
    async fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "redis-server exited with {status}:\n{}",
                    self.log()
                ));
            }
            if self.ping().await && self.answering_pid().await == Some(self.child.id()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("redis-server not ready:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `process_id` of the server answering on the port.
    async fn answering_pid(&self) -> Option<u32> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        s.write_all(b"INFO server\r\n").await.ok()?;
        let mut buf = vec![0u8; 8192];
        let mut text = String::new();
        while !text.contains("process_id:") || !text[text.find("process_id:")?..].contains('\n') {
            let n = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let rest = &text[text.find("process_id:")? + "process_id:".len()..];
        rest.lines().next()?.trim().parse().ok()
    }

    /// Whether it answers `PING` with `+PONG`.
    pub async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await,
            Ok(Ok(_))
        ) && &buf == b"+PONG\r\n"
    }

    /// Stops it (SIGKILL) and waits until the port is free.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

fn spawn(bin: &std::path::Path, dir: &std::path::Path, port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("redis.log"))
        .expect("log file");
    Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ])
        .args(["--daemonize", "no", "--protected-mode", "yes"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("cannot start redis-server")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- redis-server output ---\n{}", self.log());
        }
    }
}
