//! Real Alertmanager and Prometheus as child processes: found on the system, started on a free
//! loopback port with their own temporary directory, waited on until ready, killed on drop.
//!
//! A missing binary is a skip with a printed note locally, and a failure when `CI=true`: CI
//! installs them (`scripts/test`), so there a missing one means the proof did not run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's Alertmanager.
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// Debian's Prometheus.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// The binary at `path`, or `None` (with a note) when it is absent outside CI.
pub fn binary(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.is_file() {
        return Some(p.to_path_buf());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{path} is missing and CI=true: scripts/test installs it; this test must run");
    }
    eprintln!("note: {path} not installed, skipping (scripts/test installs it)");
    None
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A child process that is killed and reaped when dropped. Its output goes to a log file in
/// its directory, printed when a test fails through [`Daemon::log`].
pub struct Daemon {
    pub url: String,
    pub dir: tempfile::TempDir,
    name: &'static str,
    child: Child,
}

impl Daemon {
    /// Starts `bin` with `args` (where `$DIR` is replaced by its temporary directory and
    /// `$PORT` by a free port it listens on), then waits for `GET /-/ready` to answer 200.
    pub async fn start(
        name: &'static str,
        bin: &Path,
        files: &[(&str, String)],
        args: &[&str],
    ) -> Daemon {
        // The readiness probe below uses reqwest, which needs a TLS provider installed.
        alertmanager_wechat::runtime::install_tls_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let d = dir.path().display().to_string();
        for (file, text) in files {
            let text = text.replace("$DIR", &d).replace("$PORT", &port.to_string());
            std::fs::write(dir.path().join(file), text).expect("writing a config file");
        }
        let log = std::fs::File::create(dir.path().join("output.log")).expect("log file");
        let child = Command::new(bin)
            .args(
                args.iter()
                    .map(|a| a.replace("$DIR", &d).replace("$PORT", &port.to_string())),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut daemon = Daemon {
            url,
            dir,
            name,
            child,
        };
        daemon.wait_ready(Duration::from_secs(30)).await;
        daemon
    }

    async fn wait_ready(&mut self, timeout: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            let ready = client
                .get(format!("{}/-/ready", self.url))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {timeout:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(ok.success(), "kill -s {sig} failed");
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit on its own, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("output.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.log());
        }
    }
}
