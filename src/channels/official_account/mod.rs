//! WeChat Official Account (服务号): template messages (`/cgi-bin/message/template/send`) and
//! subscribe notifications (`/cgi-bin/message/subscribe/bizsend`), one request per openid.
//!
//! Owns: the request bodies, field limits ([`fields`]), access tokens ([`token`]) and the
//! classification of WeChat's `errcode`s. WeChat answers HTTP 200 for business errors; success
//! is `errcode == 0`. The access token travels in the query string, so no URL of a real request
//! is ever logged or kept in an error; [`OfficialAccount::prepare`] (what `render` prints) puts
//! [`ACCESS_TOKEN_PLACEHOLDER`] where the token goes and never fetches one.
//!
//! Per openid, the outcome is recorded in the job's [`Progress`]: delivered openids as
//! [`Entry::Delivered`], openids WeChat refused for good (not following, bad openid, blocked,
//! no subscription left) as [`Entry::RefusedWith`] their errcode; a retry goes to neither.
//!
//! Daily quota (45009) is [`DeliveryError::Until`] [`quota_resets_at`] (midnight, Beijing
//! time) with [`Reason::Quota`]: trying again before then cannot succeed, so the delivery
//! engine parks the notification until then or hands it to the `fallback_receiver`.

pub mod config;
pub mod contact;

pub mod fields;
pub mod inbound;
pub mod oncall;
pub mod templates;
pub mod token;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Entry, Env, Outbound, Progress, http};
use crate::channels::error::{DeliveryError, Reason};
use crate::secret::Secret;
use crate::webhook::Notification;
use token::TokenSource;

pub(crate) const SERVICE: &str = "official_account";
/// Stands for the access token in the URLs `render` prints.
pub const ACCESS_TOKEN_PLACEHOLDER: &str = "ACCESS_TOKEN";

/// The channel's kind name: metric label, identity prefix, `official_account_configs`.
pub const KIND: &str = "official_account";

/// The `data` used when a config gives none: the keys of the most common alert template
/// layout, filled with the shipped `official_account.*` templates.
pub const DEFAULT_DATA: &[(&str, &str)] = &[
    ("thing1", "official_account.title"),
    ("time2", "official_account.time"),
    ("phrase3", "official_account.status"),
];

#[derive(Debug)]
pub struct OfficialAccount {
    /// `{api_url}/cgi-bin/...` is called.
    pub api_url: String,
    pub app_id: String,
    pub kind: OfficialAccountKind,
    pub template_id: String,
    pub to_openids: Vec<String>,
    /// Template name of the tap-through link (`url`, or `page` for subscribe notifications).
    pub url: String,
    pub miniprogram: Option<MiniProgramConfig>,
    /// `(field key, template name)`, in key order.
    pub data: Vec<(String, String)>,
    /// Requests in flight at once for one notification.
    pub max_concurrency: usize,
    pub tokens: TokenSource,
    /// Send requests per second allowed for this app (`rate_limit`); `None`: unlimited.
    pub rate_limit: Option<crate::channels::options::RateLimit>,
}

/// What both send endpoints answer.
#[derive(Debug, Deserialize)]
struct SendResult {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    /// The message's id (19 digits: 64 bits), named again by the delivery report.
    #[serde(default)]
    msgid: Option<u64>,
}

/// Codes after which the token is dropped, a new one fetched and the send retried once.
fn is_token_error(code: i64) -> bool {
    matches!(code, 40001 | 40014 | 42001 | 41001)
}

/// Codes that concern one openid only; the other recipients are unaffected.
fn is_recipient_error(code: i64) -> bool {
    matches!(code, 43004 | 40003 | 43019 | 43101)
}

