//! WxPusher: `POST {api}/api/send/message` with an app token to UIDs and topics.
//!
//! Limits from the API's own documentation are enforced here, before sending: content ≤ 40000
//! and summary ≤ 100 characters (as Java counts them, UTF-16 units), url ≤ 1000, ≤ 2000 UIDs and
//! ≤ 5 topics per call. Over-long content is split on alert boundaries into numbered parts.
//! WxPusher answers HTTP 200 for business errors: success is `code == 1000`, for the call and
//! for each recipient entry in `data`.
//!
//! Each UID has a daily budget per app token (`daily_budget_per_uid`, 500 by default): a
//! counter in the store, so restarts and replicas share it. The day runs from midnight to
//! midnight in Asia/Shanghai, WxPusher's own timezone. A UID is reserved one message of its
//! budget before each call and given it back when the call did not deliver to it; a UID
//! whose budget is spent is left out of the call and recorded in the job's progress as
//! skipped for that day, and the delivery then fails permanently with reason `quota` for
//! those UIDs (dead letter, fallback receiver). Topics are not budgeted: their members are
//! unknown.

pub mod chatops;
pub mod config;
pub mod contact;
pub mod inbound;
pub mod oncall;
pub mod qrcode;

pub mod classify;
pub mod spt;
pub mod status;
pub mod templates;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Entry, Env, Outbound, Progress, Recipient};
use crate::channels::error::{DeliveryError, Reason};
use crate::channels::http;
use crate::secret::Secret;
use crate::store::Store;
use crate::template::Locale;
use crate::text;
use crate::webhook::Notification;
use classify::call_error;

pub const CONTENT_MAX: usize = 40_000;
pub const SUMMARY_MAX: usize = 100;
pub const URL_MAX: usize = 1_000;
pub const UIDS_PER_CALL: usize = 2_000;
pub const TOPICS_PER_CALL: usize = 5;
/// Room kept in each part for the "(part 1/3)" line.
const PART_HEADER_ROOM: usize = 40;

/// A group with more alerts than this is rendered and split block by block, this many alerts
/// at a time: its memory is bounded by a block, not by the group (10,000 alerts at most).
/// The size of a bounded context, so that a group no larger has its whole context there.
const SPLIT_BLOCK: usize = crate::template::BOUNDED_ALERTS;
const SERVICE: &str = "wxpusher";

/// The channel's kind name: metric label, identity prefix, `wxpusher_configs`.
pub const KIND: &str = "wxpusher";

#[derive(Debug)]
pub struct WxPusher {
    /// `{api_url}/api/send/message` is called.
    pub api_url: String,
    pub app_token: Secret,
    /// Simple-push tokens, sent to instead of `app_token` with uids and topics (never both:
    /// config validation refuses the mix). Each is a recipient named by its [`spt::Spt::id`].
    pub spts: Vec<spt::Spt>,
    pub uids: Vec<String>,
    pub topic_ids: Vec<i64>,
    /// `extra` tags of QR-code subscribers who get the messages too (resolved per delivery
    /// into [`Env::subscribers`]).
    pub subscriber_tags: Vec<String>,
    pub content_type: ContentType,
    /// Template names.
    pub summary: String,
    pub content: String,
    pub url: String,
    /// Preview length in visible characters (≤ 100).
    pub summary_max: usize,
    /// Requests per second allowed for this app token; `None`: unlimited.
    pub rate_limit: Option<crate::channels::options::RateLimit>,
    /// Messages one UID may get from this app token per day (≥ 1).
    pub daily_budget: u32,
}

/// The request body, field names as the API spells them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SendBody<'a> {
    app_token: &'a str,
    content: &'a str,
    summary: &'a str,
    content_type: u8,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    uids: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    topic_ids: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct SendResult {
    code: i64,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    data: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecipientResult {
    uid: Option<String>,
    topic_id: Option<i64>,
    code: i64,
    #[serde(default)]
    status: String,
    /// The record WxPusher created for this recipient: what its status query names.
    #[serde(default)]
    send_record_id: Option<i64>,
}

/// One message: the same summary, content and link to every recipient.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    summary: String,
    content: String,
    url: Option<String>,
}

