//! A page as a WeCom `template_card` of type `button_interaction` (the 认领/Acknowledge and
//! 升级/Escalate buttons), the `update_template_card` that greys every card of an incident
//! once someone acknowledged, and the calls that send them: `message/send` and
//! `message/update_template_card`, with the application's access token.
//!
//! A button's key carries the incident and the step (`ack:K7Q2:1`), so a click names what it
//! acts on without any state; the card's `task_id` is unique for ever (WeCom refuses a
//! reused one) and is what the callback echoes. A card WeCom refuses (an application without
//! a callback URL cannot send callback cards) is sent again, once, as a `textcard` with the
//! same one-tap link. `response_code`s are spent once: an update is never retried with the
//! same code.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{DESCRIPTION_MAX_BYTES, SERVICE, TITLE_MAX_BYTES, WecomApp, classify, is_token_error};
use crate::channels::error::DeliveryError;
use crate::channels::{Env, http};
use crate::secret::Secret;
use crate::text;

pub const KEY_ACK: &str = "ack";
pub const KEY_ESCALATE: &str = "escalate";
/// `main_title.title`: WeCom advises ≤ 36 characters; the page's preview is 20.
pub const TITLE_MAX_CHARS: usize = 36;
/// `sub_title_text`: ≤ 160 characters advised.
pub const SUB_TITLE_MAX_CHARS: usize = 160;
/// `task_id`: ≤ 128 bytes of `[0-9A-Za-z_\-@]`.
pub const TASK_ID_MAX_BYTES: usize = 128;

/// WeCom drops messages to one member beyond these, silently: (window, seconds, messages).
pub const MEMBER_LIMITS: [(&str, i64, i64); 2] = [("minute", 60, 30), ("hour", 3600, 1000)];

/// Counts one message to `userid` of the corp in the store (across replicas) and says whether
/// it is still within WeCom's per-member limits. Past them the page is still sent, but it is
/// likely dropped: the caller marks it so and counts it as failed. Fixed windows.
pub async fn count_member(
    store: &crate::store::Store,
    corp_id: &str,
    userid: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, crate::store::StoreError> {
    let secs = now.timestamp();
    let user = userid.to_lowercase();
    let mut within = true;
    for (window, len, limit) in MEMBER_LIMITS {
        let start = secs - secs.rem_euclid(len);
        let until = chrono::DateTime::from_timestamp(start + len, 0).unwrap_or(now);
        let key = format!("wecom_member:{corp_id}:{user}:{window}:{start}");
        let n = store.add_counter(key, 1, until).await?;
        within &= n <= limit;
    }
    Ok(within)
}

/// What a button's key says: the action, the incident and the step it was sent for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ButtonKey {
    pub action: &'static str,
    pub incident: String,
    pub step: u32,
}

impl ButtonKey {
    pub fn format(action: &str, incident: &str, step: u32) -> String {
        format!("{action}:{incident}:{step}")
    }

    /// Reads a key we built; anything else (another application's buttons) is `None`.
    pub fn parse(key: &str) -> Option<ButtonKey> {
        let (rest, step) = key.rsplit_once(':')?;
        let (action, incident) = rest.split_once(':')?;
        let action = match action {
            KEY_ACK => KEY_ACK,
            KEY_ESCALATE => KEY_ESCALATE,
            _ => return None,
        };
        if incident.is_empty() {
            return None;
        }
        Some(ButtonKey {
            action,
            incident: incident.to_string(),
            step: step.parse().ok()?,
        })
    }
}

/// The language of the card's fixed words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

/// One page to one WeCom member.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    /// The member's userid (`wecom_app.userid`).
    pub touser: &'a str,
    /// The 20-character preview (cut here to [`TITLE_MAX_CHARS`] if longer).
    pub preview: &'a str,
    /// The incident's short reference, shown in the card (`K7Q2`).
    pub reference: &'a str,
    /// What the buttons' keys carry to name the incident (its reference or id).
    pub incident: &'a str,
    pub step: u32,
    /// The person's name, part of the `task_id`.
    pub person: &'a str,
    /// The alert lines, joined under the title.
    pub lines: &'a [String],
    /// The one-tap link (`{public_url}/ack/{token}`): the card's tap target, the textcard's url.
    pub ack_url: &'a str,
    pub lang: Lang,
}

