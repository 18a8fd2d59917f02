//! WeCom (企业微信) application messages: `POST {api}/cgi-bin/message/send?access_token=TOKEN`
//! to users, departments and tags, what Alertmanager's `wechat_configs` sends; they reach
//! personal WeChat through the WeChat plugin when the corp enables it (`text` does).
//!
//! Owns: the request bodies (`text`, `markdown`, `textcard`), the limits (content ≤ 2048 bytes,
//! split on alert boundaries into "(i/n)" parts; textcard title ≤ 128 bytes and cut to the
//! 20-character preview, description ≤ 512 bytes, button text ≤ 4 characters; ≤ 1000 users and
//! ≤ 100 departments per call), access tokens ([`token`]) and the reading of `errcode`s.
//!
//! Per recipient and part, delivery is recorded in the job's [`Progress`] as an
//! [`Entry::Sent`] to a [`Recipient::User`], [`Recipient::Party`] or [`Recipient::Tag`]; a
//! recipient refused for good (81013) as [`Entry::Refused`]. WeCom names the recipients it
//! could not reach (`invaliduser`, `invalidparty`, `invalidtag`), everyone else in the call
//! counts as delivered, and a retry goes only to those missing. `enable_duplicate_check` is
//! always on, so a send retried after a timeout that WeCom had in fact taken is not shown
//! twice. The token travels in the query string: no real URL is logged or kept in an error;
//! `render` prints [`ACCESS_TOKEN_PLACEHOLDER`] where it goes.

pub mod card;
pub mod config;
pub mod contact;
pub mod inbound;
pub mod oncall;
pub mod templates;
pub mod token;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Entry, Env, Outbound, Progress, Recipient, http};
use crate::channels::error::{DeliveryError, Reason};
use crate::channels::options::RateLimit;
use crate::channels::wecom::{FREQ_LIMIT_WAIT, split_by_bytes};
use crate::secret::Secret;
use crate::text;
use crate::webhook::Notification;
pub use config::{AppMsgType, WecomAppConfig};
use token::TokenSource;

pub(crate) const SERVICE: &str = "wecom_app";
/// Stands for the access token in the URLs `render` prints.
pub const ACCESS_TOKEN_PLACEHOLDER: &str = "ACCESS_TOKEN";
/// `text` and `markdown` content limit, in UTF-8 bytes.
pub const CONTENT_MAX_BYTES: usize = 2048;
pub const TITLE_MAX_BYTES: usize = 128;
pub const DESCRIPTION_MAX_BYTES: usize = 512;
pub const BTNTXT_MAX_CHARS: usize = 4;
pub const USERS_PER_CALL: usize = 1000;
pub const PARTIES_PER_CALL: usize = 100;
pub const TAGS_PER_CALL: usize = 100;
/// WeCom drops messages beyond 30 a minute from one application to one member; the default
/// keeps every member within it.
pub const APP_RATE: RateLimit = RateLimit {
    rate: 0.5,
    burst: 5,
};

/// The channel's kind name: metric label, identity prefix, `wecom_app_configs`.
pub const KIND: &str = "wecom_app";

#[derive(Debug)]
pub struct WecomApp {
    /// `{api_url}/cgi-bin/...` is called.
    pub api_url: String,
    pub corp_id: String,
    pub agent_id: i64,
    /// Templates of `|`-separated userids, department ids and tag ids.
    pub to_user: Option<String>,
    pub to_party: Option<String>,
    pub to_tag: Option<String>,
    pub msgtype: AppMsgType,
    /// Template names.
    pub content: String,
    pub summary: String,
    pub title: String,
    pub description: String,
    pub url: String,
    pub btntxt: Option<String>,
    /// Seconds WeCom remembers content to drop a repeat (`duplicate_check_interval`).
    pub duplicate_check_interval: u64,
    /// Preview length in visible characters.
    pub summary_max: usize,
    pub tokens: TokenSource,
    pub rate_limit: Option<RateLimit>,
}

/// What `message/send` answers.
#[derive(Debug, Default, Deserialize)]
struct SendResult {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    #[serde(default)]
    invaliduser: String,
    #[serde(default)]
    invalidparty: String,
    #[serde(default)]
    invalidtag: String,
    #[serde(default)]
    unlicenseduser: String,
}

