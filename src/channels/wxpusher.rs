//! WxPusher: `POST {api}/api/send/message` with an app token to UIDs and topics.
//!
//! Limits from the API's own documentation are enforced here, before sending: content ≤ 40000
//! and summary ≤ 100 characters (as Java counts them, UTF-16 units), url ≤ 1000, ≤ 2000 UIDs and
//! ≤ 5 topics per call. Over-long content is split on alert boundaries into numbered parts.
//! WxPusher answers HTTP 200 for business errors: success is `code == 1000`, for the call and
//! for each recipient entry in `data`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Env, Outbound, Progress};
use crate::config::{ContentType, Locale};
use crate::delivery::error::parse_retry_after;
use crate::delivery::{DeliveryError, Reason};
use crate::secret::Secret;
use crate::text;
use crate::webhook::Notification;

pub const CONTENT_MAX: usize = 40_000;
pub const SUMMARY_MAX: usize = 100;
pub const URL_MAX: usize = 1_000;
pub const UIDS_PER_CALL: usize = 2_000;
pub const TOPICS_PER_CALL: usize = 5;
/// Room kept in each part for the "(part 1/3)" line.
const PART_HEADER_ROOM: usize = 40;
const SERVICE: &str = "wxpusher";

#[derive(Debug)]
pub struct WxPusher {
    /// `{api_url}/api/send/message` is called.
    pub api_url: String,
    pub app_token: Secret,
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
    pub rate_limit: Option<crate::delivery::options::RateLimit>,
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
}

/// One message: the same summary, content and link to every recipient.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    summary: String,
    content: String,
    url: Option<String>,
}

fn uid_key(part: usize, uid: &str) -> String {
    format!("{part}/uid/{uid}")
}

fn topic_key(part: usize, topic: i64) -> String {
    format!("{part}/topic/{topic}")
}