/// Classifies a WeChat `errcode` (token or send call). `openid` is named when the call was for
/// one recipient.
pub(crate) fn classify(code: i64, message: String, openid: Option<&str>) -> DeliveryError {
    let (reason, retryable) = match code {
        // System busy, minute quota: later works.
        -1 => (Reason::Upstream, true),
        45011 => (Reason::RateLimited, true),
        // Daily quota: nothing works before midnight Beijing time; the engine parks or falls back.
        45009 => (Reason::Quota, false),
        // Token trouble that survived the in-call refresh: the next attempt fetches again.
        40001 | 40014 | 42001 | 41001 => (Reason::BadCredentials, true),
        // Wrong app id, wrong secret, IP not whitelisted: a person must fix the config.
        40013 | 40125 | 40164 => (Reason::BadCredentials, false),
        // Not following, bad openid, blocked, no subscription left: this openid, for good.
        43004 | 40003 | 43019 | 43101 => (Reason::Recipient, false),
        // Bad template, bad field, API not authorized: the integration's config is wrong.
        40037 | 47003 | 48001 => (Reason::Upstream, false),
        _ => (Reason::Upstream, true),
    };
    let message = match code {
        47003 => fields::explain_47003(&message, []),
        40037 => format!("template_id rejected: {message}"),
        _ => message,
    };
    DeliveryError::Upstream {
        service: SERVICE,
        code,
        message,
        reason,
        retryable,
        recipients: openid.map(|o| vec![o.to_string()]).unwrap_or_default(),
    }
}

/// The field named in a 47003 message: `argument invalid! data.thing1.value invalid`.
pub fn bad_field(message: &str) -> Option<&str> {
    let rest = &message[message.find("data.")? + 5..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    (end > 0).then(|| &rest[..end])
}

/// When the daily quota (45009) is renewed: the next midnight in Beijing time.
pub fn quota_resets_at(now: DateTime<Utc>) -> DateTime<Utc> {
    let tz = chrono_tz::Asia::Shanghai;
    let local = now.with_timezone(&tz);
    let next = local.date_naive().succ_opt().unwrap_or(local.date_naive());
    tz.with_ymd_and_hms(next.year(), next.month(), next.day(), 0, 0, 0)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now + chrono::Duration::days(1))
}

/// Whether `openid` still needs the message: neither delivered nor refused for good.
fn pending(progress: &Progress, openid: &str) -> bool {
    !progress.contains(&Entry::Delivered(openid.to_string()))
        && progress.refused_with(openid).is_none()
}

impl OfficialAccount {
    /// Names the app's rate-limit bucket, shared by every integration sending as it.
    pub fn rate_key(&self) -> String {
        format!(
            "official_account:{}:{}",
            self.api_url.trim_end_matches('/'),
            self.app_id
        )
    }

    fn endpoint(&self) -> String {
        let path = match self.kind {
            OfficialAccountKind::Template => "/cgi-bin/message/template/send",
            OfficialAccountKind::Subscribe => "/cgi-bin/message/subscribe/bizsend",
        };
        format!("{}{path}", self.api_url.trim_end_matches('/'))
    }

    /// The data fields `n` would fill with a placeholder, each with why: what `check-config`
    /// warns about for the sample notification (a sample is no reason to refuse a config).
    pub fn unfit_fields(&self, env: &Env<'_>, n: &Notification) -> Vec<String> {
        let ctx = env.templates.bounded_context(n, env.now);
        let tz = env.templates.timezone();
        self.data
            .iter()
            .filter_map(|(key, name)| {
                let rendered = env.templates.render(name, &ctx).ok()?;
                let e = fields::fit(key, &rendered, tz).err()?;
                Some(format!("template {name}: {e}"))
            })
            .collect()
    }