/// Progress entry of part `part` delivered to a UID (or an SPT, by its id).
fn uid_key(part: usize, uid: &str) -> Entry {
    Entry::Sent {
        part,
        to: Recipient::Uid(uid.to_string()),
    }
}

fn topic_key(part: usize, topic: i64) -> Entry {
    Entry::Sent {
        part,
        to: Recipient::Topic(topic),
    }
}

/// Progress entry of a UID left out on `day` because its budget was spent: retries that day
/// leave it out too; on a later day (a retry across midnight, a replay) it is sent to again.
/// The entry names the budget it was made under: after `daily_budget_per_uid` is raised (a
/// replayed dead letter, a retry after a reload), the UID is counted again against the new one.
fn quota_key(day: NaiveDate, budget: u32, uid: &str) -> Entry {
    Entry::OverBudget {
        day,
        budget,
        to: uid.to_string(),
    }
}

/// The budget day `now` falls in and when it ends. The day is WxPusher's: midnight to
/// midnight in Asia/Shanghai (UTC+8, no daylight saving).
fn budget_day(now: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
    let tz = chrono_tz::Asia::Shanghai;
    let day = now.with_timezone(&tz).date_naive();
    let next = day
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| tz.from_local_datetime(&t).single())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now + chrono::Duration::days(1));
    (day, next)
}