/// Codes after which the token is dropped, a new one fetched and the send tried once more.
fn is_token_error(code: i64) -> bool {
    matches!(code, 42001 | 40014)
}

/// Classifies a WeCom `errcode` (token or send call); `recipients` are those the call was for.
pub(crate) fn classify(code: i64, message: String, recipients: &[String]) -> DeliveryError {
    let (reason, retryable, message) = match code {
        -1 => (Reason::Upstream, true, message),
        45009 => {
            let error = DeliveryError::Upstream {
                service: SERVICE,
                code,
                message: format!("API frequency limit, retried after the minute ({message})"),
                reason: Reason::RateLimited,
                retryable: true,
                recipients: vec![],
            };
            return DeliveryError::After {
                after: FREQ_LIMIT_WAIT,
                error: Box::new(error),
            };
        }
        45033 => (Reason::RateLimited, true, message),
        // Survived the in-call refresh: the next attempt fetches again.
        42001 | 40014 => (Reason::BadCredentials, true, message),
        40001 | 40013 | 40091 => (
            Reason::BadCredentials,
            false,
            format!(
                "wrong corp_id or api_secret: check both in the WeCom admin console ({message})"
            ),
        ),
        60020 => (
            Reason::BadCredentials,
            false,
            format!(
                "this server's IP is not allowed: add its public IP to the application's trusted IPs (企业可信IP) in the WeCom admin console ({message})"
            ),
        ),
        81013 => (
            Reason::Recipient,
            false,
            format!(
                "user, party and tag all invalid: check to_user, to_party and to_tag and the application's visible range ({message})"
            ),
        ),
        // Bad agent id, message type, empty content, API not allowed: the config is wrong.
        40056 | 301002 | 40008 | 44004 | 48002 | 82001 => (Reason::Upstream, false, message),
        _ => (Reason::Upstream, true, message),
    };
    DeliveryError::Upstream {
        service: SERVICE,
        code,
        message,
        reason,
        retryable,
        recipients: recipients.to_vec(),
    }
}

/// One call: one message to a batch of recipients.
#[derive(Debug, Clone)]
struct Batch {
    part: usize,
    message: Value,
    users: Vec<String>,
    parties: Vec<String>,
    tags: Vec<String>,
}

impl Batch {
    /// Everyone the call goes to.
    fn recipients(&self) -> impl Iterator<Item = Recipient> + '_ {
        let users = self.users.iter().cloned().map(Recipient::User);
        let parties = self.parties.iter().cloned().map(Recipient::Party);
        users
            .chain(parties)
            .chain(self.tags.iter().cloned().map(Recipient::Tag))
    }
}

fn split_ids(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in s.split('|').map(str::trim) {
        if !id.is_empty() && !out.iter().any(|o| o == id) {
            out.push(id.to_string());
        }
    }
    out
}

impl WecomApp {
    /// Names the application's rate-limit bucket.
    pub fn rate_key(&self) -> String {
        format!(
            "wecom_app:{}:{}:{}",
            self.api_url.trim_end_matches('/'),
            self.corp_id,
            self.agent_id
        )
    }

    fn endpoint(&self) -> String {
        format!(
            "{}/cgi-bin/message/send",
            self.api_url.trim_end_matches('/')
        )
    }

    fn context(&self, env: &Env<'_>, n: &Notification) -> Result<Value, DeliveryError> {
        env.context_with_preview(n, n, &self.summary, self.summary_max)
    }

    /// The recipients, rendered from the templates.
    fn recipients(&self, env: &Env<'_>, ctx: &Value) -> Result<[Vec<String>; 3], DeliveryError> {
        let render = |t: &Option<String>| -> Result<Vec<String>, DeliveryError> {
            match t {
                Some(name) => Ok(split_ids(&env.templates.render(name, ctx)?)),
                None => Ok(Vec::new()),
            }
        };
        Ok([
            render(&self.to_user)?,
            render(&self.to_party)?,
            render(&self.to_tag)?,
        ])
    }