    /// The body for every openid still pending, in configured order.
    fn messages(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &Progress,
    ) -> Result<Vec<(String, Value)>, DeliveryError> {
        let ctx = env.templates.bounded_context(n, env.now);
        let tz = env.templates.timezone();
        let mut data = Map::new();
        for (key, name) in &self.data {
            let value = match fields::fit(key, &env.templates.render(name, &ctx)?, tz) {
                Ok(v) => v,
                // One field that cannot fit does not cost the whole message: it holds a
                // placeholder, said in a log line and a metric.
                Err(e) => {
                    tracing::warn!(integration = "official_account", field = %key, template = %name, error = %e, "template field cannot fit its type: sent with a placeholder");
                    if let Some(m) = env.metrics {
                        m.template_fields_degraded
                            .get_or_create(&crate::metrics::IntegrationLabels {
                                integration: "official_account",
                            })
                            .inc();
                    }
                    fields::placeholder(key, env.now, tz)
                }
            };
            data.insert(key.clone(), json!({ "value": value }));
        }
        let url = env.templates.render(&self.url, &ctx)?.trim().to_string();
        let (link_key, url) = match self.kind {
            // Only an http(s) link is offered to the reader, whatever the template produced.
            OfficialAccountKind::Template => (
                "url",
                crate::template::safe_url(&url)
                    .unwrap_or_default()
                    .to_string(),
            ),
            // A mini-program page path, not a URL: WeChat opens it inside the mini program.
            OfficialAccountKind::Subscribe => ("page", url),
        };
        let mut out = Vec::new();
        for openid in &self.to_openids {
            if !pending(progress, openid) {
                continue;
            }
            let mut body = Map::new();
            body.insert("touser".into(), json!(openid));
            body.insert("template_id".into(), json!(self.template_id));
            if !url.is_empty() {
                body.insert(link_key.into(), json!(url));
            }
            if let Some(mp) = &self.miniprogram {
                body.insert(
                    "miniprogram".into(),
                    json!({ "appid": mp.appid, "pagepath": mp.pagepath }),
                );
            }
            if self.kind == OfficialAccountKind::Template {
                body.insert("client_msg_id".into(), json!(self.client_msg_id(n, openid)));
            }
            body.insert("data".into(), Value::Object(data.clone()));
            out.push((openid.clone(), Value::Object(body)));
        }
        Ok(out)
    }

