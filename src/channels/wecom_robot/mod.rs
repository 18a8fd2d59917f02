//! WeCom (企业微信) group robot: `POST {api}/cgi-bin/webhook/send?key=KEY`.
//!
//! Owns: the request bodies (`markdown`, `markdown_v2`, `text`), the byte limits (4096 for
//! markdown, 2048 for text, UTF-8) with splitting on alert boundaries into "(i/n)" parts that
//! never cut a character in half, mentions, and the reading of WeCom's `errcode`s. WeCom
//! answers HTTP 200 for business errors: success is `errcode == 0`.
//!
//! The key is the credential and travels in the query string: no real URL is logged or kept in
//! an error, and `render` prints it masked (the key is one of the secrets its check records).
//! Each part sent is recorded in the job's [`Progress`] as [`Entry::SentPart`], so a retry after a
//! failure in the middle sends only the parts still missing.
//!
//! Markdown cannot mention by mobile number or `@all`: when those are configured, a short
//! `text` message carrying the mentions (and the preview line) follows the markdown parts.

pub mod config;
pub mod templates;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Entry, Env, Outbound, Progress, http};
use crate::channels::error::{DeliveryError, Reason};
use crate::channels::options::RateLimit;
use crate::channels::wecom::split_by_bytes;
pub use crate::channels::wecom::{FREQ_LIMIT_WAIT, preview};
use crate::secret::Secret;
use crate::webhook::Notification;
pub use config::{RobotMsgType, WecomRobotConfig};

pub(crate) const SERVICE: &str = "wecom_robot";
/// `markdown` and `markdown_v2` content limit, in UTF-8 bytes.
pub const MARKDOWN_MAX_BYTES: usize = 4096;
/// `text` content limit, in UTF-8 bytes.
pub const TEXT_MAX_BYTES: usize = 2048;
/// WeCom's documented limit: 20 messages a minute per robot. A bucket of one token refilled
/// every 3.05 seconds lets at most 20 through in any 60-second window, with 50 ms of slack per
/// message so that network jitter cannot put a 21st into WeCom's minute.
pub const ROBOT_RATE: RateLimit = RateLimit {
    rate: 1.0 / 3.05,
    burst: 1,
};

/// The channel's kind name: metric label, identity prefix, `wecom_robot_configs`.
pub const KIND: &str = "wecom_robot";

