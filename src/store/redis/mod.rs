//! The Redis backend (`storage.redis_url`): one queue shared by several replicas.
//!
//! Every change is one Lua script (`redis/*.lua`), so it is atomic across replicas. The queue
//! is a Redis Stream with one consumer group: an accepted job is `XADD`ed, a worker claims
//! with `XREADGROUP` under a consumer name unique to its process, and a finished job is
//! `XACK`ed and `XDEL`eted. While a replica delivers, it renews its claims; entries a replica
//! left unrenewed for `storage.redis_visibility_timeout` (it crashed or lost Redis) are taken
//! over by another with `XAUTOCLAIM`. Retries wait in a sorted set scored by their due time
//! and go back on the stream when due; dead letters are kept in another. Each job's data is a
//! hash whose `state` is the truth, so a stale stream entry is recognised and dropped.
//! Counters (`INCRBY` + `PEXPIREAT`) and token buckets (on Redis's clock) are shared too.
//! Dedupe state is one key per mark (`SET NX PXAT`), and admitting a notification (its marks
//! and its job) is one script, so two replicas given the same payload queue it once; alerts an
//! admission leaves out are recorded with the job and left out whenever it is read. Chatops
//! records are in `redis/chatops.rs`.
//!
//! The URL may hold a password: it is a [`Secret`], and errors are scrubbed of it.
//!
//! With `storage.redis_sentinel` the master is found through Redis Sentinel and followed
//! through a failover (`redis/sentinel.rs`). Replication is asynchronous, so with
//! `storage.redis_wait_replicas` every change that must survive a failover (accepting a
//! notification, an outcome, a dead letter, an acknowledgement) is followed by `WAIT` on the
//! same connection, and fails (503 on the webhook) unless enough replicas confirm it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{FromRedisValue, RedisError, RedisResult, Script, ScriptInvocation};

mod chatops;
mod history;
mod incident;
mod oncall;
pub mod sentinel;

use sentinel::{Follower, SentinelConfig};

use super::{Admission, Admitted, Depth, Failure, IntegrationId, Job, Mark, NewJob, StoreError};
use crate::secret::{Scrubber, Secret};

/// No store operation waits longer than this for Redis; the webhook then answers 503.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `/-/ready`'s view of Redis may be stale, and the ping's own timeout.
const PING_EVERY: Duration = Duration::from_secs(1);

macro_rules! script {
    ($name:ident, $file:literal) => {
        static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(include_str!("prelude.lua"), include_str!($file)))
        });
    };
}

script!(ENQUEUE, "enqueue.lua");
script!(CLAIM, "claim.lua");
script!(CLAIM_TARGET, "claim_target.lua");
script!(COMPLETE, "complete.lua");
script!(RESCHEDULE, "reschedule.lua");
script!(DEAD_LETTER, "dead_letter.lua");
script!(DEAD_LETTERS, "dead_letters.lua");
script!(REPLAY, "replay.lua");
script!(PURGE, "purge.lua");
script!(ADD_COUNTER, "add_counter.lua");
script!(TAKE_TOKEN, "take_token.lua");
script!(TAKE_COUNTERS, "take_counters.lua");
script!(HEARTBEAT, "heartbeat.lua");
script!(ADMIT, "admit.lua");
script!(REMEMBER, "remember.lua");
script!(CLAIM_HELD, "claim_held.lua");

/// Checks a `storage.redis_url` without ever repeating it (it may hold a password).
pub fn check_url(url: &Secret) -> Result<(), String> {
    let u = url.expose();
    if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
        return Err("must be a redis:// or rediss:// URL".into());
    }
    redis::Client::open(u)
        .map(|_| ())
        .map_err(|_| "is not a valid redis:// or rediss:// URL".into())
}

/// The password inside a Redis URL, to be masked wherever text is logged.
pub fn url_password(url: &Secret) -> Option<Secret> {
    let client = redis::Client::open(url.expose()).ok()?;
    let p = client.get_connection_info().redis_settings().password()?;
    (p.len() >= 4).then(|| Secret::new(p))
}

/// Where the master is: one URL, or whichever node the sentinels name.
#[derive(Debug, Clone)]
pub enum Target {
    Url(Secret),
    Sentinel(SentinelConfig),
}

/// `storage.redis_wait_replicas` and `storage.redis_wait_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub replicas: u32,
    pub timeout: Duration,
}