impl WxPusher {
    /// Names the app token's rate-limit bucket without holding the token itself.
    pub fn rate_key(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.app_token.expose().as_bytes());
        for s in &self.spts {
            h.update(b"\n");
            h.update(s.token.expose().as_bytes());
        }
        let digest = h.finalize();
        format!("wxpusher:{}", hex::encode(&digest[..8]))
    }

    fn endpoint(&self) -> String {
        if self.is_simple() {
            return self.simple_endpoint();
        }
        format!("{}/api/send/message", self.api_url.trim_end_matches('/'))
    }

    /// The store counter of one UID's messages on `day`: named after a hash of the app
    /// token (never the token, a secret) and the UID.
    fn budget_key(&self, day: NaiveDate, uid: &str) -> String {
        format!("{}:budget:{day}:{uid}", self.rate_key())
    }

    /// A plain-text reply to one user (a chat command's answer) through this integration's own
    /// client: its rate limit, its daily budget when `env.store` is set, and its reading of
    /// WxPusher's codes.
    pub async fn reply(&self, env: &Env<'_>, uid: &str, text: &str) -> Result<(), DeliveryError> {
        let part = Part {
            summary: fit_summary(&text::one_line(text), self.summary_max),
            content: text.to_string(),
            url: None,
        };
        let batch = Batch {
            part_index: 0,
            part,
            uids: vec![uid.to_string()],
            topic_ids: Vec::new(),
            content_type: Some(ContentType::Text),
        };
        let mut counted = None;
        if let Some(store) = env.store
            && let Some(over) = self.reserve(store, &batch.uids, env.now).await
        {
            if !over.is_empty() {
                return Err(DeliveryError::Budget {
                    service: SERVICE,
                    recipients: over.len(),
                    budget: self.daily_budget,
                });
            }
            counted = Some(store);
        }
        let (mut progress, mut failed, mut last_failure) = (Progress::new(), Vec::new(), None);
        let outcome = self
            .send_batch(
                env,
                &batch,
                &mut progress,
                &mut failed,
                &mut last_failure,
                &mut Vec::new(),
            )
            .await;
        if let Some(store) = counted
            && progress.is_empty()
        {
            self.release(store, &batch.uids, env.now).await;
        }
        outcome?;
        match last_failure {
            Some((code, message)) => Err(DeliveryError::Upstream {
                service: SERVICE,
                code,
                message,
                reason: Reason::Recipient,
                retryable: true,
                recipients: failed,
            }),
            None => Ok(()),
        }
    }

    /// Takes one message of each UID's budget for today, in one store round trip; returns
    /// the UIDs whose budget was already spent, or `None` when the store cannot count: that
    /// does not stop the alert, the UIDs are sent to uncounted and a warning logged.
    async fn reserve(
        &self,
        store: &Store,
        uids: &[String],
        now: DateTime<Utc>,
    ) -> Option<Vec<String>> {
        let (day, ends) = budget_day(now);
        let keys = uids.iter().map(|u| self.budget_key(day, u)).collect();
        match store
            .take_counters(keys, 1, Some(i64::from(self.daily_budget)), ends)
            .await
        {
            Ok(taken) => Some(
                uids.iter()
                    .zip(taken)
                    .filter(|(_, taken)| !taken)
                    .map(|(u, _)| u.clone())
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, uids = uids.len(), "cannot count the daily budget of WxPusher UIDs, sending uncounted");
                None
            }
        }
    }

    /// Gives back the reservations of UIDs a call did not deliver to.
    async fn release(&self, store: &Store, uids: &[String], now: DateTime<Utc>) {
        if uids.is_empty() {
            return;
        }
        let (day, ends) = budget_day(now);
        let keys = uids.iter().map(|u| self.budget_key(day, u)).collect();
        if let Err(e) = store.take_counters(keys, -1, None, ends).await {
            tracing::warn!(error = %e, "cannot undo a daily budget reservation");
        }
    }

    /// Renders the message, split into parts when the content is over the limit. The summary
    /// and the url come from a bounded context; the content of a group of more than
    /// [`SPLIT_BLOCK`] alerts is rendered block by block ([`WxPusher::split`]).
    fn parts(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<Part>, DeliveryError> {
        let ctx = env.templates.bounded_context(n, env.now);
        let summary = text::one_line(&env.templates.render(&self.summary, &ctx)?);
        let url = env.templates.render(&self.url, &ctx)?.trim().to_string();
        let url = self.checked_url(n, url);
        if n.alerts.len() > SPLIT_BLOCK {
            // A large group is never rendered whole: its content goes block by block.
            drop(ctx);
            return Ok(self.numbered(env, summary, url, self.split(env, n)?));
        }
        // A group this small has its whole context (SPLIT_BLOCK is the bounded context's size).
        let content = env
            .templates
            .render(&self.content, &ctx)?
            .trim()
            .to_string();
        drop(ctx);
        let bodies = if text::upstream_len(&content) <= CONTENT_MAX {
            vec![content]
        } else {
            self.split(env, n)?
        };
        Ok(self.numbered(env, summary, url, bodies))
    }

    /// The url field, unless it is empty or over the upstream's limit.
    fn checked_url(&self, n: &Notification, url: String) -> Option<String> {
        // Only an http(s) link is offered to the reader, whatever the template produced.
        let url = crate::template::safe_url(&url)
            .unwrap_or_default()
            .to_string();
        if url.is_empty() {
            None
        } else if text::upstream_len(&url) > URL_MAX {
            tracing::warn!(
                receiver = %n.receiver,
                length = text::upstream_len(&url),
                limit = URL_MAX,
                "wxpusher url too long, sending without it"
            );
            None
        } else {
            Some(url)
        }
    }

    /// The bodies as parts, numbered when there are several.
    fn numbered(
        &self,
        env: &Env<'_>,
        summary: String,
        url: Option<String>,
        bodies: Vec<String>,
    ) -> Vec<Part> {
        let total = bodies.len();
        let locale = env.templates.locale();
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let (summary, content) = if total == 1 {
                    (summary.clone(), body)
                } else {
                    (
                        format!("[{}/{total}] {summary}", i + 1),
                        format!("{}\n\n{body}", self.part_header(locale, i + 1, total)),
                    )
                };
                Part {
                    summary: fit_summary(&summary, self.summary_max),
                    content,
                    url: url.clone(),
                }
            })
            .collect()
    }

    fn part_header(&self, locale: Locale, i: usize, total: usize) -> String {
        let words = match locale {
            Locale::ZhCn => format!("（第 {i}/{total} 部分）"),
            Locale::En => format!("(part {i}/{total})"),
        };
        match self.content_type {
            ContentType::Html => format!("<p>{words}</p>"),
            _ => words,
        }
    }

    /// Splits the alerts into consecutive groups whose rendering fits, as few as it can.
    /// Incremental: blocks of [`SPLIT_BLOCK`] alerts are rendered one at a time and each
    /// piece is merged into the part being built at once, so what is held besides the parts
    /// is one block's context, never the whole group's.
    fn split(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<String>, DeliveryError> {
        let limit = CONTENT_MAX - PART_HEADER_ROOM;
        let shell = n.without_alerts();
        let render = |from: usize, to: usize| -> Result<String, DeliveryError> {
            let mut ctx = env
                .templates
                .context(&shell.subset(n.alerts[from..to].to_vec()), env.now);
            // The counts and names still describe the whole group.
            crate::template::describe_group(&mut ctx, n);
            Ok(env
                .templates
                .render(&self.content, &ctx)?
                .trim()
                .to_string())
        };
        let mut merged: Vec<(usize, usize, String)> = Vec::new();
        let blocks = n.alerts.len().div_ceil(SPLIT_BLOCK);
        for b in 0..blocks {
            let (start, end) = (b * SPLIT_BLOCK, ((b + 1) * SPLIT_BLOCK).min(n.alerts.len()));
            // Halve until every piece fits (or is a single alert), then merge each piece into
            // the previous part while the merged rendering still fits.
            let mut pending = vec![(start, end)];
            while let Some((from, to)) = pending.pop() {
                let body = render(from, to)?;
                let body = if text::upstream_len(&body) <= limit {
                    body
                } else if to - from == 1 {
                    let cut = text::upstream_prefix(&body, limit - 1);
                    format!("{cut}{}", text::ELLIPSIS)
                } else {
                    let mid = from + (to - from) / 2;
                    // Pushed in reverse so the stack pops them in alert order.
                    pending.push((mid, to));
                    pending.push((from, mid));
                    continue;
                };
                if let Some(last) = merged.last_mut() {
                    let both = render(last.0, to)?;
                    if text::upstream_len(&both) <= limit {
                        *last = (last.0, to, both);
                        continue;
                    }
                }
                merged.push((from, to, body));
            }
        }
        Ok(merged.into_iter().map(|(_, _, body)| body).collect())
    }

    /// The requests still to make: every part to every recipient not yet in `progress`,
    /// batched within the per-call recipient limits.
    pub fn prepare(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &Progress,
    ) -> Result<Vec<Outbound>, DeliveryError> {
        Ok(self
            .batches(env, n, progress)?
            .into_iter()
            .map(|b| Outbound {
                method: "POST",
                url: self.endpoint(),
                body: self.body(&b),
            })
            .collect())
    }

    fn body(&self, b: &Batch) -> Value {
        if self.is_simple() {
            return self.simple_body(b);
        }
        serde_json::to_value(SendBody {
            app_token: self.app_token.expose(),
            content: &b.part.content,
            summary: &b.part.summary,
            content_type: b.content_type.unwrap_or(self.content_type).code(),
            uids: &b.uids,
            topic_ids: &b.topic_ids,
            url: b.part.url.as_deref(),
        })
        .unwrap_or(Value::Null)
    }

    fn batches(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &Progress,
    ) -> Result<Vec<Batch>, DeliveryError> {
        let (day, _) = budget_day(env.now);
        let mut out = Vec::new();
        for (p, part) in self.parts(env, n)?.into_iter().enumerate() {
            let uids: Vec<String> = self
                .recipients(env)
                .filter(|u| {
                    !progress.contains(&uid_key(p, u))
                        && !progress.contains(&quota_key(day, self.daily_budget, u))
                        && !progress.contains(&spt::refused_key(u))
                })
                .cloned()
                .collect();
            let topics: Vec<i64> = self
                .topic_ids
                .iter()
                .filter(|t| !progress.contains(&topic_key(p, **t)))
                .copied()
                .collect();
            let per_call = if self.is_simple() {
                spt::SPTS_PER_CALL
            } else {
                UIDS_PER_CALL
            };
            let uid_chunks: Vec<&[String]> = uids.chunks(per_call).collect();
            let topic_chunks: Vec<&[i64]> = topics.chunks(TOPICS_PER_CALL).collect();
            for i in 0..uid_chunks.len().max(topic_chunks.len()) {
                out.push(Batch {
                    part_index: p,
                    part: part.clone(),
                    uids: uid_chunks.get(i).map(|c| c.to_vec()).unwrap_or_default(),
                    topic_ids: topic_chunks.get(i).map(|c| c.to_vec()).unwrap_or_default(),
                    content_type: None,
                });
            }
        }
        Ok(out)
    }

    /// Sends every missing part to every recipient not yet in `progress`, within the UIDs'
    /// daily budgets. Per-recipient failures WxPusher reports are retried; UIDs over budget
    /// fail for the day (permanent, reason `quota`) once everyone else is done.
    pub async fn send(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &mut Progress,
    ) -> Result<(), DeliveryError> {
        self.send_with_records(env, n, progress, &mut Vec::new())
            .await
    }

    /// [`Self::send`], adding each delivered uid's `sendRecordId` to `records` (what the
    /// status query names, [`status`]).
    pub async fn send_with_records(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &mut Progress,
        records: &mut Vec<(String, i64)>,
    ) -> Result<(), DeliveryError> {
        let (day, _) = budget_day(env.now);
        let mut failed: Vec<String> = Vec::new();
        let mut last_failure: Option<(i64, String)> = None;
        for mut batch in self.batches(env, n, progress)? {
            // Left out of an earlier part during this attempt.
            batch
                .uids
                .retain(|u| !progress.contains(&quota_key(day, self.daily_budget, u)));
            let mut counted = None;
            if let Some(store) = env.store
                && let Some(over) = self.reserve(store, &batch.uids, env.now).await
            {
                counted = Some(store);
                if !over.is_empty() {
                    tracing::warn!(
                        uids = over.len(),
                        budget = self.daily_budget,
                        "WxPusher UIDs over their daily budget are left out of this message until midnight (Asia/Shanghai)"
                    );
                    for uid in &over {
                        progress.insert(quota_key(day, self.daily_budget, uid));
                    }
                    batch.uids.retain(|u| !over.contains(u));
                }
            }
            if batch.uids.is_empty() && batch.topic_ids.is_empty() {
                continue;
            }
            let outcome = self
                .send_batch(
                    env,
                    &batch,
                    progress,
                    &mut failed,
                    &mut last_failure,
                    records,
                )
                .await;
            if let Some(store) = counted {
                let undelivered: Vec<String> = batch
                    .uids
                    .iter()
                    .filter(|u| !progress.contains(&uid_key(batch.part_index, u)))
                    .cloned()
                    .collect();
                self.release(store, &undelivered, env.now).await;
            }
            outcome?;
        }
        if !failed.is_empty()
            && let Some((code, message)) = last_failure
        {
            return Err(DeliveryError::Upstream {
                service: SERVICE,
                code,
                message,
                reason: Reason::Recipient,
                // Per-recipient statuses are not documented; WxPusher says most are transient.
                retryable: true,
                recipients: failed,
            });
        }
        if let Some(e) = self.refused_error(progress, last_failure.as_ref()) {
            return Err(e);
        }
        let skipped = self
            .recipients(env)
            .filter(|u| progress.contains(&quota_key(day, self.daily_budget, u)))
            .count();
        if skipped > 0 {
            return Err(DeliveryError::Budget {
                service: SERVICE,
                recipients: skipped,
                budget: self.daily_budget,
            });
        }
        Ok(())
    }

    /// The configured SPTs or UIDs, then the subscribers not among them.
    fn recipients<'e>(&'e self, env: &'e Env<'_>) -> impl Iterator<Item = &'e String> {
        self.spts
            .iter()
            .map(|s| &s.id)
            .chain(&self.uids)
            .chain(env.subscribers.iter().filter(|u| !self.uids.contains(u)))
    }

    /// One call; recipients it delivered to go into `progress` (with their send records into
    /// `records`), the others into `failed`.
    async fn send_batch(
        &self,
        env: &Env<'_>,
        batch: &Batch,
        progress: &mut Progress,
        failed: &mut Vec<String>,
        last_failure: &mut Option<(i64, String)>,
        records: &mut Vec<(String, i64)>,
    ) -> Result<(), DeliveryError> {
        let result = self.call(env, batch).await?;
        if result.code != 1000 {
            return Err(call_error(result.code, env.scrubber.scrub(&result.msg)));
        }
        if self.is_simple() {
            self.account_spts(env, batch, &result, progress, failed, last_failure);
            return Ok(());
        }
        let entries: Vec<RecipientResult> = match &result.data {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| serde_json::from_value(v.clone()).ok())
                .collect(),
            _ => Vec::new(),
        };
        let mut accounted = std::collections::HashSet::new();
        for e in &entries {
            let key = match (&e.uid, e.topic_id) {
                (Some(uid), _) if batch.uids.contains(uid) => uid_key(batch.part_index, uid),
                (_, Some(t)) if batch.topic_ids.contains(&t) => topic_key(batch.part_index, t),
                _ => continue,
            };
            accounted.insert(key.clone());
            if e.code == 1000 {
                if let (Some(uid), Some(id)) = (&e.uid, e.send_record_id) {
                    records.push((uid.clone(), id));
                }
                progress.insert(key);
            } else {
                failed.push(
                    e.uid
                        .clone()
                        .unwrap_or_else(|| format!("topic {}", e.topic_id.unwrap_or_default())),
                );
                *last_failure = Some((e.code, env.scrubber.scrub(&e.status)));
            }
        }
        // Call-level success without a per-recipient entry: the call covered them.
        for uid in &batch.uids {
            let key = uid_key(batch.part_index, uid);
            if !accounted.contains(&key) {
                progress.insert(key);
            }
        }
        for t in &batch.topic_ids {
            let key = topic_key(batch.part_index, *t);
            if !accounted.contains(&key) {
                progress.insert(key);
            }
        }
        Ok(())
    }

    async fn call(&self, env: &Env<'_>, batch: &Batch) -> Result<SendResult, DeliveryError> {
        if let Some(limit) = self.rate_limit {
            env.limits.acquire(&self.rate_key(), limit).await;
        }
        let request = env.client.post(self.endpoint()).json(&self.body(batch));
        http::send(SERVICE, request)
            .await?
            .success_json(SERVICE, |s| env.scrubber.scrub(s))
    }
}

