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
use crate::secret::Secret;
use crate::template::Locale;
use crate::text;
use crate::webhook::Notification;
pub use config::{RobotMsgType, WecomRobotConfig};

pub(crate) const SERVICE: &str = "wecom_robot";
/// `markdown` and `markdown_v2` content limit, in UTF-8 bytes.
pub const MARKDOWN_MAX_BYTES: usize = 4096;
/// `text` content limit, in UTF-8 bytes.
pub const TEXT_MAX_BYTES: usize = 2048;
/// Room kept in each part for its "(i/n)" line.
const PART_HEADER_ROOM: usize = 32;
/// WeCom's documented limit: 20 messages a minute per robot. A bucket of one token refilled
/// every 3.05 seconds lets at most 20 through in any 60-second window, with 50 ms of slack per
/// message so that network jitter cannot put a 21st into WeCom's minute.
pub const ROBOT_RATE: RateLimit = RateLimit {
    rate: 1.0 / 3.05,
    burst: 1,
};
/// 45009 says "retry after the minute": the minute window must pass first.
pub const FREQ_LIMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

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

/// `render(n)` when it fits in `max` UTF-8 bytes; otherwise the alerts split into consecutive
/// groups whose renderings fit, as few as possible, each headed "(i/n)". A single alert too
/// long alone is cut on a character boundary with an ellipsis.
///
/// A storm digest's line can name hundreds of groups and outgrow a part by itself: when it
/// leaves less than half a part for the alerts, it is paged first, at its item boundaries,
/// onto parts of its own, and the alerts follow without it. Every group is named, none is cut.
///
/// `render(part, titled)` renders `part` with the preview line of `titled`.
pub(crate) fn split_by_bytes(
    env: &Env<'_>,
    n: &Notification,
    max: usize,
    render: impl Fn(&Notification, &Notification) -> Result<String, DeliveryError>,
) -> Result<Vec<String>, DeliveryError> {
    let content = render(n, n)?;
    if content.len() <= max {
        return Ok(vec![content]);
    }
    let limit = max.saturating_sub(PART_HEADER_ROOM);
    let (mut bodies, rest) = match digest_pages(n, limit, &render)? {
        Some((pages, rest)) => (pages, Some(rest)),
        None => (Vec::new(), None),
    };
    let n = rest.as_ref().unwrap_or(n);
    if !n.alerts.is_empty() || bodies.is_empty() {
        bodies.extend(split_alerts(n, limit, &render)?);
    }
    let total = bodies.len();
    let locale = env.templates.locale();
    Ok(bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let header = match locale {
                Locale::ZhCn => format!("（{}/{total}）", i + 1),
                Locale::En => format!("({}/{total})", i + 1),
            };
            format!("{header}\n{body}")
        })
        .collect())
}

/// The alerts of `n` in consecutive groups whose renderings fit in `limit` bytes.
fn split_alerts(
    n: &Notification,
    limit: usize,
    render: &impl Fn(&Notification, &Notification) -> Result<String, DeliveryError>,
) -> Result<Vec<String>, DeliveryError> {
    let part = |from: usize, to: usize| -> Result<String, DeliveryError> {
        let p = n.subset(n.alerts[from..to].to_vec());
        render(&p, &p)
    };
    // Halve until every piece fits (or is a single alert), then merge neighbours back while
    // the merged rendering still fits.
    let mut pending = vec![(0, n.alerts.len())];
    let mut leaves: Vec<(usize, usize, String)> = Vec::new();
    while let Some((from, to)) = pending.pop() {
        let body = part(from, to)?;
        if body.len() <= limit {
            leaves.push((from, to, body));
        } else if to - from <= 1 {
            leaves.push((from, to, text::truncate_bytes(&body, limit)));
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
            let both = part(last.0, to)?;
            if both.len() <= limit {
                *last = (last.0, to, both);
                continue;
            }
        }
        merged.push((from, to, body));
    }
    Ok(merged.into_iter().map(|(_, _, body)| body).collect())
}

/// A digest whose line leaves less than half of `limit` for the alerts: the line in pages that
/// each fit a part of their own (no alerts, the whole digest's preview), and the digest without
/// its line for the alerts that follow. `None` for anything else.
fn digest_pages(
    n: &Notification,
    limit: usize,
    render: &impl Fn(&Notification, &Notification) -> Result<String, DeliveryError>,
) -> Result<Option<(Vec<String>, Notification)>, DeliveryError> {
    let Some(line) = n.digest.as_deref() else {
        return Ok(None);
    };
    let mut page = n.without_alerts();
    page.truncated_alerts = 0;
    let mut render_page = |text: &str| -> Result<String, DeliveryError> {
        page.digest = Some(text.to_string());
        render(&page, n)
    };
    if render_page(line)?.len() <= limit / 2 {
        return Ok(None);
    }
    // Items end after ", " or " · ": a page boundary never falls inside a name.
    let mut items: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, _) in line.match_indices([',', '·']) {
        let end = (i + line[i..].chars().next().map_or(1, char::len_utf8) + 1).min(line.len());
        if line.is_char_boundary(end) && end > start {
            items.push(&line[start..end]);
            start = end;
        }
    }
    if start < line.len() {
        items.push(&line[start..]);
    }
    // Greedy by bytes, each page checked by rendering it (templates may escape): a page over
    // the limit gives back its last item, a single item over it is cut with an ellipsis.
    let mut pages = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let mut j = i + 1;
        let mut bytes = items[i].len();
        while j < items.len() && bytes + items[j].len() <= limit {
            bytes += items[j].len();
            j += 1;
        }
        loop {
            let body = render_page(items[i..j].concat().trim())?;
            if body.len() <= limit {
                pages.push(body);
                break;
            }
            if j - i == 1 {
                pages.push(text::truncate_bytes(&body, limit));
                break;
            }
            j -= 1;
        }
        i = j;
    }
    let mut rest = n.clone();
    rest.digest = None;
    Ok(Some((pages, rest)))
}

impl WecomRobot {
    /// The key is the robot: whoever holds it posts to that one group.
    pub(crate) fn identity(&self, parts: &mut Vec<String>) {
        parts.push(crate::channels::fingerprint(&self.key));
    }
}

/// What the group sees: each message's text in order (a split message's parts, then the
/// message that mentions people), the first as the notification line; markdown when the
/// messages are markdown. WeCom apps send the same `{msgtype, <msgtype>: {content}}` shape.
pub fn preview(requests: &[Outbound], max_chars: usize) -> crate::channels::preview::Preview {
    use crate::channels::preview::{Preview, line_of, markdown_text, str_of};
    let mut p = Preview {
        format: "text".into(),
        ..Preview::default()
    };
    for r in requests {
        let msgtype = r.body.get("msgtype").and_then(Value::as_str).unwrap_or("");
        if msgtype.starts_with("markdown") && p.parts.is_empty() {
            p.format = "markdown".into();
        }
        p.parts
            .push(str_of(r.body.get(msgtype).and_then(|m| m.get("content"))));
    }
    p.body = p.parts.join("\n");
    let first = p.parts.first().map_or("", String::as_str);
    p.line = if p.format == "markdown" {
        // The notification shows the text, not its markup.
        let read = markdown_text(first);
        line_of(read.trim(), max_chars)
    } else {
        line_of(first, max_chars)
    };
    p
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