/// A `task_id` unique for ever: reference, step, person (reduced to the allowed characters),
/// the time in base 36 and randomness.
pub fn task_id(reference: &str, step: u32, person: &str, now_ms: i64) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let suffix = format!(
        "{}{:06x}",
        base36(now_ms.max(0) as u64),
        rand::random::<u32>() & 0xff_ffff
    );
    let head = format!("{}-{step}-{}", clean(reference), clean(person));
    let head = text::byte_prefix(&head, TASK_ID_MAX_BYTES - suffix.len() - 1);
    format!("{head}-{suffix}")
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn words(lang: Lang) -> (&'static str, &'static str, &'static str, String) {
    match lang {
        Lang::Zh => ("告警", "认领", "升级", "第 {} 步".to_string()),
        Lang::En => ("Alert", "Acknowledge", "Escalate", "step {}".to_string()),
    }
}

/// The `message/send` body of a page as a button card.
pub fn card_body(agent_id: i64, page: &Page<'_>, task_id: &str) -> Value {
    let (source, ack, escalate, step) = words(page.lang);
    let title = text::truncate(&text::one_line(page.preview), TITLE_MAX_CHARS);
    let sub = text::truncate(page.lines.join("\n").trim(), SUB_TITLE_MAX_CHARS);
    let mut card = json!({
        "card_type": "button_interaction",
        "source": {"desc": source, "desc_color": 2},
        "main_title": {
            "title": title,
            "desc": format!("{} · {}", page.reference, step.replace("{}", &page.step.to_string())),
        },
        "card_action": {"type": 1, "url": page.ack_url},
        "task_id": task_id,
        "button_list": [
            {"text": ack, "style": 1, "key": ButtonKey::format(KEY_ACK, page.incident, page.step)},
            {"text": escalate, "style": 2, "key": ButtonKey::format(KEY_ESCALATE, page.incident, page.step)},
        ],
    });
    if !sub.is_empty() {
        card["sub_title_text"] = json!(sub);
    }
    json!({
        "touser": page.touser,
        "msgtype": "template_card",
        "agentid": agent_id,
        "template_card": card,
        // A page is unique by its task id; WeCom's duplicate check would only hide a re-page.
        "enable_duplicate_check": 0,
    })
}

/// The `message/send` body of the same page as a `textcard` (the fallback when the card is
/// refused): the link is the ack path.
pub fn textcard_body(agent_id: i64, page: &Page<'_>) -> Value {
    let (_, ack, _, step) = words(page.lang);
    let title = text::truncate_bytes(
        &text::truncate(&text::one_line(page.preview), 20),
        TITLE_MAX_BYTES,
    );
    let mut description = format!(
        "{} · {}",
        page.reference,
        step.replace("{}", &page.step.to_string())
    );
    if !page.lines.is_empty() {
        description.push('\n');
        description.push_str(page.lines.join("\n").trim());
    }
    json!({
        "touser": page.touser,
        "msgtype": "textcard",
        "agentid": agent_id,
        "textcard": {
            "title": title,
            "description": text::truncate_bytes(&description, DESCRIPTION_MAX_BYTES),
            "url": page.ack_url,
            "btntxt": text::truncate(ack, 4),
        },
        "enable_duplicate_check": 0,
    })
}

/// Whom an update reaches.
#[derive(Debug, Clone)]
pub enum UpdateTo {
    /// Everyone who got the card the code belongs to (`atall: 1`).
    All,
    Users(Vec<String>),
}