#[derive(Debug)]
struct Batch {
    part_index: usize,
    part: Part,
    uids: Vec<String>,
    topic_ids: Vec<i64>,
    /// The body type, when not the integration's own (a chat reply is plain text).
    content_type: Option<ContentType>,
}

/// The preview cut to `max` visible characters, and further if WxPusher's own limit
/// ([`SUMMARY_MAX`] UTF-16 units: an emoji counts two there) would still be exceeded.
fn fit_summary(summary: &str, max: usize) -> String {
    let mut n = max.min(SUMMARY_MAX);
    loop {
        let cut = text::truncate(summary, n);
        if n == 0 || text::upstream_len(&cut) <= SUMMARY_MAX {
            return cut;
        }
        n -= 1;
    }
}

/// WxPusher's message body types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    Text,
    Html,
    #[default]
    Markdown,
}

impl ContentType {
    /// The number WxPusher's `contentType` field takes.
    pub fn code(self) -> u8 {
        match self {
            ContentType::Text => 1,
            ContentType::Html => 2,
            ContentType::Markdown => 3,
        }
    }
}

/// The link template defaults to an on-call page's one-tap acknowledge link, else the
/// sender's external URL.
pub fn complete_templates(templates: &mut crate::template::Templates) -> Vec<String> {
    if templates.has("wxpusher.url") {
        return Vec::new();
    }
    match templates.add(
        "wxpusher.url",
        "{{#if incident.ack_url}}{{incident.ack_url}}{{else}}{{externalURL}}{{/if}}",
    ) {
        Ok(()) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}

impl WxPusher {
    /// What identifies the recipients: the app token's fingerprint, the uids, topics and
    /// subscriber tags, and each simple-push token by its id (a hash, not the secret).
    pub(crate) fn identity(&self, parts: &mut Vec<String>) {
        use crate::channels::{fingerprint, sorted};
        parts.push(fingerprint(&self.app_token));
        parts.extend(sorted(&self.uids).into_iter().map(|u| format!("uid={u}")));
        let topics: Vec<String> = self
            .topic_ids
            .iter()
            .map(|t| format!("topic={t}"))
            .collect();
        parts.extend(sorted(&topics));
        parts.extend(
            sorted(&self.subscriber_tags)
                .into_iter()
                .map(|t| format!("tag={t}")),
        );
        let spts: Vec<String> = self.spts.iter().map(|s| format!("spt={}", s.id)).collect();
        parts.extend(sorted(&spts));
    }
}

/// What the phone shows: the `summary` as the notification line, the content in its format,
/// the link.
pub fn preview(requests: &[Outbound]) -> crate::channels::preview::Preview {
    use crate::channels::preview::{Preview, str_of};
    let b = requests.first().map(|r| &r.body).unwrap_or(&Value::Null);
    Preview {
        line: str_of(b.get("summary")),
        body: str_of(b.get("content")),
        format: match b.get("contentType").and_then(Value::as_u64) {
            Some(2) => "html",
            Some(3) => "markdown",
            _ => "text",
        }
        .into(),
        url: b.get("url").and_then(Value::as_str).map(str::to_string),
        ..Preview::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_fits_visible_and_upstream_limits() {
        assert_eq!(
            fit_summary("🔥 [FIRING] HighCPU ×2", 20),
            "🔥 [FIRING] HighCPU …"
        );
        // 100 visible characters, but 200 UTF-16 units: cut until WxPusher takes it.
        let fire = "🔥".repeat(120);
        let s = fit_summary(&fire, 100);
        assert!(text::upstream_len(&s) <= SUMMARY_MAX, "{s}");
        assert_eq!(s, format!("{}…", "🔥".repeat(49)));
        assert_eq!(fit_summary(&"a".repeat(120), 100).chars().count(), 100);
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn budget_day_is_midnight_to_midnight_in_shanghai() {
        // 15:59:59 UTC is 23:59:59 in Shanghai: still the 25th, ending one second later.
        assert_eq!(
            budget_day(at("2026-11-25T15:59:59Z")),
            (
                NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
                at("2026-11-25T16:00:00Z")
            )
        );
        // 16:00 UTC is midnight in Shanghai: the 26th has begun, though UTC is still on the 25th.
        assert_eq!(
            budget_day(at("2026-11-25T16:00:00Z")),
            (
                NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(),
                at("2026-11-26T16:00:00Z")
            )
        );
        // Across a month and a year.
        assert_eq!(
            budget_day(at("2026-12-31T20:00:00Z")),
            (
                NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
                at("2027-01-01T16:00:00Z")
            )
        );
    }

    fn pusher(token: &str) -> WxPusher {
        WxPusher {
            api_url: "http://127.0.0.1:1".into(),
            app_token: Secret::new(token),
            spts: vec![],
            uids: vec!["UID_a".into()],
            topic_ids: vec![],
            subscriber_tags: vec![],
            content_type: ContentType::Markdown,
            summary: String::new(),
            content: String::new(),
            url: String::new(),
            summary_max: 20,
            rate_limit: None,
            daily_budget: 500,
        }
    }

    #[test]
    fn budget_key_names_token_hash_day_and_uid_never_the_token() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let a = pusher("AT_secret_one");
        let key = a.budget_key(day, "UID_a");
        assert!(!key.contains("AT_secret_one"), "{key}");
        assert_eq!(key, format!("{}:budget:2026-11-26:UID_a", a.rate_key()));
        assert_eq!(a.rate_key().len(), "wxpusher:".len() + 16);
        // Another token, another UID or another day: another counter.
        assert_ne!(key, pusher("AT_secret_two").budget_key(day, "UID_a"));
        assert_ne!(key, a.budget_key(day, "UID_b"));
        assert_ne!(key, a.budget_key(day.succ_opt().unwrap(), "UID_a"));
        assert_eq!(
            quota_key(day, 500, "UID_a").to_string(),
            "quota/2026-11-26/500/uid/UID_a"
        );
    }

    #[test]
    fn budget_error_is_permanent_quota() {
        let e = DeliveryError::Budget {
            service: SERVICE,
            recipients: 2,
            budget: 500,
        };
        assert!(!e.is_retryable());
        assert_eq!(e.reason(), Reason::Quota);
        assert_eq!(
            e.to_string(),
            "wxpusher: 2 recipient(s) over the daily budget of 500 messages, not sent to them before midnight (Asia/Shanghai)"
        );
    }
}

#[cfg(test)]
mod identity {
    use crate::channels::identity_of;

    /// Stored deliveries are bound to this identity: a change of its inputs re-sends every
    /// pending job after an upgrade, so its value is pinned and changing it is a decision.
    #[test]
    fn identity_is_pinned() {
        assert_eq!(
            identity_of::<super::config::WxPusherConfig>(
                "{app_token: AT_abcdefgh, uids: [UID_b, UID_a], topic_ids: [7, 3], subscriber_tags: [ops]}"
            ),
            "wxpusher-a5b038380864b877"
        );
        assert_eq!(
            identity_of::<super::config::WxPusherConfig>("{spts: [SPT_one, SPT_two]}"),
            "wxpusher-721b31ddea31305d"
        );
    }
}