/// Options of the Redis backend, from `storage`.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub target: Target,
    pub prefix: String,
    pub capacity: usize,
    /// Bytes the jobs may hold (`storage.max_bytes`) before new ones are refused.
    pub max_bytes: u64,
    pub visibility: Duration,
    /// Replicas that must confirm a change before it counts as made.
    pub wait: Option<Wait>,
}

/// A handle to the shared store; cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

/// How commands reach the master.
enum Link {
    /// `storage.redis_url`: one address, reconnected with backoff.
    Direct(ConnectionManager),
    /// `storage.redis_sentinel`: the master the sentinels name, followed through failovers.
    Sentinel(Arc<Follower>),
}

/// One connection to the master, however it was found.
#[derive(Clone)]
enum Conn {
    Managed(ConnectionManager),
    Plain(MultiplexedConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Managed(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Plain(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
        }
    }
}

/// Why a command did not run.
enum Failed {
    /// The sentinels named no usable master.
    NoMaster(String),
    /// Redis answered with an error, on the connection of this number (Sentinel).
    Redis(RedisError, Option<u64>),
}

struct Inner {
    link: Link,
    prefix: String,
    /// This process's name in the consumer group.
    consumer: String,
    capacity: usize,
    max_bytes: u64,
    visibility: Duration,
    /// Whether the last exchange with Redis succeeded.
    healthy: AtomicBool,
    /// Stream entries this process is delivering (job id → entry id), renewed periodically.
    inflight: Mutex<HashMap<i64, String>>,
    /// `host:port` (of `redis_url`), or the sentinels, for messages.
    address: String,
    scrubber: Scrubber,
    wait: Option<Wait>,
    /// How long one operation may take: [`OP_TIMEOUT`] plus the `WAIT` timeout.
    op_timeout: Duration,
    /// Masters followed after a failover (`redis_failovers_total`).
    failovers: Counter,
    /// Changes refused because too few replicas confirmed them (`redis_wait_timeouts_total`).
    wait_timeouts: Counter,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.inner.address)
            .field("prefix", &self.inner.prefix)
            .field("consumer", &self.inner.consumer)
            .finish()
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// A name unique to this process among the replicas: host, pid and a random part.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl RedisStore {
    /// Prepares the connection; it is made on first use and re-made, with backoff, whenever
    /// it is lost. `serve` (`owner`) also pings Redis for `/-/ready` and renews its claims.
    /// Needs a Tokio runtime.
    pub fn open(o: &RedisOptions, owner: bool) -> Result<RedisStore, StoreError> {
        let wait_timeout = o.wait.map_or(Duration::ZERO, |w| w.timeout);
        let op_timeout = OP_TIMEOUT + wait_timeout;
        let failovers = Counter::default();
        let (link, address, secrets) = match &o.target {
            Target::Url(url) => {
                let client = redis::Client::open(url.expose()).map_err(|_| StoreError::Open {
                    path: "storage.redis_url".into(),
                    message: "not a valid redis:// or rediss:// URL".into(),
                })?;
                let address = client.get_connection_info().addr().to_string();
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(2))
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(op_timeout));
                let conn =
                    ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
                        StoreError::Open {
                            path: address.clone(),
                            message: e.to_string(),
                        }
                    })?;
                let mut secrets = vec![url.clone()];
                secrets.extend(url_password(url));
                (Link::Direct(conn), address, secrets)
            }
            Target::Sentinel(c) => {
                let follower = Arc::new(Follower::new(c.clone(), failovers.clone(), op_timeout));
                if owner {
                    sentinel::spawn_watch(&follower);
                }
                let address = follower.describe();
                (Link::Sentinel(follower), address, c.secrets())
            }
        };
        let inner = Arc::new(Inner {
            link,
            prefix: o.prefix.clone(),
            consumer: consumer_name(),
            capacity: o.capacity,
            max_bytes: o.max_bytes,
            visibility: o.visibility,
            healthy: AtomicBool::new(false),
            inflight: Mutex::new(HashMap::new()),
            address,
            scrubber: Scrubber::new(secrets),
            wait: o.wait.filter(|w| w.replicas > 0),
            op_timeout,
            failovers,
            wait_timeouts: Counter::default(),
        });
        if owner {
            tokio::spawn(background(Arc::downgrade(&inner)));
        }
        Ok(RedisStore { inner })
    }

    /// The counters behind `redis_failovers_total` and `redis_wait_timeouts_total`.
    pub fn counters(&self) -> (Counter, Counter) {
        (
            self.inner.failovers.clone(),
            self.inner.wait_timeouts.clone(),
        )
    }

    /// With Sentinel, `Some` of the master in use (`None` while there is none); `None` with a
    /// plain `redis_url`.
    pub fn sentinel_master(&self) -> Option<Option<String>> {
        match &self.inner.link {
            Link::Direct(_) => None,
            Link::Sentinel(f) => Some(f.master().filter(|_| self.is_open())),
        }
    }

    /// Whether Redis answered the last ping or command.
    pub fn is_open(&self) -> bool {
        self.inner.healthy.load(Ordering::SeqCst)
    }

    /// Counts one more attempt begun on a job before it is rendered and sent; returns how
    /// many were begun (0 for a job that is gone).
    pub async fn started(&self, id: i64) -> Result<u32, StoreError> {
        let key = self.key(&format!("job:{id}"));
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&key);
        let exists: i64 = self.cmd(cmd).await?;
        if exists == 0 {
            return Ok(0);
        }
        let mut cmd = redis::cmd("HINCRBY");
        cmd.arg(key).arg("starts").arg(1);
        let n: i64 = self.cmd(cmd).await?;
        Ok(n.max(0) as u32)
    }

    /// The consumer name this process claims under.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    fn error(&self, e: RedisError) -> StoreError {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            self.inner.healthy.store(false, Ordering::SeqCst);
        }
        StoreError::Db(format!(
            "redis at {}: {}",
            self.where_(),
            self.inner.scrubber.scrub(&e.to_string())
        ))
    }

    /// The master in use, for messages.
    fn where_(&self) -> String {
        match &self.inner.link {
            Link::Direct(_) => self.inner.address.clone(),
            Link::Sentinel(f) => f.master().unwrap_or_else(|| self.inner.address.clone()),
        }
    }

    /// Runs `f` on a connection to the master, within the operation timeout. With Sentinel, an
    /// error that may mean the master moved drops the connection, so that the next command
    /// asks the sentinels again.
    async fn run_on<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let inner = &self.inner;
        let used = std::sync::atomic::AtomicU64::new(0);
        let work = async {
            let (conn, generation) = match &inner.link {
                Link::Direct(m) => (Conn::Managed(m.clone()), None),
                Link::Sentinel(follower) => match follower.connection().await {
                    Ok((g, c)) => {
                        used.store(g, Ordering::SeqCst);
                        (Conn::Plain(c), Some(g))
                    }
                    Err(why) => return Err(Failed::NoMaster(why)),
                },
            };
            f(conn).await.map_err(|e| Failed::Redis(e, generation))
        };
        match tokio::time::timeout(inner.op_timeout, work).await {
            Ok(Ok(v)) => {
                inner.healthy.store(true, Ordering::SeqCst);
                Ok(v)
            }
            Ok(Err(Failed::NoMaster(why))) => {
                inner.healthy.store(false, Ordering::SeqCst);
                Err(StoreError::Db(inner.scrubber.scrub(&why)))
            }
            Ok(Err(Failed::Redis(e, generation))) => {
                if let (Link::Sentinel(follower), Some(g)) = (&inner.link, generation)
                    && sentinel::needs_rediscovery(&e)
                {
                    follower.lost(g);
                }
                Err(self.error(e))
            }
            Err(_) => {
                inner.healthy.store(false, Ordering::SeqCst);
                if let Link::Sentinel(follower) = &inner.link {
                    let g = used.load(Ordering::SeqCst);
                    if g != 0 {
                        follower.lost(g);
                    }
                }
                Err(StoreError::Db(format!(
                    "redis at {}: no answer within {:?}",
                    self.where_(),
                    inner.op_timeout
                )))
            }
        }
    }

    /// Runs a script with the key prefix as its first argument.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &'static Script,
        args: impl FnOnce(&mut ScriptInvocation<'static>),
    ) -> Result<T, StoreError> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.inner.prefix);
        args(&mut inv);
        self.run_on(|mut conn| async move { inv.invoke_async(&mut conn).await })
            .await
    }

    /// As [`RedisStore::eval`], for a change that must survive a failover: with
    /// `redis_wait_replicas`, it counts as made only once that many replicas confirm it
    /// within `redis_wait_timeout`; otherwise it fails (and the caller answers 503 or tries
    /// again), though the master may keep it.
    async fn eval_durable<T: FromRedisValue>(
        &self,
        script: &'static Script,
        args: impl FnOnce(&mut ScriptInvocation<'static>),
    ) -> Result<T, StoreError> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.inner.prefix);
        args(&mut inv);
        let (wait, marker) = (self.inner.wait, self.key("wait"));
        let (v, acked) = self
            .run_on(|mut conn| async move {
                let v: T = inv.invoke_async(&mut conn).await?;
                let acked = match wait {
                    Some(w) => Some(replicate(&mut conn, &marker, w).await?),
                    None => None,
                };
                Ok((v, acked))
            })
            .await?;
        self.confirmed(acked)?;
        Ok(v)
    }

    /// Turns too few confirming replicas into an error, counted.
    fn confirmed(&self, acked: Option<i64>) -> Result<(), StoreError> {
        let (Some(w), Some(acked)) = (self.inner.wait, acked) else {
            return Ok(());
        };
        if acked >= i64::from(w.replicas) {
            return Ok(());
        }
        self.inner.wait_timeouts.inc();
        tracing::warn!(master = %self.where_(), acked, wanted = w.replicas, "a change was not confirmed by enough redis replicas in time");
        Err(StoreError::Db(format!(
            "redis at {}: {acked} of {} replicas confirmed the change within {:?}",
            self.where_(),
            w.replicas,
            w.timeout
        )))
    }

    async fn cmd<T: FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        self.run_on(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.inner.prefix)
    }

    /// Answers whether Redis answers a `PING` within a second; with Sentinel, whether there
    /// is a master that still says it is one (asking the sentinels when there is none).
    pub async fn ping(&self) -> bool {
        let ok = match &self.inner.link {
            Link::Direct(m) => {
                let mut conn = m.clone();
                matches!(
                    tokio::time::timeout(
                        PING_EVERY,
                        redis::cmd("PING").query_async::<String>(&mut conn)
                    )
                    .await,
                    Ok(Ok(_))
                )
            }
            Link::Sentinel(f) => {
                let budget = 2 * (sentinel::CONNECT_TIMEOUT + PING_EVERY);
                matches!(tokio::time::timeout(budget, f.check()).await, Ok(Ok(_)))
            }
        };
        self.inner.healthy.store(ok, Ordering::SeqCst);
        ok
    }

    fn forget_inflight(&self, ids: &[i64]) {
        let mut map = match self.inner.inflight.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        for id in ids {
            map.remove(id);
        }
    }

    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<i64>, StoreError> {
        let args = job_args(&jobs)?;
        let (capacity, max_bytes) = (self.inner.capacity, self.inner.max_bytes);
        let ids: Option<Vec<i64>> = self
            .eval_durable(&ENQUEUE, move |i| {
                i.arg(capacity).arg(max_bytes);
                i.arg(args);
            })
            .await?;
        ids.ok_or(StoreError::Full)
    }

    pub async fn claim(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Job>, StoreError> {
        let consumer = self.inner.consumer.clone();
        let idle = self.inner.visibility.as_millis() as u64;
        let raw: Vec<RawJob> = self
            .eval(&CLAIM, move |i| {
                i.arg(consumer).arg(ms(now)).arg(limit.max(1)).arg(idle);
            })
            .await?;
        let mut jobs = Vec::with_capacity(raw.len());
        let mut claimed = Vec::with_capacity(raw.len());
        for (id, fields) in raw {
            if let Some(sid) = fields.get("sid") {
                claimed.push((id, sid.clone()));
            }
            jobs.push(to_job(id, fields)?);
        }
        let mut map = match self.inner.inflight.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.extend(claimed);
        Ok(jobs)
    }

    pub async fn claim_target(
        &self,
        receiver: &str,
        integration: &IntegrationId,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let target = format!("{integration}:{receiver}");
        let lease = self.inner.visibility.as_millis() as u64;
        let raw: Vec<RawJob> = self
            .eval(&CLAIM_TARGET, move |i| {
                i.arg(target).arg(lease).arg(limit.max(1));
            })
            .await?;
        raw.into_iter().map(|(id, f)| to_job(id, f)).collect()
    }

    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.key("delayed")).arg(0).arg(0).arg("WITHSCORES");
        let first: Vec<(String, f64)> = self.cmd(cmd).await?;
        Ok(first.first().map(|(_, at)| from_ms(*at as i64)))
    }

    // The outcome scripts forget a delivery in flight only once the outcome is recorded (and,
    // with `redis_wait_replicas`, confirmed): until then its claim stays renewed, so that
    // no replica takes it over and sends it again while the outcome is being retried.
    pub async fn complete(&self, ids: Vec<i64>, then: Vec<NewJob>) -> Result<(), StoreError> {
        let args = job_args(&then)?;
        let done = ids.clone();
        let _: i64 = self
            .eval_durable(&COMPLETE, move |i| {
                i.arg(ids.len()).arg(ids).arg(args);
            })
            .await?;
        self.forget_inflight(&done);
        Ok(())
    }

    pub async fn reschedule(
        &self,
        id: i64,
        f: Failure,
        not_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let progress = progress_json(&f.progress);
        let _: i64 = self
            .eval_durable(&RESCHEDULE, move |i| {
                i.arg(id)
                    .arg(f.attempt)
                    .arg(progress)
                    .arg(f.error)
                    .arg(f.reason)
                    .arg(ms(not_before));
            })
            .await?;
        self.forget_inflight(&[id]);
        Ok(())
    }

    pub async fn dead_letter(
        &self,
        id: i64,
        f: Failure,
        fallback: Vec<NewJob>,
    ) -> Result<(), StoreError> {
        let progress = progress_json(&f.progress);
        let args = job_args(&fallback)?;
        let _: i64 = self
            .eval_durable(&DEAD_LETTER, move |i| {
                i.arg(id)
                    .arg(f.attempt)
                    .arg(progress)
                    .arg(f.error)
                    .arg(f.reason)
                    .arg(ms(Utc::now()))
                    .arg(args);
            })
            .await?;
        self.forget_inflight(&[id]);
        Ok(())
    }

    pub async fn depth(&self) -> Result<Vec<Depth>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.key("depth"));
        let map: HashMap<String, i64> = self.cmd(cmd).await?;
        let mut out: Vec<Depth> = map
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .filter_map(|(target, n)| {
                let (index, receiver) = target.split_once(':')?;
                Some(Depth {
                    receiver: receiver.to_string(),
                    integration: IntegrationId(index.to_string()),
                    count: n as u64,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.receiver, &a.integration).cmp(&(&b.receiver, &b.integration)));
        Ok(out)
    }

    pub async fn dead_letters(&self) -> Result<Vec<Job>, StoreError> {
        let raw: Vec<RawJob> = self.eval(&DEAD_LETTERS, |_| {}).await?;
        raw.into_iter().map(|(id, f)| to_job(id, f)).collect()
    }

    pub async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(self.key("dead"));
        self.cmd(cmd).await
    }

    pub async fn replay(&self, id: Option<i64>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let id = id.map(|i| i.to_string()).unwrap_or_default();
        self.eval_durable(&REPLAY, move |i| {
            i.arg(id).arg(ms(now));
        })
        .await
    }

    pub async fn purge(&self) -> Result<u64, StoreError> {
        self.eval_durable(&PURGE, |_| {}).await
    }

    pub async fn add_counter(
        &self,
        key: String,
        by: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.eval(&ADD_COUNTER, move |i| {
            i.arg(key).arg(by).arg(ms(expires_at));
        })
        .await
    }

    pub async fn take_counters(
        &self,
        keys: Vec<String>,
        by: i64,
        limit: Option<i64>,
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let added: Vec<i64> = self
            .eval(&TAKE_COUNTERS, move |i| {
                i.arg(by).arg(limit.unwrap_or(-1)).arg(ms(expires_at));
                for k in keys {
                    i.arg(k);
                }
            })
            .await?;
        Ok(added.into_iter().map(|a| a == 1).collect())
    }

    pub async fn counter(&self, key: String, _now: DateTime<Utc>) -> Result<i64, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(&format!("counter:{key}")));
        let v: Option<i64> = self.cmd(cmd).await?;
        Ok(v.unwrap_or(0))
    }

    /// Reserves a token of the bucket `key` shared by every replica; returns how long to wait
    /// before the request may go out.
    pub async fn take_token(
        &self,
        key: &str,
        rate: f64,
        burst: u32,
    ) -> Result<Duration, StoreError> {
        let key = key.to_string();
        let micros: i64 = self
            .eval(&TAKE_TOKEN, move |i| {
                i.arg(key).arg(rate).arg(burst.max(1));
            })
            .await?;
        Ok(Duration::from_micros(micros.max(0) as u64))
    }

    pub async fn admit(
        &self,
        admissions: Vec<Admission>,
        _now: DateTime<Utc>,
    ) -> Result<Vec<Admitted>, StoreError> {
        let mut args = vec![admissions.len().to_string()];
        for a in &admissions {
            match &a.identity {
                Some(m) => push_mark(&mut args, m),
                None => args.extend([String::new(), "0".into(), "0".into()]),
            }
            args.push(a.once.len().to_string());
            for (i, m) in &a.once {
                args.push(i.to_string());
                push_mark(&mut args, m);
            }
            args.push(a.remember.len().to_string());
            for m in &a.remember {
                push_mark(&mut args, m);
            }
            args.push(a.job.notification.alerts.len().to_string());
            push_job(&mut args, &a.job, a.not_before, a.held)?;
        }
        let (capacity, max_bytes) = (self.inner.capacity, self.inner.max_bytes);
        let out: Option<Vec<(i64, i64, i64)>> = self
            .eval_durable(&ADMIT, move |i| {
                i.arg(capacity).arg(max_bytes).arg(args);
            })
            .await?;
        let out = out.ok_or(StoreError::Full)?;
        Ok(out
            .into_iter()
            .map(|(kind, id, dropped)| match kind {
                0 => Admitted::Duplicate,
                2 => Admitted::Empty {
                    dropped: dropped.max(0) as usize,
                },
                _ => Admitted::Queued {
                    id,
                    dropped: dropped.max(0) as usize,
                },
            })
            .collect())
    }

    pub async fn claim_held(
        &self,
        receiver: &str,
        integration: &IntegrationId,
    ) -> Result<Vec<Job>, StoreError> {
        let target = format!("{integration}:{receiver}");
        let lease = self.inner.visibility.as_millis() as u64;
        let raw: Vec<RawJob> = self
            .eval(&CLAIM_HELD, move |i| {
                i.arg(target).arg(lease);
            })
            .await?;
        raw.into_iter().map(|(id, f)| to_job(id, f)).collect()
    }

    pub async fn remember(&self, marks: Vec<Mark>, _now: DateTime<Utc>) -> Result<(), StoreError> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(marks.len() * 3);
        for m in &marks {
            push_mark(&mut args, m);
        }
        let _: i64 = self
            .eval(&REMEMBER, move |i| {
                i.arg(args);
            })
            .await?;
        Ok(())
    }

    pub async fn recall(
        &self,
        keys: Vec<String>,
        _now: DateTime<Utc>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for k in &keys {
            cmd.arg(self.key(&format!("dd:{k}")));
        }
        self.cmd(cmd).await
    }

    /// Keys of dedupe state (expired ones are gone by themselves).
    pub async fn state_size(&self) -> Result<u64, StoreError> {
        let pattern = self.key("dd:*");
        let mut cursor = 0u64;
        let mut n = 0u64;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self.cmd(cmd).await?;
            n += keys.len() as u64;
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
    }

    /// Renews this process's claims on the entries it is delivering.
    async fn heartbeat(&self) -> Result<(), StoreError> {
        let sids: Vec<String> = {
            let map = match self.inner.inflight.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.values().cloned().collect()
        };
        let consumer = self.inner.consumer.clone();
        let _: i64 = self
            .eval(&HEARTBEAT, move |i| {
                i.arg(consumer).arg(sids);
            })
            .await?;
        Ok(())
    }
}