/// The `update_template_card` body: the buttons greyed out with `replace_name`
/// (`张三 已认领 K7Q2`).
pub fn update_body(agent_id: i64, response_code: &str, to: &UpdateTo, replace_name: &str) -> Value {
    let mut body = json!({
        "agentid": agent_id,
        "response_code": response_code,
        "button": {"replace_name": replace_name},
    });
    match to {
        UpdateTo::All => body["atall"] = json!(1),
        UpdateTo::Users(u) => {
            body["userids"] = json!(u);
            body["atall"] = json!(0);
        }
    }
    body
}

/// The `replace_name` after an acknowledgement.
pub fn acked_label(display_name: &str, reference: &str, lang: Lang) -> String {
    match lang {
        Lang::Zh => format!("{display_name} 已认领 {reference}"),
        Lang::En => format!("{display_name} acknowledged {reference}"),
    }
}

/// What a WeCom call answered.
#[derive(Debug, Default, Deserialize)]
struct CallResult {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    /// A `|`-separated string from `message/send`, an array from `update_template_card`.
    #[serde(default)]
    invaliduser: Value,
    #[serde(default)]
    msgid: String,
    #[serde(default)]
    response_code: String,
}

/// WeCom took the call but named the member as invalid.
fn not_delivered(recipients: &[String]) -> DeliveryError {
    DeliveryError::Upstream {
        service: SERVICE,
        code: 0,
        message:
            "the member is not in the application's visible range, or no such userid (invaliduser)"
                .into(),
        reason: crate::channels::error::Reason::Recipient,
        retryable: false,
        recipients: recipients.to_vec(),
    }
}

impl CallResult {
    fn has_invalid(&self) -> bool {
        match &self.invaliduser {
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => false,
        }
    }
}

/// How a page went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// As a button card: its `task_id`, and the send's `response_code` (one update, 72 h).
    Card {
        task_id: String,
        msgid: String,
        response_code: Option<String>,
    },
    /// The card was refused (`card_error`, WeCom's words) and the textcard went instead.
    Textcard { msgid: String, card_error: String },
}

impl WecomApp {
    fn api(&self, path: &str) -> String {
        format!("{}/cgi-bin/{path}", self.api_url.trim_end_matches('/'))
    }

    /// One call with the application's token; on 42001/40014 a fresh token and one more try.
    async fn call_json(
        &self,
        env: &Env<'_>,
        path: &str,
        body: &Value,
    ) -> Result<CallResult, DeliveryError> {
        let mut token = self.tokens.get(env).await?;
        let mut result = self.post(env, path, &token, body).await?;
        if is_token_error(result.errcode) {
            self.tokens.invalidate(&token).await;
            token = self.tokens.get(env).await?;
            result = self.post(env, path, &token, body).await?;
        }
        Ok(result)
    }

    async fn post(
        &self,
        env: &Env<'_>,
        path: &str,
        token: &Secret,
        body: &Value,
    ) -> Result<CallResult, DeliveryError> {
        if let Some(limit) = self.rate_limit {
            env.limits.acquire(&self.rate_key(), limit).await;
        }
        let request = env
            .client
            .post(self.api(path))
            .query(&[("access_token", token.expose())])
            .json(body);
        let clean = |s: &str| {
            env.scrubber
                .scrub(&s.replace(token.expose(), "<access_token>"))
        };
        let mut result: CallResult = http::send(SERVICE, request)
            .await?
            .success_json(SERVICE, clean)?;
        result.errmsg = clean(&result.errmsg);
        Ok(result)
    }

