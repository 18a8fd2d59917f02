//! Chatops records in the shared Redis: group references and WxPusher subscribers, with the
//! same meaning as [`crate::store::chatops`] gives them and `sqlite/chatops.rs` keeps in SQLite.
//!
//! A reference is one JSON value (`co:ref:<ref>`) plus an index from its group
//! (`co:group:<receiver>\n<group key>`), both expiring when the SQLite store would prune them
//! (a grace period after the group resolved, or long after its last push). Changes are
//! computed here and written with a compare-and-set script, retried when another replica got
//! there first. Firing references are also in a sorted set by creation time; subscribers are
//! one sorted set per QR-code tag, scored by subscription time.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Script;
use serde::{Deserialize, Serialize};

use super::{RedisStore, from_ms, ms};
use crate::store::StoreError;
use crate::store::chatops::{
    REF_LEN, RESOLVED_GRACE, RefRecord, STALE_AFTER, Subscriber, Touch, new_reference,
};
use crate::webhook::{Ack, LabelSet};

static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("prelude.lua"),
        include_str!("chatops_put.lua")
    ))
});

/// Attempts of one change before giving up under contention.
const ATTEMPTS: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    reference: String,
    receiver: String,
    group_key: String,
    labels: LabelSet,
    alerts: Vec<LabelSet>,
    recipients: Vec<String>,
    created_at: i64,
    updated_at: i64,
    resolved_at: Option<i64>,
    ack: Option<Ack>,
}

impl Stored {
    fn record(self) -> RefRecord {
        RefRecord {
            reference: self.reference,
            receiver: self.receiver,
            group_key: self.group_key,
            labels: self.labels,
            alerts: self.alerts,
            recipients: self.recipients,
            resolved_at: self.resolved_at.map(from_ms),
            ack: self.ack,
        }
    }

    /// When the SQLite store would prune it.
    fn expires_at(&self) -> i64 {
        match self.resolved_at {
            Some(r) => r + RESOLVED_GRACE.num_milliseconds(),
            None => self.updated_at + STALE_AFTER.num_milliseconds(),
        }
    }
}

fn encode(s: &Stored) -> Result<String, StoreError> {
    serde_json::to_string(s).map_err(|e| StoreError::Db(format!("cannot encode: {e}")))
}