impl WxPusher {
    /// Names the app token's rate-limit bucket without holding the token itself.
    pub fn rate_key(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.app_token.expose().as_bytes());
        format!("wxpusher:{}", hex::encode(&digest[..8]))
    }

    fn endpoint(&self) -> String {
        format!("{}/api/send/message", self.api_url.trim_end_matches('/'))
    }

    fn render_content(&self, env: &Env<'_>, n: &Notification) -> Result<String, DeliveryError> {
        let ctx = env.templates.context(n, env.now);
        Ok(env
            .templates
            .render(&self.content, &ctx)?
            .trim()
            .to_string())
    }

    /// Renders the message, split into parts when the content is over the limit.
    fn parts(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<Part>, DeliveryError> {
        let ctx = env.templates.context(n, env.now);
        let summary = text::one_line(&env.templates.render(&self.summary, &ctx)?);
        let url = env.templates.render(&self.url, &ctx)?.trim().to_string();
        let url = if url.is_empty() {
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
        };
        let content = env
            .templates
            .render(&self.content, &ctx)?
            .trim()
            .to_string();
        let bodies = if text::upstream_len(&content) <= CONTENT_MAX {
            vec![content]
        } else {
            self.split(env, n)?
        };
        let total = bodies.len();
        let locale = env.templates.locale();
        Ok(bodies
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
            .collect())
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
    fn split(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<String>, DeliveryError> {
        let limit = CONTENT_MAX - PART_HEADER_ROOM;
        // Halve until every piece fits (or is a single alert), then merge neighbours back while
        // the merged rendering still fits.
        let mut pending = vec![(0, n.alerts.len())];
        let mut leaves: Vec<(usize, usize, String)> = Vec::new();
        while let Some((from, to)) = pending.pop() {
            let body = self.render_content(env, &n.subset(n.alerts[from..to].to_vec()))?;
            if text::upstream_len(&body) <= limit {
                leaves.push((from, to, body));
            } else if to - from == 1 {
                let cut = text::upstream_prefix(&body, limit - 1);
                leaves.push((from, to, format!("{cut}{}", text::ELLIPSIS)));
            } else {
                let mid = from + (to - from) / 2;
                // Pushed in reverse so the stack pops them in alert order.
                pending.push((mid, to));
                pending.push((from, mid));
            }
        }
        let mut merged: Vec<(usize, usize, String)> = Vec::new();
        for (from, to, body) in leaves {
            if let Some(last) = merged.last_mut() {
                let both = self.render_content(env, &n.subset(n.alerts[last.0..to].to_vec()))?;
                if text::upstream_len(&both) <= limit {
                    *last = (last.0, to, both);
                    continue;
                }
            }
            merged.push((from, to, body));
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
        serde_json::to_value(SendBody {
            app_token: self.app_token.expose(),
            content: &b.part.content,
            summary: &b.part.summary,
            content_type: self.content_type.code(),
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
        let mut out = Vec::new();
        for (p, part) in self.parts(env, n)?.into_iter().enumerate() {
            let uids: Vec<String> = self
                .uids
                .iter()
                .chain(env.subscribers.iter().filter(|u| !self.uids.contains(u)))
                .filter(|u| !progress.contains(&uid_key(p, u)))
                .cloned()
                .collect();
            let topics: Vec<i64> = self
                .topic_ids
                .iter()
                .filter(|t| !progress.contains(&topic_key(p, **t)))
                .copied()
                .collect();
            let uid_chunks: Vec<&[String]> = uids.chunks(UIDS_PER_CALL).collect();
            let topic_chunks: Vec<&[i64]> = topics.chunks(TOPICS_PER_CALL).collect();
            for i in 0..uid_chunks.len().max(topic_chunks.len()) {
                out.push(Batch {
                    part_index: p,
                    part: part.clone(),
                    uids: uid_chunks.get(i).map(|c| c.to_vec()).unwrap_or_default(),
                    topic_ids: topic_chunks.get(i).map(|c| c.to_vec()).unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    pub async fn send(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &mut Progress,
    ) -> Result<(), DeliveryError> {
        let mut failed: Vec<String> = Vec::new();
        let mut last_failure: Option<(i64, String)> = None;
        for batch in self.batches(env, n, progress)? {
            let result = self.call(env, &batch).await?;
            if result.code != 1000 {
                return Err(call_error(result.code, env.scrubber.scrub(&result.msg)));
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
                    progress.insert(key);
                } else {
                    failed.push(
                        e.uid
                            .clone()
                            .unwrap_or_else(|| format!("topic {}", e.topic_id.unwrap_or_default())),
                    );
                    last_failure = Some((e.code, env.scrubber.scrub(&e.status)));
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
        }
        match last_failure {
            None => Ok(()),
            Some((code, message)) => Err(DeliveryError::Upstream {
                service: SERVICE,
                code,
                message,
                reason: Reason::Recipient,
                // Per-recipient statuses are not documented; WxPusher says most are transient.
                retryable: true,
                recipients: failed,
            }),
        }
    }

    async fn call(&self, env: &Env<'_>, batch: &Batch) -> Result<SendResult, DeliveryError> {
        if let Some(limit) = self.rate_limit {
            env.limits.acquire(&self.rate_key(), limit).await;
        }
        let resp = env
            .client
            .post(self.endpoint())
            .json(&self.body(batch))
            .send()
            .await
            .map_err(|e| DeliveryError::transport(SERVICE, e))?;
        let status = resp.status();
        let retry_after = parse_retry_after(resp.headers());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| DeliveryError::transport(SERVICE, e))?;
        if !status.is_success() {
            return Err(DeliveryError::Http {
                service: SERVICE,
                status: status.as_u16(),
                retry_after,
                body: env.scrubber.scrub(&snippet(&bytes)),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| DeliveryError::BadResponse {
            service: SERVICE,
            message: format!("{e}: {}", env.scrubber.scrub(&snippet(&bytes))),
        })
    }
}

#[derive(Debug)]
struct Batch {
    part_index: usize,
    part: Part,
    uids: Vec<String>,
    topic_ids: Vec<i64>,
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

/// The start of a body, for error messages.
fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    text::upstream_prefix(&text::one_line(&s), 200).to_string()
}

/// Classifies a call-level WxPusher code (the Java SDK's `ResultCode`).
fn call_error(code: i64, message: String) -> DeliveryError {
    let (reason, retryable) = match code {
        // BIZ_FAIL (what a wrong appToken gets), UNAUTHORIZED, SIGN_FAIL.
        1001..=1003 => (Reason::BadCredentials, false),
        // NOT_FOUND, DATA_ERROR: the request itself is wrong.
        1004 | 1008 => (Reason::Upstream, false),
        // INTERNAL_SERVER_ERROR, WEIXIN_ERROR, NETWORK_ERROR, UNKNOWN_ERROR and anything new.
        _ => (Reason::Upstream, true),
    };
    DeliveryError::Upstream {
        service: SERVICE,
        code,
        message,
        reason,
        retryable,
        recipients: vec![],
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

    #[test]
    fn call_codes() {
        assert!(!call_error(1001, "appToken不正确".into()).is_retryable());
        assert!(!call_error(1002, String::new()).is_retryable());
        assert!(call_error(1005, String::new()).is_retryable());
        assert!(call_error(1007, String::new()).is_retryable());
        assert_eq!(
            call_error(1001, String::new()).reason(),
            Reason::BadCredentials
        );
    }
}