    /// The same for the same notification, account, template and openid, so that WeChat drops
    /// a retry of a message it already took (it remembers ids for ten minutes).
    pub fn client_msg_id(&self, n: &Notification, openid: &str) -> String {
        let mut h = Sha256::new();
        for part in [&self.app_id, &self.template_id, &n.group_key, openid] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for a in &n.alerts {
            h.update(a.fingerprint.as_bytes());
            h.update([0]);
            h.update(a.status.as_str().as_bytes());
            h.update([0]);
            h.update(a.starts_at.to_rfc3339().as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        format!("amw-{}", hex::encode(&digest[..16]))
    }

    /// One request per pending openid, with [`ACCESS_TOKEN_PLACEHOLDER`] for the token.
    pub fn prepare(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &Progress,
    ) -> Result<Vec<Outbound>, DeliveryError> {
        let url = format!(
            "{}?access_token={ACCESS_TOKEN_PLACEHOLDER}",
            self.endpoint()
        );
        Ok(self
            .messages(env, n, progress)?
            .into_iter()
            .map(|(_, body)| Outbound {
                method: "POST",
                url: url.clone(),
                body,
            })
            .collect())
    }

    pub async fn send(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &mut Progress,
    ) -> Result<(), DeliveryError> {
        self.send_with_ids(env, n, progress, &mut Vec::new()).await
    }

    /// [`Self::send`], adding each delivered openid's message id to `ids` (what the
    /// `TEMPLATESENDJOBFINISH` report names).
    pub async fn send_with_ids(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &mut Progress,
        ids: &mut Vec<(String, u64)>,
    ) -> Result<(), DeliveryError> {
        let messages = self.messages(env, n, progress)?;
        let results: Vec<(String, Result<Option<u64>, DeliveryError>)> =
            futures_util::stream::iter(messages)
                .map(|(openid, body)| async move {
                    let r = self.send_one(env, &openid, &body).await;
                    (openid, r)
                })
                .buffer_unordered(self.max_concurrency.max(1))
                .collect()
                .await;
        let mut quota = None;
        let mut permanent = None;
        let mut retryable: Option<DeliveryError> = None;
        let mut retry_openids = Vec::new();
        for (openid, result) in results {
            match result {
                Ok(msgid) => {
                    if let Some(id) = msgid {
                        ids.push((openid.clone(), id));
                    }
                    progress.insert(Entry::Delivered(openid));
                }
                Err(e @ DeliveryError::Upstream { code, .. }) if is_recipient_error(code) => {
                    tracing::warn!(
                        app_id = %self.app_id,
                        openid = %openid,
                        errcode = code,
                        error = %e,
                        "openid refused the message; it will not be retried"
                    );
                    progress.insert(Entry::RefusedWith { to: openid, code });
                }
                Err(e) if e.reason() == Reason::Quota => quota = Some(e),
                Err(e) if !e.is_retryable() => permanent = Some(e),
                Err(e) => {
                    retry_openids.push(openid);
                    retryable = Some(e);
                }
            }
        }
        let still: Vec<String> = self
            .to_openids
            .iter()
            .filter(|o| pending(progress, o))
            .cloned()
            .collect();
        let with_recipients = |e: DeliveryError, recipients: Vec<String>| match e {
            DeliveryError::Upstream {
                service,
                code,
                message,
                reason,
                retryable,
                ..
            } => DeliveryError::Upstream {
                service,
                code,
                message,
                reason,
                retryable,
                recipients,
            },
            other => other,
        };
        if let Some(e) = quota {
            // Nothing can succeed before the quota is renewed: said as data, for the engine.
            return Err(DeliveryError::Until {
                at: quota_resets_at(env.now),
                error: Box::new(with_recipients(e, still)),
            });
        }
        if let Some(e) = permanent {
            return Err(with_recipients(e, still));
        }
        if let Some(e) = retryable {
            return Err(with_recipients(e, retry_openids));
        }
        // Everyone is done; say so if some openids refused for good.
        let refused: Vec<(String, i64)> = progress
            .iter()
            .filter_map(|e| match e {
                Entry::RefusedWith { to, code } if self.to_openids.contains(to) => {
                    Some((to.clone(), *code))
                }
                _ => None,
            })
            .collect();
        match refused.last() {
            None => Ok(()),
            Some((_, code)) => Err(DeliveryError::Upstream {
                service: SERVICE,
                code: *code,
                message: "recipient cannot receive messages from this account".into(),
                reason: Reason::Recipient,
                retryable: false,
                recipients: refused.iter().map(|(o, _)| o.clone()).collect(),
            }),
        }
    }

    /// Sends to one openid; on a token error, drops the token and tries once more.
    async fn send_one(
        &self,
        env: &Env<'_>,
        openid: &str,
        body: &Value,
    ) -> Result<Option<u64>, DeliveryError> {
        let token = self.tokens.get(env).await?;
        let mut result = self.call(env, &token, body).await?;
        if is_token_error(result.errcode) {
            tracing::info!(
                app_id = %self.app_id,
                errcode = result.errcode,
                "access token rejected, refreshing it and sending again"
            );
            self.tokens.invalidate(&token).await;
            let token = self.tokens.get(env).await?;
            result = self.call(env, &token, body).await?;
        }
        match result.errcode {
            0 => Ok(result.msgid),
            // A 47003 that names no field: say which fields were sent.
            47003 => Err(match classify(47003, result.errmsg.clone(), Some(openid)) {
                DeliveryError::Upstream {
                    service,
                    code,
                    reason,
                    retryable,
                    recipients,
                    ..
                } => DeliveryError::Upstream {
                    service,
                    code,
                    message: fields::explain_47003(
                        &result.errmsg,
                        self.data.iter().map(|(k, _)| k.as_str()),
                    ),
                    reason,
                    retryable,
                    recipients,
                },
                other => other,
            }),
            code => Err(classify(code, result.errmsg, Some(openid))),
        }
    }

    async fn call(
        &self,
        env: &Env<'_>,
        token: &Secret,
        body: &Value,
    ) -> Result<SendResult, DeliveryError> {
        if let Some(limit) = self.rate_limit {
            env.limits.acquire(&self.rate_key(), limit).await;
        }
        let request = env
            .client
            .post(self.endpoint())
            .query(&[("access_token", token.expose())])
            .json(body);
        // Upstream text is scrubbed of configured secrets and of the token in use.
        let clean = |s: &str| {
            env.scrubber
                .scrub(&s.replace(token.expose(), "<access_token>"))
        };
        let mut result: SendResult = http::send(SERVICE, request)
            .await?
            .success_json(SERVICE, clean)?;
        result.errmsg = clean(&result.errmsg);
        Ok(result)
    }
}

/// Which Official Account API messages go through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OfficialAccountKind {
    /// Template messages: users who follow the account.
    #[default]
    Template,
    /// Subscribe notifications: one message per subscription a user granted.
    Subscribe,
}

/// A mini program page opened instead of `url` when tapped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniProgramConfig {
    pub appid: String,
    pub pagepath: String,
}

