//! A Redis replication group under Sentinel, from Debian's `redis-server` and
//! `redis-sentinel`: a master, two replicas and three sentinels on free loopback ports, each
//! in its own temporary directory, with short failure detection so that a failover takes a
//! few seconds. Every process is killed on drop.
//!
//! Missing binaries: a skip with a note locally, a failure when `CI=true`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{binary, free_port};
use super::redis::REDIS_SERVER;

/// Debian's Redis Sentinel.
pub const REDIS_SENTINEL: &str = "/usr/bin/redis-sentinel";
/// The group's name, as the sentinels monitor it.
pub const MASTER_NAME: &str = "mymaster";

/// One `redis-server` or `redis-sentinel` process.
pub struct Node {
    pub port: u16,
    pub name: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Node {
    fn start(bin: &Path, name: String, port: u16, args: &[String], conf: Option<String>) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("output.log")).expect("log file");
        let mut cmd = Command::new(bin);
        if let Some(conf) = conf {
            let path = dir.path().join("sentinel.conf");
            let conf = conf.replace("$DIR", &dir.path().display().to_string());
            std::fs::write(&path, conf).expect("sentinel.conf");
            cmd.arg(path);
        }
        cmd.args(args)
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Node {
            port,
            name,
            dir,
            child: Some(child),
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("output.log")).unwrap_or_default()
    }

    /// A connection to it (a fresh one per call: the tests ask rarely).
    pub async fn conn(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(format!("redis://{}", self.address())).ok()?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok()
    }

    /// The answer to `cmd`, or `None` when it cannot be had now.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.conn().await?;
        cmd.query_async(&mut conn).await.ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The group: `data[0]` starts as the master.
pub struct Group {
    pub data: Vec<Node>,
    pub sentinels: Vec<Node>,
}

impl Group {
    /// Starts the group and waits until it can fail over: both replicas in sync, and every
    /// sentinel knowing both replicas and the two other sentinels. `None` when the binaries
    /// are not installed (outside CI).
    pub async fn start() -> Option<Group> {
        let server = binary(REDIS_SERVER)?;
        let sentinel = binary(REDIS_SENTINEL)?;
        let master_port = free_port();
        let mut data = vec![data_node(&server, "master", master_port, None)];
        for i in 1..=2 {
            data.push(data_node(
                &server,
                &format!("replica-{i}"),
                free_port(),
                Some(master_port),
            ));
        }
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir $DIR\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 2\n"
            );
            sentinels.push(Node::start(
                &sentinel,
                format!("sentinel-{i}"),
                port,
                &[],
                Some(conf),
            ));
        }
        let group = Group { data, sentinels };
        group.wait_formed().await;
        Some(group)
    }

    /// `host:port` of each sentinel.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::address).collect()
    }

    async fn wait_formed(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.formed().await {
                return;
            }
            if Instant::now() > deadline {
                panic!("the Sentinel group did not form:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn formed(&self) -> bool {
        for r in &self.data[1..] {
            let info: Option<String> = r.query(redis::cmd("INFO").arg("replication")).await;
            if !info.is_some_and(|i| i.contains("master_link_status:up")) {
                return false;
            }
        }
        for s in &self.sentinels {
            let replicas: Option<Vec<redis::Value>> = s
                .query(redis::cmd("SENTINEL").arg("replicas").arg(MASTER_NAME))
                .await;
            let others: Option<Vec<redis::Value>> = s
                .query(redis::cmd("SENTINEL").arg("sentinels").arg(MASTER_NAME))
                .await;
            if replicas.is_none_or(|r| r.len() < 2) || others.is_none_or(|o| o.len() < 2) {
                return false;
            }
        }
        true
    }

    /// The master the first live sentinel names.
    pub async fn master(&self) -> Option<String> {
        for s in &self.sentinels {
            let named: Option<Option<(String, u16)>> = s
                .query(
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(MASTER_NAME),
                )
                .await;
            if let Some(Some((host, port))) = named {
                return Some(format!("{host}:{port}"));
            }
        }
        None
    }

    /// Every process's output, for a failing test.
    pub fn logs(&self) -> String {
        self.data
            .iter()
            .chain(&self.sentinels)
            .map(|n| format!("--- {} ({}) ---\n{}", n.name, n.address(), n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn data_node(bin: &Path, name: &str, port: u16, master: Option<u16>) -> Node {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(m) = master {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
    }
    Node::start(bin, name.to_string(), port, &args, None)
}