    /// The message of each part (`text`/`markdown`/`textcard` object).
    fn messages(&self, env: &Env<'_>, n: &Notification) -> Result<Vec<Value>, DeliveryError> {
        let ctx = self.context(env, n)?;
        match self.msgtype {
            AppMsgType::Text | AppMsgType::Markdown => {
                let render = |part: &Notification,
                              titled: &Notification|
                 -> Result<String, DeliveryError> {
                    let ctx =
                        env.context_with_preview(part, titled, &self.summary, self.summary_max)?;
                    Ok(env
                        .templates
                        .render(&self.content, &ctx)?
                        .trim()
                        .to_string())
                };
                Ok(split_by_bytes(env, n, CONTENT_MAX_BYTES, render)?
                    .into_iter()
                    .map(|content| json!({ "content": content }))
                    .collect())
            }
            AppMsgType::Textcard => {
                let title = text::one_line(&env.templates.render(&self.title, &ctx)?);
                let title = text::truncate_bytes(
                    &text::truncate(&title, self.summary_max),
                    TITLE_MAX_BYTES,
                );
                let description = env
                    .templates
                    .render(&self.description, &ctx)?
                    .trim()
                    .to_string();
                let description = text::truncate_bytes(&description, DESCRIPTION_MAX_BYTES);
                let url = env.templates.render(&self.url, &ctx)?.trim().to_string();
                if url.is_empty() {
                    return Err(DeliveryError::Render(crate::template::TemplateError {
                        name: self.url.clone(),
                        message: "a textcard needs a url, and this one rendered empty".into(),
                    }));
                }
                let mut card = Map::new();
                card.insert("title".into(), json!(title));
                card.insert("description".into(), json!(description));
                card.insert("url".into(), json!(url));
                if let Some(b) = &self.btntxt {
                    card.insert("btntxt".into(), json!(b));
                }
                Ok(vec![Value::Object(card)])
            }
        }
    }

    /// Every call still to make: each part to each recipient not yet in `progress`, within
    /// the per-call limits.
    fn batches(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &Progress,
    ) -> Result<Vec<Batch>, DeliveryError> {
        let ctx = self.context(env, n)?;
        let [users, parties, tags] = self.recipients(env, &ctx)?;
        let mut out = Vec::new();
        for (p, message) in self.messages(env, n)?.into_iter().enumerate() {
            let pending = |kind: fn(String) -> Recipient, ids: &[String]| -> Vec<String> {
                ids.iter()
                    .filter(|id| {
                        let to = kind(id.to_string());
                        !progress.contains(&Entry::Refused(to.clone()))
                            && !progress.contains(&Entry::Sent { part: p, to })
                    })
                    .cloned()
                    .collect()
            };
            let (u, x, t) = (
                pending(Recipient::User, &users),
                pending(Recipient::Party, &parties),
                pending(Recipient::Tag, &tags),
            );
            let u: Vec<&[String]> = u.chunks(USERS_PER_CALL).collect();
            let x: Vec<&[String]> = x.chunks(PARTIES_PER_CALL).collect();
            let t: Vec<&[String]> = t.chunks(TAGS_PER_CALL).collect();
            for i in 0..u.len().max(x.len()).max(t.len()) {
                let get = |v: &[&[String]]| v.get(i).map(|c| c.to_vec()).unwrap_or_default();
                out.push(Batch {
                    part: p,
                    message: message.clone(),
                    users: get(&u),
                    parties: get(&x),
                    tags: get(&t),
                });
            }
        }
        Ok(out)
    }

    fn body(&self, b: &Batch) -> Value {
        let mut body = Map::new();
        for (key, ids) in [
            ("touser", &b.users),
            ("toparty", &b.parties),
            ("totag", &b.tags),
        ] {
            if !ids.is_empty() {
                body.insert(key.into(), json!(ids.join("|")));
            }
        }
        body.insert("msgtype".into(), json!(self.msgtype.as_str()));
        body.insert("agentid".into(), json!(self.agent_id));
        body.insert(self.msgtype.as_str().into(), b.message.clone());
        body.insert("safe".into(), json!(0));
        body.insert("enable_duplicate_check".into(), json!(1));
        body.insert(
            "duplicate_check_interval".into(),
            json!(self.duplicate_check_interval),
        );
        Value::Object(body)
    }