/// Pings Redis every second for `/-/ready` and renews claims three times per visibility
/// timeout, for as long as the store is in use.
async fn background(inner: Weak<Inner>) {
    let mut last_beat = tokio::time::Instant::now();
    let mut was_up = true;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let store = RedisStore { inner: strong };
        let up = store.ping().await;
        if up != was_up {
            if up {
                tracing::info!(address = %store.where_(), "redis reachable again");
            } else {
                tracing::warn!(address = %store.where_(), "redis unreachable; accepting nothing until it is back");
            }
            was_up = up;
        }
        let every = store.inner.visibility / 3;
        if up && last_beat.elapsed() >= every {
            match store.heartbeat().await {
                Ok(()) => last_beat = tokio::time::Instant::now(),
                Err(e) => tracing::warn!(error = %e, "cannot renew deliveries in flight"),
            }
        }
        let pause = PING_EVERY.min(every);
        drop(store);
        tokio::time::sleep(pause).await;
    }
}

/// Makes sure the connection's last write is behind a fresh one (a script that changed
/// nothing, say a duplicate admission, leaves none of its own), then waits for `w.replicas`
/// replicas to have it; returns how many did.
async fn replicate(conn: &mut Conn, marker: &str, w: Wait) -> RedisResult<i64> {
    let (acked,): (i64,) = redis::pipe()
        .cmd("INCR")
        .arg(marker)
        .ignore()
        .cmd("WAIT")
        .arg(w.replicas)
        .arg(w.timeout.as_millis().max(1) as u64)
        .query_async(conn)
        .await?;
    Ok(acked)
}