#[derive(Debug)]
pub struct WecomRobot {
    /// `{api_url}/cgi-bin/webhook/send` is called.
    pub api_url: String,
    /// The `key=` of the webhook URL (a pasted URL was reduced to it by the loader).
    pub key: Secret,
    pub msgtype: RobotMsgType,
    /// Template names.
    pub content: String,
    pub summary: String,
    /// Templates of userids / mobile numbers to mention.
    pub mentioned_list: Vec<String>,
    pub mentioned_mobiles: Vec<String>,
    /// Preview length in visible characters.
    pub summary_max: usize,
    /// Messages per second for this robot; shared by every integration using the key, and by
    /// every replica when the store is Redis.
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Deserialize)]
struct SendResult {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// Classifies a robot `errcode`.
pub(crate) fn classify(code: i64, message: String) -> DeliveryError {
    let (reason, retryable, message) = match code {
        93000 => (
            Reason::BadCredentials,
            false,
            format!(
                "invalid webhook url: the robot's key is wrong or the robot was removed from the group; put the key of a robot in the group in key/key_file ({message})"
            ),
        ),
        45009 => {
            let error = DeliveryError::Upstream {
                service: SERVICE,
                code,
                message: format!(
                    "over 20 messages a minute for this robot, retried after the minute ({message})"
                ),
                reason: Reason::RateLimited,
                retryable: true,
                recipients: vec![],
            };
            return DeliveryError::After {
                after: FREQ_LIMIT_WAIT,
                error: Box::new(error),
            };
        }
        -1 => (Reason::Upstream, true, message),
        // Invalid message type, empty content, content too long, bad parameter: this
        // integration's config or templates are wrong; the same request fails again.
        40008 | 44004 | 40058 | 45002 => (Reason::Upstream, false, message),
        _ => (Reason::Upstream, true, message),
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

/// Progress entry of part `i` delivered (a robot posts to one group: no recipients of its own).
fn part_key(i: usize) -> Entry {
    Entry::SentPart(i)
}

/// Rendered mentions: empty values dropped, a value with commas or spaces split.
fn mentions(env: &Env<'_>, ctx: &Value, names: &[String]) -> Result<Vec<String>, DeliveryError> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        for m in env
            .templates
            .render(name, ctx)?
            .split(|c: char| c == ',' || c.is_whitespace())
        {
            if !m.is_empty() && !out.iter().any(|o| o == m) {
                out.push(m.to_string());
            }
        }
    }
    Ok(out)
}

impl WecomRobot {
    /// Names the robot's rate-limit bucket without holding the key itself.
    pub fn rate_key(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.key.expose().as_bytes());
        format!("wecom_robot:{}", hex::encode(&digest[..8]))
    }

    fn endpoint(&self) -> String {
        format!(
            "{}/cgi-bin/webhook/send",
            self.api_url.trim_end_matches('/')
        )
    }

    /// The key travels in the URL; callers mask it (it is one of the integration's secrets).
    fn url(&self) -> String {
        format!("{}?key={}", self.endpoint(), self.key.expose())
    }

    /// The template context with the preview line (`preview`) added.
    fn context(&self, env: &Env<'_>, n: &Notification) -> Result<Value, DeliveryError> {
        env.context_with_preview(n, n, &self.summary, self.summary_max)
    }

    fn render_content(
        &self,
        env: &Env<'_>,
        part: &Notification,
        titled: &Notification,
    ) -> Result<String, DeliveryError> {
        let ctx = env.context_with_preview(part, titled, &self.summary, self.summary_max)?;
        Ok(env
            .templates
            .render(&self.content, &ctx)?
            .trim()
            .to_string())
    }

    /// The content of each message, split on alert boundaries when over the byte limit.
    fn parts(
        &self,
        env: &Env<'_>,
        n: &Notification,
        suffix: &str,
    ) -> Result<Vec<String>, DeliveryError> {
        let max = self.msgtype.max_bytes() - suffix.len();
        let mut parts = split_by_bytes(env, n, max, |p, t| self.render_content(env, p, t))?;
        // Mentions once, on the last part, so people are notified once.
        if let Some(last) = parts.last_mut() {
            last.push_str(suffix);
        }
        Ok(parts)
    }

    /// Every message body, in order: the content parts, then (markdown with mobile-number or
    /// `@all` mentions) one text message carrying them.
    fn bodies(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<Value>, DeliveryError> {
        let ctx = self.context(env, n)?;
        let users = mentions(env, &ctx, &self.mentioned_list)?;
        let mobiles = mentions(env, &ctx, &self.mentioned_mobiles)?;
        match self.msgtype {
            RobotMsgType::Text => {
                let mut out = Vec::new();
                for content in self.parts(env, n, "")? {
                    let mut text = serde_json::Map::new();
                    text.insert("content".into(), json!(content));
                    out.push(text);
                }
                // Mentions once, on the last part, so people are notified once.
                if let Some(last) = out.last_mut() {
                    if !users.is_empty() {
                        last.insert("mentioned_list".into(), json!(users));
                    }
                    if !mobiles.is_empty() {
                        last.insert("mentioned_mobile_list".into(), json!(mobiles));
                    }
                }
                Ok(out
                    .into_iter()
                    .map(|t| json!({"msgtype": "text", "text": Value::Object(t)}))
                    .collect())
            }
            RobotMsgType::Markdown | RobotMsgType::MarkdownV2 => {
                let v2 = self.msgtype == RobotMsgType::MarkdownV2;
                // Markdown mentions userids inline; v2 and the rest go in a text message.
                let inline: Vec<&String> = if v2 {
                    vec![]
                } else {
                    users.iter().filter(|u| *u != "@all").collect()
                };
                let suffix = if inline.is_empty() {
                    String::new()
                } else {
                    let at: Vec<String> = inline.iter().map(|u| format!("<@{u}>")).collect();
                    format!("\n{}", at.join(" "))
                };
                let key = self.msgtype.as_str();
                let mut out: Vec<Value> = self
                    .parts(env, n, &suffix)?
                    .into_iter()
                    .map(|content| json!({"msgtype": key, key: {"content": content}}))
                    .collect();
                let rest_users: Vec<&String> =
                    users.iter().filter(|u| v2 || *u == "@all").collect();
                if !rest_users.is_empty() || !mobiles.is_empty() {
                    let preview = ctx["preview"].as_str().unwrap_or_default().to_string();
                    let mut text = serde_json::Map::new();
                    text.insert("content".into(), json!(preview));
                    if !rest_users.is_empty() {
                        text.insert("mentioned_list".into(), json!(rest_users));
                    }
                    if !mobiles.is_empty() {
                        text.insert("mentioned_mobile_list".into(), json!(mobiles));
                    }
                    out.push(json!({"msgtype": "text", "text": Value::Object(text)}));
                }
                Ok(out)
            }
        }
    }

    /// The requests still to make (the key in the URL: callers mask it).
    pub fn prepare(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &Progress,
    ) -> Result<Vec<Outbound>, DeliveryError> {
        Ok(self
            .bodies(env, n)?
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !progress.contains(&part_key(*i)))
            .map(|(_, body)| Outbound {
                method: "POST",
                url: self.url(),
                body,
            })
            .collect())
    }

    /// Sends the parts still missing, in order, each within the robot's rate limit; stops at
    /// the first failure (the parts after it wait for the retry).
    pub async fn send(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &mut Progress,
    ) -> Result<(), DeliveryError> {
        for (i, body) in self.bodies(env, n)?.into_iter().enumerate() {
            let key = part_key(i);
            if progress.contains(&key) {
                continue;
            }
            self.call(env, &body).await?;
            progress.insert(key);
        }
        Ok(())
    }

    /// One message.
    pub async fn call(&self, env: &Env<'_>, body: &Value) -> Result<(), DeliveryError> {
        if let Some(limit) = self.rate_limit {
            env.limits.acquire(&self.rate_key(), limit).await;
        }
        let request = env
            .client
            .post(self.endpoint())
            .query(&[("key", self.key.expose())])
            .json(body);
        let clean = |s: &str| env.scrubber.scrub(&s.replace(self.key.expose(), "<key>"));
        let result: SendResult = http::send(SERVICE, request)
            .await?
            .success_json(SERVICE, clean)?;
        match result.errcode {
            0 => Ok(()),
            code => Err(classify(code, clean(&result.errmsg))),
        }
    }
}

impl WecomRobot {
    /// The key is the robot: whoever holds it posts to that one group.
    pub(crate) fn identity(&self, parts: &mut Vec<String>) {
        parts.push(crate::channels::fingerprint(&self.key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes() {
        let c = |code| classify(code, "x".into());
        let e = c(93000);
        assert!(!e.is_retryable());
        assert_eq!(e.reason(), Reason::BadCredentials);
        assert!(e.to_string().contains("robot was removed"), "{e}");
        let e = c(45009);
        assert!(e.is_retryable());
        assert_eq!(e.reason(), Reason::RateLimited);
        assert_eq!(e.retry_after(), Some(FREQ_LIMIT_WAIT));
        assert_eq!(
            e.next(),
            crate::channels::error::Next::Backoff {
                at_least: Some(FREQ_LIMIT_WAIT)
            }
        );
        assert!(c(-1).is_retryable());
        assert!(!c(40008).is_retryable());
        assert!(!c(44004).is_retryable());
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
            identity_of::<super::config::WecomRobotConfig>("{key: 693a91f6-7xxx}"),
            "wecom-robot-5a6fc1f394c48459"
        );
    }
}
