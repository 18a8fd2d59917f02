//! Redis Sentinel (`storage.redis_sentinel`): finding the master of a replication group and
//! following it through a failover.
//!
//! The master is asked of the sentinels (`SENTINEL get-master-addr-by-name`, in the order
//! configured, the first that names one wins) and believed only once the node itself answers
//! `ROLE` with `master`: a sentinel may still name a dead or demoted node while a failover is
//! under way. The connection to it is kept until it fails: a lost connection, a `READONLY`
//! (the node was demoted), `-MASTERDOWN`/`-LOADING`, or a `+switch-master` announced by a
//! sentinel drops it, and the next command discovers again. While no master is found, every
//! command fails at once with "no redis master" (the webhook answers 503), and the backend's
//! ping finds the new master within a second of its promotion.
//!
//! This module owns the connection to the master; it knows nothing of the scripts run on it.
//! The `redis` crate's own `sentinel` client was not used: it asks `SENTINEL MASTERS` rather
//! than the master by name, has no connection timeout towards sentinels, and offers neither
//! the `+switch-master` subscription nor the address in use (`/-/ready` shows it).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisError, RedisResult, Value};
use serde::Deserialize;

use crate::secret::Secret;

/// How long a connection to a sentinel or a data node may take to be made.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a sentinel may take to answer.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);
/// The pub/sub channel on which sentinels announce a new master.
const SWITCH_MASTER: &str = "+switch-master";

/// `storage.redis_sentinel`: the replication group's name and its sentinels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The name the sentinels monitor the group under (`sentinel monitor NAME …`).
    pub master_name: String,
    /// `host:port` of each sentinel; asked in this order.
    #[serde(default)]
    pub sentinels: Vec<String>,
    /// The data nodes' password (`requirepass`), or its file.
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// The sentinels' own password, when they have one, or its file.
    pub sentinel_password: Option<Secret>,
    pub sentinel_password_file: Option<PathBuf>,
    /// The database on the master.
    #[serde(default)]
    pub db: i64,
    /// TLS (as `rediss://`) towards the sentinels and the data nodes alike.
    #[serde(default)]
    pub tls: bool,
}

impl SentinelConfig {
    /// Reports what is wrong with it, its secrets already resolved; `at` is its YAML path.
    pub fn check(&self, at: &str, report: &mut dyn FnMut(String, String)) {
        if self.master_name.trim().is_empty() {
            report(format!("{at}.master_name"), "must be non-empty".into());
        }
        if self.sentinels.is_empty() {
            report(
                format!("{at}.sentinels"),
                "must name at least one sentinel (host:port)".into(),
            );
        }
        for (i, s) in self.sentinels.iter().enumerate() {
            if parse_address(s).is_none() {
                report(
                    format!("{at}.sentinels[{i}]"),
                    format!("{s:?} is not host:port"),
                );
            }
        }
        if self.db < 0 {
            report(format!("{at}.db"), "must be 0 or more".into());
        }
    }

    /// Its secrets, to be masked wherever text is logged.
    pub fn secrets(&self) -> Vec<Secret> {
        self.password
            .iter()
            .chain(self.sentinel_password.iter())
            .cloned()
            .collect()
    }
}

/// `host:port` (an IPv6 host in brackets) as host and port.
pub fn parse_address(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host = bracketed.unwrap_or(host);
    let bad = host.is_empty()
        || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@')
        || (host.contains(':') && bracketed.is_none());
    (!bad).then(|| (host.to_string(), port))
}

/// `HOST:PORT` as shown to people (`/-/ready`, logs): IPv6 in brackets.
pub fn show_address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A client for one node: TLS, password and database as configured.
fn client(
    host: &str,
    port: u16,
    tls: bool,
    password: Option<&Secret>,
    db: i64,
) -> RedisResult<Client> {
    let scheme = if tls { "rediss" } else { "redis" };
    let info = format!("{scheme}://{}", show_address(host, port)).into_connection_info()?;
    let mut settings = info.redis_settings().clone().set_db(db);
    if let Some(p) = password {
        settings = settings.set_password(p.expose());
    }
    Client::open(info.set_redis_settings(settings))
}