    /// One request per call still to make, with [`ACCESS_TOKEN_PLACEHOLDER`] for the token.
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
            .batches(env, n, progress)?
            .iter()
            .map(|b| Outbound {
                method: "POST",
                url: url.clone(),
                body: self.body(b),
            })
            .collect())
    }

    /// Sends every call still to make. Recipients WeCom names as invalid are retried (only
    /// they); 81013 (all of a call's recipients invalid) is permanent for them; any other
    /// failure stops here and says what happens next.
    pub async fn send(
        &self,
        env: &Env<'_>,
        n: &Notification,
        progress: &mut Progress,
    ) -> Result<(), DeliveryError> {
        let mut missing: Vec<String> = Vec::new();
        let mut last_missing: Option<(i64, String)> = None;
        let mut refused: Option<DeliveryError> = None;
        for batch in self.batches(env, n, progress)? {
            let all: Vec<Recipient> = batch.recipients().collect();
            let result = self.send_one(env, &self.body(&batch)).await?;
            match result.errcode {
                0 => {
                    let invalid: Vec<Recipient> = split_ids(&result.invaliduser)
                        .into_iter()
                        .chain(split_ids(&result.unlicenseduser))
                        .map(Recipient::User)
                        .chain(
                            split_ids(&result.invalidparty)
                                .into_iter()
                                .map(Recipient::Party),
                        )
                        .chain(
                            split_ids(&result.invalidtag)
                                .into_iter()
                                .map(Recipient::Tag),
                        )
                        .collect();
                    for to in all {
                        if invalid.contains(&to) {
                            let who = to.to_string();
                            if !missing.contains(&who) {
                                missing.push(who);
                            }
                        } else {
                            progress.insert(Entry::Sent {
                                part: batch.part,
                                to,
                            });
                        }
                    }
                    if !invalid.is_empty() {
                        tracing::warn!(corp_id = %self.corp_id, agent_id = self.agent_id, recipients = invalid.len(), "WeCom could not deliver to some recipients; the others got the message, the rest is retried");
                        last_missing = Some((
                            0,
                            format!(
                                "invalid recipients (invaliduser {:?}, invalidparty {:?}, invalidtag {:?}): not in the application's visible range, or no such id",
                                result.invaliduser, result.invalidparty, result.invalidtag
                            ),
                        ));
                    }
                }
                81013 => {
                    let who: Vec<String> = all.iter().map(Recipient::to_string).collect();
                    progress.extend(all.into_iter().map(Entry::Refused));
                    refused = Some(classify(result.errcode, result.errmsg, &who));
                }
                code => {
                    let who: Vec<String> = all.iter().map(Recipient::to_string).collect();
                    return Err(classify(code, result.errmsg, &who));
                }
            }
        }
        if let Some((code, message)) = last_missing {
            return Err(DeliveryError::Upstream {
                service: SERVICE,
                code,
                message,
                reason: Reason::Recipient,
                retryable: true,
                recipients: missing,
            });
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One call; on 42001/40014 drops the token, fetches one and sends once more.
    async fn send_one(&self, env: &Env<'_>, body: &Value) -> Result<SendResult, DeliveryError> {
        let token = self.tokens.get(env).await?;
        let mut result = self.call(env, &token, body).await?;
        if is_token_error(result.errcode) {
            tracing::info!(corp_id = %self.corp_id, errcode = result.errcode, "WeCom access token rejected, refreshing it and sending again");
            self.tokens.invalidate(&token).await;
            let token = self.tokens.get(env).await?;
            result = self.call(env, &token, body).await?;
        }
        Ok(result)
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

impl WecomApp {
    /// What identifies the recipients: the corp, the app, its secret's fingerprint and each
    /// user, department and tag id (templates split on `|`).
    pub(crate) fn identity(&self, parts: &mut Vec<String>) {
        use crate::channels::{fingerprint, sorted};
        parts.push(format!("corp={}", self.corp_id));
        parts.push(format!("agent={}", self.agent_id));
        parts.push(fingerprint(self.tokens.secret()));
        for (k, t) in [
            ("user", &self.to_user),
            ("party", &self.to_party),
            ("tag", &self.to_tag),
        ] {
            let ids: Vec<String> = t
                .iter()
                .flat_map(|t| t.split('|'))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            parts.extend(sorted(&ids).into_iter().map(|i| format!("{k}={i}")));
        }
    }
}

/// What the reader sees: a text card's title (the notification line), description and link;
/// otherwise each message's text as for a group robot.
pub fn preview(requests: &[Outbound], max_chars: usize) -> crate::channels::preview::Preview {
    use crate::channels::preview::{Preview, line_of, str_of, strip_tags};
    let card = requests
        .first()
        .and_then(|r| r.body.get("textcard"))
        .filter(|_| {
            requests
                .iter()
                .all(|r| r.body.get("msgtype") == Some(&json!("textcard")))
        });
    let Some(card) = card else {
        return crate::channels::wecom::preview(requests, max_chars);
    };
    let title = str_of(card.get("title"));
    // The description's `<div class="gray">` and the like style it; the reader sees the text.
    let description = strip_tags(&str_of(card.get("description")));
    Preview {
        line: line_of(&title, max_chars),
        format: "text".into(),
        body: format!("{title}\n{description}"),
        url: card.get("url").and_then(Value::as_str).map(str::to_string),
        ..Preview::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes() {
        let c = |code| classify(code, "x".into(), &[]);
        for code in [40001, 40013, 40091, 60020] {
            assert!(!c(code).is_retryable(), "{code}");
            assert_eq!(c(code).reason(), Reason::BadCredentials);
        }
        assert!(c(60020).to_string().contains("trusted IPs"));
        assert!(!c(81013).is_retryable());
        assert_eq!(c(81013).reason(), Reason::Recipient);
        assert_eq!(c(45009).retry_after(), Some(FREQ_LIMIT_WAIT));
        assert!(c(45033).is_retryable());
        assert!(c(-1).is_retryable());
        assert!(c(42001).is_retryable());
    }

    fn app(to_user: &str, secret: &str) -> WecomApp {
        WecomApp {
            api_url: "http://x".into(),
            corp_id: "ww1".into(),
            agent_id: 1000002,
            to_user: Some(to_user.into()),
            to_party: None,
            to_tag: None,
            msgtype: AppMsgType::Text,
            content: "wecom.text".into(),
            summary: "wecom.summary".into(),
            title: String::new(),
            description: String::new(),
            url: String::new(),
            btntxt: None,
            duplicate_check_interval: 1800,
            summary_max: 20,
            tokens: token::TokenCache::default().source("http://x", "ww1", Secret::new(secret)),
            rate_limit: None,
        }
    }

    #[test]
    fn identity_is_corp_agent_secret_and_recipients_in_any_order() {
        use crate::channels::{Integration, Kind, kind_of};
        let id = |a| Integration::identity(&Kind::WecomApp(a));
        let a = id(app("u1|u2", "secret-1"));
        assert_eq!(kind_of(&a), "wecom_app");
        assert!(a.as_str().starts_with("wecom-app-"), "{}", a.as_str());
        assert_eq!(a, id(app("u2| u1", "secret-1")));
        assert_ne!(a, id(app("u1|u3", "secret-1")));
        assert_ne!(a, id(app("u1|u2", "secret-2")));
        let r = |key: &str| {
            Integration::identity(&Kind::WecomRobot(
                crate::channels::wecom_robot::WecomRobot {
                    api_url: "http://x".into(),
                    key: Secret::new(key),
                    msgtype: crate::channels::wecom_robot::RobotMsgType::Markdown,
                    content: String::new(),
                    summary: String::new(),
                    mentioned_list: vec![],
                    mentioned_mobiles: vec![],
                    summary_max: 20,
                    rate_limit: None,
                },
            ))
        };
        assert_eq!(kind_of(&r("k1")), "wecom_robot");
        assert_ne!(r("k1"), r("k2"));
        assert!(!r("k1").as_str().contains("k1"));
    }

    #[test]
    fn ids_split_on_bars() {
        assert_eq!(split_ids(" a| b||a "), ["a", "b"]);
        assert!(split_ids("").is_empty());
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
            identity_of::<super::config::WecomAppConfig>(
                "{corp_id: ww1, agent_id: 1000002, api_secret: app-secret-1, to_user: 'zhang|li', to_party: '2', to_tag: '5'}"
            ),
            "wecom-app-ea6e59c9fda81ad9"
        );
    }
}