    /// Sends a page as a button card; a card WeCom refuses goes once more as a textcard.
    /// A member WeCom names as invalid is a failure of the page, not of the card.
    pub async fn send_page(&self, env: &Env<'_>, page: &Page<'_>) -> Result<Sent, DeliveryError> {
        let task_id = task_id(
            page.reference,
            page.step,
            page.person,
            env.now.timestamp_millis(),
        );
        let card = card_body(self.agent_id, page, &task_id);
        let r = self.call_json(env, "message/send", &card).await?;
        let recipients = [page.touser.to_string()];
        if r.errcode == 0 && !r.has_invalid() {
            return Ok(Sent::Card {
                task_id,
                msgid: r.msgid,
                response_code: Some(r.response_code).filter(|c| !c.is_empty()),
            });
        }
        if r.errcode == 0 {
            return Err(not_delivered(&recipients));
        }
        // WeCom busy, the credentials wrong or the member unknown: a textcard cannot do
        // better. Any other code refuses the card itself.
        if matches!(
            r.errcode,
            -1 | 45009 | 45033 | 42001 | 40014 | 40001 | 40013 | 40091 | 60020 | 81013
        ) {
            return Err(classify(r.errcode, r.errmsg, &recipients));
        }
        let card_error = format!("{} {}", r.errcode, r.errmsg);
        tracing::warn!(corp_id = %self.corp_id, agent_id = self.agent_id, errcode = r.errcode, "WeCom refused the button card; sending the page as a textcard");
        let t = self
            .call_json(env, "message/send", &textcard_body(self.agent_id, page))
            .await?;
        if t.errcode == 0 && t.has_invalid() {
            return Err(not_delivered(&recipients));
        }
        if t.errcode != 0 {
            return Err(classify(t.errcode, t.errmsg, &recipients));
        }
        Ok(Sent::Textcard {
            msgid: t.msgid,
            card_error,
        })
    }

    /// Sends a page as a textcard (an application without callback keys cannot send button
    /// cards): the one-tap link is its url. Answers WeCom's msgid.
    pub async fn send_textcard(
        &self,
        env: &Env<'_>,
        page: &Page<'_>,
    ) -> Result<String, DeliveryError> {
        let recipients = [page.touser.to_string()];
        let t = self
            .call_json(env, "message/send", &textcard_body(self.agent_id, page))
            .await?;
        if t.errcode == 0 && t.has_invalid() {
            return Err(not_delivered(&recipients));
        }
        if t.errcode != 0 {
            return Err(classify(t.errcode, t.errmsg, &recipients));
        }
        Ok(t.msgid)
    }