/// Whether an error from the master means it may no longer be the master (or no longer be
/// reachable), so that the next command should ask the sentinels again.
pub fn needs_rediscovery(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

/// The new master's address in a `+switch-master` message
/// (`<name> <old-ip> <old-port> <new-ip> <new-port>`) about the group `name`.
pub fn switched_to(payload: &str, name: &str) -> Option<String> {
    let parts: Vec<&str> = payload.split_whitespace().collect();
    match parts.as_slice() {
        [n, _, _, host, port] if *n == name => Some(show_address(host, port.parse().ok()?)),
        _ => None,
    }
}

/// The role a node states in its `ROLE` answer (`master`, `slave`, `sentinel`).
pub fn role_name(v: &Value) -> Option<String> {
    let Value::Array(items) = v else {
        return None;
    };
    match items.first()? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The master in use, numbered so that a failure seen on an older connection does not drop
/// a newer one. Generic over the connection so that its rules are tested without Redis.
#[derive(Debug)]
pub struct Slot<C> {
    current: Option<(u64, String, C)>,
    /// The last master followed, kept while there is none, to recognise a failover.
    known: Option<String>,
    generation: u64,
}

impl<C: Clone> Default for Slot<C> {
    fn default() -> Self {
        Slot {
            current: None,
            known: None,
            generation: 0,
        }
    }
}

impl<C: Clone> Slot<C> {
    /// The connection in use and its number.
    pub fn get(&self) -> Option<(u64, C)> {
        self.current.as_ref().map(|(g, _, c)| (*g, c.clone()))
    }

    /// The address of the master in use.
    pub fn master(&self) -> Option<&str> {
        self.current.as_ref().map(|(_, a, _)| a.as_str())
    }

    /// Uses `conn` to `addr` from now on; true when this follows a failover (a master was
    /// followed before, at another address).
    pub fn install(&mut self, addr: String, conn: C) -> (u64, bool) {
        self.generation += 1;
        let failover = self.known.as_ref().is_some_and(|k| *k != addr);
        self.known = Some(addr.clone());
        self.current = Some((self.generation, addr, conn));
        (self.generation, failover)
    }

    /// Drops the connection numbered `generation` if it still is the one in use; true if it
    /// was dropped.
    pub fn lost(&mut self, generation: u64) -> bool {
        if self
            .current
            .as_ref()
            .is_some_and(|(g, _, _)| *g == generation)
        {
            self.current = None;
            true
        } else {
            false
        }
    }

    /// Drops whatever connection is in use (a sentinel announced another master).
    pub fn forget(&mut self) {
        self.current = None;
    }
}

/// Follows the master of one replication group; shared by every command of the backend.
pub struct Follower {
    config: SentinelConfig,
    slot: Mutex<Slot<MultiplexedConnection>>,
    /// One discovery at a time: the others wait for its result.
    discovering: tokio::sync::Mutex<()>,
    /// Masters followed after the first (`redis_failovers_total`).
    failovers: Counter,
    /// How long the master may take to answer one command (`WAIT` included).
    response_timeout: Duration,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("master_name", &self.config.master_name)
            .field("sentinels", &self.config.sentinels)
            .finish()
    }
}

impl Follower {
    pub fn new(config: SentinelConfig, failovers: Counter, response_timeout: Duration) -> Self {
        Follower {
            config,
            slot: Mutex::new(Slot::default()),
            discovering: tokio::sync::Mutex::new(()),
            failovers,
            response_timeout,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot<MultiplexedConnection>> {
        match self.slot.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    /// The address of the master in use, if there is one.
    pub fn master(&self) -> Option<String> {
        self.slot().master().map(str::to_string)
    }

    /// "sentinels a:1, b:2 (group NAME)", for messages.
    pub fn describe(&self) -> String {
        format!(
            "sentinels {} (master {})",
            self.config.sentinels.join(", "),
            self.config.master_name
        )
    }

    /// A connection to the master and its number, discovering the master first if there is
    /// none; the error says why there is none.
    pub async fn connection(&self) -> Result<(u64, MultiplexedConnection), String> {
        if let Some(c) = self.slot().get() {
            return Ok(c);
        }
        let _one = self.discovering.lock().await;
        if let Some(c) = self.slot().get() {
            return Ok(c);
        }
        let (addr, conn) = self.discover().await?;
        let (generation, failover) = self.slot().install(addr.clone(), conn.clone());
        if failover {
            self.failovers.inc();
            tracing::warn!(master = %addr, group = %self.config.master_name, "following the new redis master after a failover");
        } else {
            tracing::info!(master = %addr, group = %self.config.master_name, "redis master found through the sentinels");
        }
        Ok((generation, conn))
    }

    /// The connection numbered `generation` failed in a way that may mean the master moved.
    pub fn lost(&self, generation: u64) {
        if self.slot().lost(generation) {
            tracing::warn!(group = %self.config.master_name, "lost the redis master; asking the sentinels again");
        }
    }

    /// Asks each sentinel in turn for the master and returns the first that confirms it is one.
    async fn discover(&self) -> Result<(String, MultiplexedConnection), String> {
        let c = &self.config;
        let mut why = Vec::new();
        for s in &c.sentinels {
            let Some((host, port)) = parse_address(s) else {
                continue;
            };
            let named = match self.ask(&host, port).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    why.push(format!("sentinel {s} knows no master {:?}", c.master_name));
                    continue;
                }
                Err(e) => {
                    why.push(format!("sentinel {s}: {e}"));
                    continue;
                }
            };
            let addr = show_address(&named.0, named.1);
            match self.open_master(&named.0, named.1).await {
                Ok(conn) => return Ok((addr, conn)),
                Err(e) => why.push(format!("sentinel {s} names {addr}, which {e}")),
            }
        }
        Err(format!("no redis master: {}", why.join("; ")))
    }

    /// What one sentinel says the master's address is.
    async fn ask(&self, host: &str, port: u16) -> Result<Option<(String, u16)>, String> {
        let c = &self.config;
        let client = client(host, port, c.tls, c.sentinel_password.as_ref(), 0)
            .map_err(|e| e.to_string())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(SENTINEL_TIMEOUT));
        let question = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&c.master_name)
                .query_async::<Option<(String, u16)>>(&mut conn)
                .await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT + SENTINEL_TIMEOUT, question).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("no answer".into()),
        }
    }

    /// A connection to the node a sentinel named, once it says it is the master.
    async fn open_master(&self, host: &str, port: u16) -> Result<MultiplexedConnection, String> {
        let c = &self.config;
        let client =
            client(host, port, c.tls, c.password.as_ref(), c.db).map_err(|e| e.to_string())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(self.response_timeout));
        let open = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let role: Value = redis::cmd("ROLE").query_async(&mut conn).await?;
            Ok::<_, RedisError>((conn, role))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT + SENTINEL_TIMEOUT, open).await {
            Ok(Ok((conn, role))) => match role_name(&role).as_deref() {
                Some("master") => Ok(conn),
                Some(other) => Err(format!("is a {other}, not the master")),
                None => Err("did not state its role".into()),
            },
            Ok(Err(e)) => Err(format!("cannot be reached: {e}")),
            Err(_) => Err("does not answer".into()),
        }
    }

    /// Checks that the master in use still says it is one (the ping of `/-/ready`); drops it
    /// otherwise. Discovers one when there is none.
    pub async fn check(&self) -> Result<String, String> {
        let (generation, mut conn) = self.connection().await?;
        let role = redis::cmd("ROLE").query_async::<Value>(&mut conn).await;
        match role {
            Ok(v) if role_name(&v).as_deref() == Some("master") => {
                self.master().ok_or_else(|| "no redis master".to_string())
            }
            Ok(_) => {
                self.lost(generation);
                Err("the redis master was demoted".into())
            }
            Err(e) => {
                if needs_rediscovery(&e) {
                    self.lost(generation);
                }
                Err(e.to_string())
            }
        }
    }

    /// Drops the master in use and finds the one a sentinel just announced.
    async fn switched(&self, to: &str) {
        tracing::info!(master = %to, group = %self.config.master_name, "a sentinel announced a new redis master");
        self.slot().forget();
        if let Err(e) = self.connection().await {
            tracing::warn!(error = %e, "the announced redis master is not usable yet");
        }
    }
}