impl RedisStore {
    async fn get(&self, key: String) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(&key));
        self.cmd(cmd).await
    }

    async fn read_ref(&self, reference: &str) -> Result<Option<(String, Stored)>, StoreError> {
        Ok(self
            .get(format!("co:ref:{reference}"))
            .await?
            .and_then(|raw| serde_json::from_str(&raw).ok().map(|s| (raw, s))))
    }

    /// Writes `new` if the record still reads `old` (`""`: does not exist yet).
    async fn put(&self, group: &str, old: &str, new: &Stored) -> Result<i64, StoreError> {
        let (reference, group, old) = (new.reference.clone(), group.to_string(), old.to_string());
        let (json, expires, firing, created) = (
            encode(new)?,
            new.expires_at(),
            if new.resolved_at.is_none() { "1" } else { "0" },
            new.created_at,
        );
        self.eval_durable(&PUT, move |i| {
            i.arg(reference)
                .arg(group)
                .arg(old)
                .arg(json)
                .arg(expires)
                .arg(firing)
                .arg(created);
        })
        .await
    }

    pub async fn chatops_touch(&self, t: Touch) -> Result<Option<RefRecord>, StoreError> {
        let group = format!("{}\n{}", t.receiver, t.group_key);
        let now = ms(t.now);
        for attempt in 0..ATTEMPTS {
            let current = match self.get(format!("co:group:{group}")).await? {
                Some(reference) => self.read_ref(&reference).await?,
                None => None,
            };
            let Some((raw, mut rec)) = current else {
                if !t.firing {
                    return Ok(None);
                }
                let len = if attempt < ATTEMPTS / 2 {
                    REF_LEN
                } else {
                    REF_LEN + 1
                };
                let rec = Stored {
                    reference: new_reference(len),
                    receiver: t.receiver.clone(),
                    group_key: t.group_key.clone(),
                    labels: t.labels.clone(),
                    alerts: t.alerts.clone(),
                    recipients: t.recipients.clone(),
                    created_at: now,
                    updated_at: now,
                    resolved_at: None,
                    ack: None,
                };
                if self.put(&group, "", &rec).await? == 1 {
                    return Ok(Some(rec.record()));
                }
                continue;
            };
            for r in &t.recipients {
                if !rec.recipients.contains(r) {
                    rec.recipients.push(r.clone());
                }
            }
            if t.firing {
                // Firing again after it resolved: an old acknowledgement no longer holds.
                if rec.resolved_at.is_some() {
                    rec.ack = None;
                }
                rec.resolved_at = None;
                rec.labels = t.labels.clone();
                rec.alerts = t.alerts.clone();
            } else if rec.resolved_at.is_none() {
                rec.resolved_at = Some(now);
            }
            rec.updated_at = now;
            if self.put(&group, &raw, &rec).await? == 1 {
                return Ok(Some(rec.record()));
            }
        }
        Err(StoreError::Db(
            "chatops: a group reference kept changing under contention".into(),
        ))
    }

    pub async fn chatops_ref(
        &self,
        reference: String,
        now: DateTime<Utc>,
    ) -> Result<Option<RefRecord>, StoreError> {
        let oldest = ms(now - RESOLVED_GRACE);
        Ok(self
            .read_ref(&reference)
            .await?
            .map(|(_, s)| s)
            .filter(|s| s.resolved_at.is_none_or(|r| r >= oldest))
            .map(Stored::record))
    }

    pub async fn chatops_ack(&self, reference: String, ack: Ack) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let Some((raw, mut rec)) = self.read_ref(&reference).await? else {
                return Ok(false);
            };
            rec.ack = Some(ack.clone());
            let group = format!("{}\n{}", rec.receiver, rec.group_key);
            if self.put(&group, &raw, &rec).await? == 1 {
                return Ok(true);
            }
        }
        Err(StoreError::Db(
            "chatops: a group reference kept changing under contention".into(),
        ))
    }

    pub async fn chatops_firing(&self) -> Result<Vec<RefRecord>, StoreError> {
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(self.key("co:firing")).arg(0).arg(-1);
        let refs: Vec<String> = self.cmd(cmd).await?;
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for r in refs {
            match self.read_ref(&r).await? {
                Some((_, s)) if s.resolved_at.is_none() => out.push(s.record()),
                Some(_) => {}
                None => gone.push(r),
            }
        }
        if !gone.is_empty() {
            // Expired while firing (stale): forget them here too.
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(self.key("co:firing")).arg(gone);
            let _: i64 = self.cmd(cmd).await?;
        }
        Ok(out)
    }

    pub async fn subscriber_add(
        &self,
        uid: String,
        extra: String,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.key(&format!("co:subs:{extra}")))
            .arg(ms(at))
            .arg(uid);
        let _: i64 = self.cmd(cmd).await?;
        Ok(())
    }

    /// The keys of every tag's subscriber set, found with `SCAN` (no index to keep in step).
    async fn subscriber_keys(&self) -> Result<Vec<String>, StoreError> {
        let prefix = self.key("co:subs:");
        let mut pattern = String::with_capacity(prefix.len() + 1);
        for c in prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500);
            let (next, batch): (u64, Vec<String>) = self.cmd(cmd).await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    pub async fn subscriber_list(&self) -> Result<Vec<Subscriber>, StoreError> {
        let prefix = self.key("co:subs:");
        let mut out = Vec::new();
        for key in self.subscriber_keys().await? {
            let extra = key.strip_prefix(&prefix).unwrap_or_default().to_string();
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(&key).arg(0).arg(-1).arg("WITHSCORES");
            // Scores are doubles on the wire; subscription times in ms fit one exactly.
            let members: Vec<(String, f64)> = self.cmd(cmd).await?;
            out.extend(members.into_iter().map(|(uid, at)| Subscriber {
                uid,
                extra: extra.clone(),
                subscribed_at: from_ms(at as i64),
            }));
        }
        out.sort_by(|a, b| {
            (a.subscribed_at, &a.uid, &a.extra).cmp(&(b.subscribed_at, &b.uid, &b.extra))
        });
        Ok(out)
    }

    pub async fn subscriber_remove(&self, uid: String) -> Result<usize, StoreError> {
        let mut removed = 0;
        for key in self.subscriber_keys().await? {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(&key).arg(&uid);
            let n: usize = self.cmd(cmd).await?;
            removed += n;
        }
        Ok(removed)
    }

    pub async fn subscribers(&self, tags: Vec<String>) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = Vec::new();
        for tag in tags {
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(self.key(&format!("co:subs:{tag}"))).arg(0).arg(-1);
            let uids: Vec<String> = self.cmd(cmd).await?;
            for u in uids {
                if !out.contains(&u) {
                    out.push(u);
                }
            }
        }
        Ok(out)
    }
}