impl OfficialAccount {
    /// What identifies the recipients: the app, its secret's fingerprint, the message kind
    /// and the openids.
    pub(crate) fn identity(&self, parts: &mut Vec<String>) {
        use crate::channels::{fingerprint, sorted};
        parts.push(format!("app={}", self.app_id));
        parts.push(fingerprint(self.tokens.app_secret()));
        parts.push(format!("kind={:?}", self.kind));
        parts.extend(
            sorted(&self.to_openids)
                .into_iter()
                .map(|u| format!("openid={u}")),
        );
    }
}

/// What the phone shows: the card's fields after their type rules, the first as the
/// notification line, and the link (`url`, or `page` for subscribe notifications).
pub fn preview(requests: &[Outbound], max_chars: usize) -> crate::channels::preview::Preview {
    use crate::channels::preview::{Preview, line_of, str_of};
    let b = requests.first().map(|r| &r.body).unwrap_or(&Value::Null);
    let mut p = Preview::default();
    if let Some(data) = b.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            p.card.push((k.clone(), str_of(v.get("value"))));
        }
    }
    p.line = p
        .card
        .first()
        .map(|(_, v)| line_of(v, max_chars))
        .unwrap_or_default();
    p.body = p
        .card
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n");
    p.format = "text".into();
    p.url = b
        .get("url")
        .or_else(|| b.get("page"))
        .and_then(Value::as_str)
        .map(str::to_string);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes() {
        let c = |code| classify(code, "x".into(), Some("o1"));
        assert!(c(-1).is_retryable());
        assert!(c(45011).is_retryable());
        assert_eq!(c(45011).reason(), Reason::RateLimited);
        assert!(!c(45009).is_retryable());
        assert_eq!(c(45009).reason(), Reason::Quota);
        for code in [40013, 40125, 40164] {
            assert!(!c(code).is_retryable());
            assert_eq!(c(code).reason(), Reason::BadCredentials);
        }
        for code in [43004, 40003, 43019, 43101] {
            assert!(!c(code).is_retryable());
            assert_eq!(c(code).reason(), Reason::Recipient);
        }
        assert!(!c(40037).is_retryable());
        assert!(!c(47003).is_retryable());
    }

    #[test]
    fn bad_field_is_named() {
        assert_eq!(
            bad_field("argument invalid! data.thing1.value invalid rid: 1-2"),
            Some("thing1")
        );
        assert_eq!(bad_field("argument invalid!"), None);
        let e = classify(
            47003,
            "argument invalid! data.phrase3.value invalid".into(),
            None,
        );
        assert_eq!(
            e.to_string(),
            "official_account: error 47003: template field phrase3 (phrase: at most 5 Chinese characters, nothing else) rejected: argument invalid! data.phrase3.value invalid"
        );
    }

    #[test]
    fn quota_resets_at_beijing_midnight() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // 23:30 Beijing on the 25th → midnight of the 26th, which is 16:00 UTC on the 25th.
        assert_eq!(
            quota_resets_at(at("2026-11-25T15:30:00Z")),
            at("2026-11-25T16:00:00Z")
        );
        // 00:30 Beijing on the 26th → midnight of the 27th.
        assert_eq!(
            quota_resets_at(at("2026-11-25T16:30:00Z")),
            at("2026-11-26T16:00:00Z")
        );
    }

    #[test]
    fn pending_skips_delivered_and_refused() {
        let mut p = Progress::new();
        p.insert(Entry::Delivered("o1".into()));
        p.insert(Entry::RefusedWith {
            to: "o2".into(),
            code: 43004,
        });
        assert!(!pending(&p, "o1"));
        assert!(!pending(&p, "o2"));
        assert!(pending(&p, "o3"));
        // A prefix of another openid is not that openid.
        assert!(pending(&p, "o"));
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
            identity_of::<super::config::OfficialAccountConfig>(
                "{app_id: wx123, app_secret: s3cr3t-app, template_id: T1, to_openids: [o2, o1]}"
            ),
            "official-account-5f7e5c3a142d3b74"
        );
    }
}