/// Listens for `+switch-master` on one sentinel after another for as long as the follower
/// is in use, so that a failover is followed before a command fails on the old master.
pub async fn watch(follower: Weak<Follower>) {
    let mut next = 0usize;
    loop {
        let Some(f) = follower.upgrade() else {
            return;
        };
        let c = &f.config;
        let sentinel = c
            .sentinels
            .get(next % c.sentinels.len().max(1))
            .and_then(|s| parse_address(s));
        next += 1;
        let name = c.master_name.clone();
        let client = sentinel.and_then(|(host, port)| {
            client(&host, port, c.tls, c.sentinel_password.as_ref(), 0).ok()
        });
        drop(f);
        if let Some(client) = client
            && let Ok(Ok(mut pubsub)) =
                tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await
            && pubsub.subscribe(SWITCH_MASTER).await.is_ok()
        {
            let mut messages = pubsub.on_message();
            loop {
                let msg = tokio::select! {
                    m = messages.next() => m,
                    // Notices that the store was dropped even when no message comes.
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {
                        if follower.strong_count() == 0 {
                            return;
                        }
                        continue;
                    }
                };
                let Some(msg) = msg else {
                    break;
                };
                let Some(f) = follower.upgrade() else {
                    return;
                };
                if let Ok(payload) = msg.get_payload::<String>()
                    && let Some(to) = switched_to(&payload, &name)
                {
                    f.switched(&to).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Starts [`watch`] for `follower`.
pub fn spawn_watch(follower: &Arc<Follower>) {
    tokio::spawn(watch(Arc::downgrade(follower)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        assert_eq!(
            parse_address("redis-sentinel-0:26379"),
            Some(("redis-sentinel-0".into(), 26379))
        );
        assert_eq!(parse_address("[::1]:26379"), Some(("::1".into(), 26379)));
        for bad in [
            "",
            "host",
            "host:",
            ":26379",
            "host:0",
            "host:99999",
            "::1:26379",
            "redis://host:26379",
            "a b:1",
        ] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
        assert_eq!(show_address("::1", 6379), "[::1]:6379");
        assert_eq!(show_address("10.0.0.7", 6379), "10.0.0.7:6379");
    }

    #[test]
    fn nodes_get_tls_password_and_database_as_configured() {
        let pw = Secret::new("pa55word");
        let c = client("redis-node-0.redis-headless", 26379, true, Some(&pw), 3).unwrap();
        let info = c.get_connection_info();
        assert!(matches!(
            info.addr(),
            redis::ConnectionAddr::TcpTls { host, port: 26379, .. } if host == "redis-node-0.redis-headless"
        ));
        assert_eq!(info.redis_settings().password(), Some("pa55word"));
        assert_eq!(info.redis_settings().db(), 3);
        let c = client("::1", 6379, false, None, 0).unwrap();
        let info = c.get_connection_info();
        assert!(matches!(info.addr(), redis::ConnectionAddr::Tcp(h, 6379) if h == "::1"));
        assert_eq!(info.redis_settings().password(), None);
    }

    #[test]
    fn switch_master_names_the_new_master_of_our_group_only() {
        assert_eq!(
            switched_to("mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            Some("127.0.0.1:6380".into())
        );
        assert_eq!(
            switched_to("other 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            None
        );
        assert_eq!(switched_to("mymaster 127.0.0.1 6379", "mymaster"), None);
        assert_eq!(switched_to("mymaster a 1 b notaport", "mymaster"), None);
    }

    #[test]
    fn role_is_read_from_the_role_answer() {
        let master = Value::Array(vec![
            Value::BulkString(b"master".to_vec()),
            Value::Int(42),
            Value::Array(vec![]),
        ]);
        assert_eq!(role_name(&master).as_deref(), Some("master"));
        let replica = Value::Array(vec![Value::BulkString(b"slave".to_vec())]);
        assert_eq!(role_name(&replica).as_deref(), Some("slave"));
        assert_eq!(role_name(&Value::Nil), None);
        assert_eq!(role_name(&Value::Array(vec![])), None);
    }

    #[test]
    fn a_failover_is_a_new_address_and_an_old_failure_drops_nothing_newer() {
        let mut slot: Slot<&str> = Slot::default();
        assert!(slot.get().is_none());
        // The first master found is no failover.
        let (first, failover) = slot.install("10.0.0.1:6379".into(), "conn-1");
        assert!(!failover);
        assert_eq!(slot.master(), Some("10.0.0.1:6379"));
        // The connection fails: gone, and a stale report of it later drops nothing.
        assert!(slot.lost(first));
        assert!(slot.get().is_none());
        // Found again at the same address (a restart, not a failover).
        let (second, failover) = slot.install("10.0.0.1:6379".into(), "conn-2");
        assert!(!failover);
        assert!(!slot.lost(first), "a failure of an older connection");
        assert_eq!(slot.get(), Some((second, "conn-2")));
        // A sentinel announces another master: the next one found there is a failover.
        slot.forget();
        assert_eq!(slot.master(), None);
        let (third, failover) = slot.install("10.0.0.2:6379".into(), "conn-3");
        assert!(failover);
        assert!(third > second);
        assert_eq!(slot.get(), Some((third, "conn-3")));
    }

    #[test]
    fn errors_that_mean_the_master_may_have_moved() {
        let readonly = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "You can't write against a read only replica.",
        ));
        assert!(needs_rediscovery(&readonly));
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(needs_rediscovery(&io));
        let script = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "bad argument",
        ));
        assert!(!needs_rediscovery(&script));
    }

    #[test]
    fn config_errors_name_the_field() {
        let mut errors = Vec::new();
        let c = SentinelConfig {
            master_name: " ".into(),
            sentinels: vec!["s0:26379".into(), "s1".into()],
            password: None,
            password_file: None,
            sentinel_password: None,
            sentinel_password_file: None,
            db: -1,
            tls: false,
        };
        c.check("storage.redis_sentinel", &mut |k, m| {
            errors.push(format!("{k}: {m}"))
        });
        assert_eq!(
            errors,
            [
                "storage.redis_sentinel.master_name: must be non-empty",
                "storage.redis_sentinel.sentinels[1]: \"s1\" is not host:port",
                "storage.redis_sentinel.db: must be 0 or more",
            ]
        );
    }
}