type RawJob = (i64, HashMap<String, String>);

/// Jobs as the scripts take them: a count, then eight values each.
fn job_args(jobs: &[NewJob]) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::with_capacity(1 + jobs.len() * 8);
    out.push(jobs.len().to_string());
    for j in jobs {
        push_job(&mut out, j, j.accepted_at, false)?;
    }
    Ok(out)
}

fn push_job(
    out: &mut Vec<String>,
    j: &NewJob,
    not_before: DateTime<Utc>,
    held: bool,
) -> Result<(), StoreError> {
    let n = serde_json::to_string(&j.notification)
        .map_err(|e| StoreError::Db(format!("cannot encode a notification: {e}")))?;
    out.push(j.receiver.clone());
    out.push(j.integration.0.clone());
    out.push(j.kind.clone());
    out.push(n);
    out.push(ms(j.accepted_at).to_string());
    out.push(if j.fallback { "1" } else { "0" }.to_string());
    out.push(ms(not_before).max(ms(j.accepted_at)).to_string());
    out.push(if held { "1" } else { "0" }.to_string());
    Ok(())
}

fn push_mark(out: &mut Vec<String>, m: &Mark) {
    out.push(m.key.clone());
    out.push(m.value.to_string());
    out.push(ms(m.expires_at).to_string());
}