    /// Spends `response_code` on greying the cards with `replace_name`. Any non-zero errcode
    /// is "not updated" (a spent or expired code has no documented errcode); never retried
    /// with the same code.
    pub async fn update_card(
        &self,
        env: &Env<'_>,
        response_code: &str,
        to: &UpdateTo,
        replace_name: &str,
    ) -> Result<(), DeliveryError> {
        let body = update_body(self.agent_id, response_code, to, replace_name);
        let r = self
            .call_json(env, "message/update_template_card", &body)
            .await?;
        if r.errcode != 0 {
            return Err(DeliveryError::Upstream {
                service: SERVICE,
                code: r.errcode,
                message: format!("card not updated: {}", r.errmsg),
                reason: crate::channels::error::Reason::Upstream,
                retryable: false,
                recipients: Vec::new(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(lines: &[String]) -> Page<'_> {
        Page {
            touser: "ZhangSan",
            preview: "[P1] 订单库磁盘 95%",
            reference: "K7Q2",
            incident: "K7Q2",
            step: 1,
            person: "zhangsan",
            lines,
            ack_url: "https://alerts.example.com/ack/TOKEN",
            lang: Lang::Zh,
        }
    }

    #[test]
    fn the_card_as_sent() {
        let lines = vec!["db-7:9100 磁盘使用率 95%，已持续 12 分钟".to_string()];
        let body = card_body(1000002, &page(&lines), "K7Q2-1-zhangsan-abc");
        assert_eq!(
            body,
            json!({"touser":"ZhangSan","msgtype":"template_card","agentid":1000002,
              "template_card":{"card_type":"button_interaction",
                "source":{"desc":"告警","desc_color":2},
                "main_title":{"title":"[P1] 订单库磁盘 95%","desc":"K7Q2 · 第 1 步"},
                "sub_title_text":"db-7:9100 磁盘使用率 95%，已持续 12 分钟",
                "card_action":{"type":1,"url":"https://alerts.example.com/ack/TOKEN"},
                "task_id":"K7Q2-1-zhangsan-abc",
                "button_list":[{"text":"认领","style":1,"key":"ack:K7Q2:1"},
                               {"text":"升级","style":2,"key":"escalate:K7Q2:1"}]},
              "enable_duplicate_check":0})
        );
        let mut en = page(&lines);
        en.lang = Lang::En;
        let body = card_body(1, &en, "t");
        assert_eq!(
            body["template_card"]["button_list"][0]["text"],
            "Acknowledge"
        );
        assert_eq!(body["template_card"]["button_list"][1]["text"], "Escalate");
        assert_eq!(body["template_card"]["main_title"]["desc"], "K7Q2 · step 1");
    }

    #[test]
    fn the_card_as_updated() {
        let label = acked_label("张三", "K7Q2", Lang::Zh);
        assert_eq!(
            update_body(1000002, "RC_FROM_CALLBACK", &UpdateTo::All, &label),
            json!({"agentid":1000002,"response_code":"RC_FROM_CALLBACK","atall":1,
                   "button":{"replace_name":"张三 已认领 K7Q2"}})
        );
        assert_eq!(
            update_body(
                7,
                "RC",
                &UpdateTo::Users(vec!["zhangsan".into(), "lisi".into()]),
                "x"
            ),
            json!({"agentid":7,"response_code":"RC","atall":0,"userids":["zhangsan","lisi"],
                   "button":{"replace_name":"x"}})
        );
    }

    #[test]
    fn the_textcard_fallback_keeps_the_link_and_the_reference() {
        let lines = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            textcard_body(5, &page(&lines)),
            json!({"touser":"ZhangSan","msgtype":"textcard","agentid":5,
              "textcard":{"title":"[P1] 订单库磁盘 95%","description":"K7Q2 · 第 1 步\na\nb",
                "url":"https://alerts.example.com/ack/TOKEN","btntxt":"认领"},
              "enable_duplicate_check":0})
        );
    }

    #[test]
    fn keys_round_trip_and_foreign_keys_do_not_parse() {
        let k = ButtonKey::format(KEY_ESCALATE, "K7Q2", 3);
        assert_eq!(
            ButtonKey::parse(&k),
            Some(ButtonKey {
                action: KEY_ESCALATE,
                incident: "K7Q2".into(),
                step: 3
            })
        );
        for bad in [
            "key111",
            "ack:K7Q2",
            "ack::1",
            "silence:K7Q2:1",
            "ack:K7Q2:-1",
        ] {
            assert_eq!(ButtonKey::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn messages_to_a_member_past_30_a_minute_are_likely_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path(), 100).unwrap();
        // Ahead of the clock: the store expires counters by the wall clock.
        let ahead = chrono::Utc::now().timestamp() + 7200;
        let t0 = chrono::DateTime::from_timestamp(ahead - ahead % 3600, 0).unwrap();
        for _ in 0..30 {
            assert!(count_member(&store, "ww1", "ZhangSan", t0).await.unwrap());
        }
        assert!(!count_member(&store, "ww1", "zhangsan", t0).await.unwrap());
        assert!(count_member(&store, "ww1", "LiSi", t0).await.unwrap());
        let next = t0 + chrono::Duration::minutes(1);
        assert!(count_member(&store, "ww1", "ZhangSan", next).await.unwrap());
    }

    #[test]
    fn task_ids_are_bounded_clean_and_distinct() {
        let a = task_id("K7Q2", 1, "张三 zhang", 1_700_000_000_000);
        let b = task_id("K7Q2", 1, "张三 zhang", 1_700_000_000_000);
        assert_ne!(a, b);
        assert!(a.starts_with("K7Q2-1-___zhang-"), "{a}");
        let long = task_id(&"R".repeat(300), 1, "p", 0);
        assert!(long.len() <= TASK_ID_MAX_BYTES);
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@'))
        );
    }
}