fn progress_json(p: &super::Progress) -> String {
    serde_json::to_string(p).unwrap_or_else(|_| "[]".into())
}

fn to_job(id: i64, mut f: HashMap<String, String>) -> Result<Job, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { id, message };
    let num = |f: &HashMap<String, String>, k: &str| -> Result<i64, StoreError> {
        f.get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| corrupt(format!("field {k} missing or not a number")))
    };
    let mut notification: crate::webhook::Notification =
        serde_json::from_str(f.get("notification").map_or("", |s| s.as_str()))
            .map_err(|e| corrupt(e.to_string()))?;
    // Alerts left out at admission (already announced), kept out on every read.
    if let Some(drop) = f.get("drop") {
        let drop: Vec<usize> = serde_json::from_str(drop).map_err(|e| corrupt(e.to_string()))?;
        let keep = notification
            .alerts
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, a)| a.clone())
            .collect();
        notification = notification.subset(keep);
    }
    let progress = serde_json::from_str(f.get("progress").map_or("[]", |s| s.as_str()))
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(Job {
        id,
        integration: IntegrationId(
            f.get("integration")
                .cloned()
                .ok_or_else(|| corrupt("field integration missing".into()))?,
        ),
        attempt: num(&f, "attempt")?.max(0) as u32,
        accepted_at: from_ms(num(&f, "accepted_at")?),
        not_before: from_ms(num(&f, "not_before")?),
        failed_at: f
            .get("failed_at")
            .and_then(|v| v.parse::<i64>().ok())
            .map(from_ms),
        fallback: f.get("fallback").is_some_and(|v| v == "1"),
        held: f.get("held").is_some_and(|v| v == "1"),
        notification,
        progress,
        receiver: f.remove("receiver").unwrap_or_default(),
        kind: f.remove("kind").unwrap_or_default(),
        last_error: f.remove("last_error"),
        reason: f.remove("reason"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_repeating_them() {
        assert!(check_url(&Secret::new("redis://127.0.0.1:6379/0")).is_ok());
        assert!(check_url(&Secret::new("rediss://:pa55word@redis.example:6380")).is_ok());
        let e = check_url(&Secret::new("http://user:hunter22@redis:6379")).unwrap_err();
        assert!(!e.contains("hunter22"), "{e}");
        assert_eq!(
            url_password(&Secret::new("redis://:hunter22@redis:6379/0"))
                .map(|s| s.expose().to_string()),
            Some("hunter22".to_string())
        );
        assert!(url_password(&Secret::new("redis://redis:6379/0")).is_none());
    }
}
