//! The WeCom application's on-call side: its callback endpoint (`GET/POST /callback/wecom`:
//! the URL check and the encrypted events, parsed by [`super::inbound`]), the keys it checks,
//! how its cards are found again ([`marker`]), and pages and status updates to a person's
//! `contacts.wecom_app` ([`Pager`]): a page goes as a button card when the callback keys are
//! configured, its `task_id` and `response_code` kept with the incident; a status update
//! saying the incident was acknowledged also greys out every card the person got for it.
//! Every message to a member is counted against WeCom's per-member limits; a page past them
//! still goes, marked likely dropped and failed.

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tracing::warn;

use super::WecomApp;
use super::card::{Lang, MEMBER_LIMITS, Page, Sent, UpdateTo, acked_label, count_member};
use super::config::WecomAppConfig;
use super::inbound as wecom;
use crate::channels::callbacks::{
    CallbackState, XML_LIMIT, deliver, not_found, plain, read_body, refused,
};
use crate::channels::error::DeliveryError;
use crate::channels::reach::{Desk, Pager, SENT};
use crate::channels::wxcrypt::{InboundError, MsgCrypt};
use crate::channels::{Contacts, Env, Integration, Progress};
use crate::store::incident::IncidentState;
use crate::webhook::Notification;

/// How an act through a card came (the timeline's `contact` of an acknowledgement).
pub const VIA: &str = "wecom_card";

/// The timeline event recording a card greyed out after an acknowledgement.
pub const CARD_UPDATED: &str = "card_updated";

/// Whether `contacts` name WeCom user `userid` (compared case-insensitively: WeCom
/// lower-cases userids in callbacks).
pub fn among(contacts: &Contacts, userid: &str) -> bool {
    contacts
        .wecom_app
        .as_ref()
        .is_some_and(|c| c.userid.eq_ignore_ascii_case(userid))
}

/// A WeCom template card, by its `task_id`; `response_code` is the click's fresh code: one
/// `update_template_card` within 72 h, the only one left after the send's is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRef {
    pub task_id: String,
    pub response_code: Option<String>,
}

impl CardRef {
    /// The marker of the `sent` entry recording the card, and its contact kind.
    pub fn marker(&self) -> (String, &'static str) {
        (format!("task_id={}", self.task_id), super::KIND)
    }
}

/// The callback token and EncodingAESKey of `entry` (with its corp id), unless `slot` has
/// keys already.
pub fn keys(entry: &WecomAppConfig, slot: &mut Option<MsgCrypt>) {
    if slot.is_some() {
        return;
    }
    if let (Some(token), Some(key)) = (&entry.callback_token, &entry.callback_aes_key) {
        match MsgCrypt::new(token.clone(), key, entry.corp_id.clone()) {
            Ok(crypt) => *slot = Some(crypt),
            Err(e) => {
                warn!(error = %e, "oncall.channels.wecom_app: unusable callback key")
            }
        }
    }
}

/// `GET/POST /callback/wecom`.
pub fn routes(router: Router<CallbackState>) -> Router<CallbackState> {
    router.route("/callback/wecom", axum::routing::get(url_check).post(event))
}

async fn url_check(
    State(app): State<CallbackState>,
    Query(q): Query<wecom::CallbackQuery>,
) -> Response {
    let Some(crypt) = app.endpoints.keys().wecom.clone() else {
        return not_found();
    };
    match wecom::url_check(&crypt, &q) {
        // The plaintext and nothing else: no quotes, no newline.
        Ok(echo) => plain(echo),
        Err(e) => refused(e),
    }
}

async fn event(
    State(app): State<CallbackState>,
    Query(q): Query<wecom::CallbackQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(crypt) = app.endpoints.keys().wecom.clone() else {
        return not_found();
    };
    if q.msg_signature.is_none() || q.timestamp.is_none() || q.nonce.is_none() {
        return refused(InboundError::Missing("msg_signature, timestamp and nonce"));
    }
    let body = match read_body(&headers, body, XML_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let message = match wecom::open(&crypt, &q, &String::from_utf8_lossy(&body)) {
        Ok(m) => m,
        Err(e) => return refused(e),
    };
    let events: Vec<_> = wecom::event(&message).into_iter().collect();
    match deliver(&app, events).await {
        // An empty 200: no passive reply (the cards are updated through the API).
        Ok(_) => StatusCode::OK.into_response(),
        Err(r) => r,
    }
}

fn lang(locale: crate::template::Locale) -> Lang {
    match locale {
        crate::template::Locale::En => Lang::En,
        _ => Lang::Zh,
    }
}

impl Pager for WecomApp {
    fn sends(&self, n: &Notification) -> bool {
        n.incident.is_some()
    }

    fn send_oncall<'a>(
        &'a self,
        desk: &'a dyn Desk,
        integration: &'a Integration,
        env: &'a Env<'a>,
        n: &'a Notification,
        progress: &'a mut Progress,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(send(self, desk, integration, env, n, progress))
    }
}

/// A message to a person's WeCom application contact (see the module's documentation).
async fn send(
    app: &WecomApp,
    desk: &dyn Desk,
    integration: &Integration,
    env: &Env<'_>,
    n: &Notification,
    progress: &mut Progress,
) -> Result<(), DeliveryError> {
    let (Some(ctx), Some(userid)) = (&n.incident, desk.recipient(super::KIND)) else {
        return integration.send(env, n, progress).await;
    };
    let person = desk.person();
    // Counted before sending, pages and status updates alike: each is a message to the member.
    let within = match count_member(desk.store(), &app.corp_id, &userid, env.now).await {
        Ok(within) => within,
        Err(e) => {
            warn!(incident = ctx.id, error = %e, "cannot count WeCom's per-member limits; sending uncounted");
            true
        }
    };
    if ctx.update.is_some() {
        integration.send(env, n, progress).await?;
        if ctx.state == IncidentState::Acknowledged.as_str() {
            update_cards(env, desk, app, &userid).await;
        }
        return Ok(());
    }
    let step = ctx.step;
    let preview = env.context_with_preview(n, n, &app.summary, app.summary_max)?;
    let preview = preview["preview"].as_str().unwrap_or_default().to_string();
    let lines: Vec<String> = n
        .alerts
        .iter()
        .filter(|a| a.status == crate::webhook::Status::Firing)
        .map(|a| {
            a.annotations
                .get("summary")
                .or_else(|| a.labels.get("alertname"))
                .cloned()
                .unwrap_or_default()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let page = Page {
        touser: &userid,
        preview: &preview,
        reference: &ctx.reference,
        incident: &ctx.reference,
        step,
        person,
        lines: &lines,
        ack_url: ctx.ack_url.as_deref().unwrap_or_default(),
        lang: lang(desk.locale()),
    };
    let detail = if desk.keys().wecom.is_some() {
        match app.send_page(env, &page).await? {
            Sent::Card {
                task_id,
                response_code: Some(code),
                ..
            } => format!("step {step}: card task_id={task_id} response_code={code}"),
            Sent::Card { task_id, .. } => format!("step {step}: card task_id={task_id}"),
            Sent::Textcard { card_error, .. } => {
                format!("step {step}: textcard (card refused: {card_error})")
            }
        }
    } else if !page.ack_url.is_empty() {
        // Without the callback keys no button: the link is the ack path, the textcard's url.
        let msgid = app.send_textcard(env, &page).await?;
        format!("step {step}: textcard msgid={msgid}")
    } else {
        integration.send(env, n, progress).await?;
        format!("step {step}: {}", app.msgtype.as_str())
    };
    let lost = "it will not be updated";
    desk.sent(super::KIND, detail, lost).await;
    if !within {
        // WeCom drops it without a word: a failed page (rule 8), though it went out.
        let detail = format!(
            "step {step}: likely dropped: past WeCom's {} a minute or {} an hour to one member",
            MEMBER_LIMITS[0].2, MEMBER_LIMITS[1].2
        );
        let recorded = desk
            .outcome(super::KIND, Some("failed"), env.now, detail)
            .await;
        if let Err(e) = recorded {
            warn!(incident = ctx.id, error = %e, "a page likely dropped is not recorded with the incident");
        }
    }
    Ok(())
}

/// Greys out every card the desk's person (WeCom user `userid`) got for its incident that
/// has a `response_code` not yet spent: "张三 已认领 K7Q2". A code is spent once whatever
/// WeCom answers (never retried).
async fn update_cards(env: &Env<'_>, desk: &dyn Desk, app: &WecomApp, userid: &str) {
    let person = desk.person();
    let Ok(Some(inc)) = desk.store().incident(desk.incident()).await else {
        return;
    };
    let Some(by) = inc.acknowledged_by.as_deref() else {
        return;
    };
    let label = acked_label(&desk.display_name(by), &inc.reference, lang(desk.locale()));
    let spent: Vec<&str> = inc
        .timeline
        .iter()
        .filter(|e| e.event == CARD_UPDATED)
        .filter_map(|e| e.detail.as_deref())
        .collect();
    let codes: Vec<(String, String)> = inc
        .timeline
        .iter()
        .filter(|e| e.event == SENT && e.person.as_deref() == Some(person))
        .filter_map(|e| {
            let d = e.detail.as_deref()?;
            let task = d.split("task_id=").nth(1)?.split(' ').next()?.to_string();
            let code = d
                .split("response_code=")
                .nth(1)?
                .split(' ')
                .next()?
                .to_string();
            Some((task, code))
        })
        .filter(|(task, _)| !spent.iter().any(|s| s.contains(task.as_str())))
        .collect();
    for (task, code) in codes {
        let result = app
            .update_card(
                env,
                &code,
                &UpdateTo::Users(vec![userid.to_string()]),
                &label,
            )
            .await;
        let detail = match &result {
            Ok(()) => format!("task_id={task}: {label}"),
            Err(e) => format!("task_id={task}: not updated: {e}"),
        };
        let _ = desk.log(CARD_UPDATED, super::KIND, detail).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::wecom_app::contact::WecomAppContact;
    use crate::channels::{Contact, PageRef};

    #[test]
    fn a_click_finds_its_person_whatever_the_case_and_its_card_by_task_id() {
        let contacts = Contacts {
            wecom_app: Some(WecomAppContact {
                userid: "ZhangSan".into(),
            }),
            ..Contacts::default()
        };
        // WeCom lower-cases userids in callbacks.
        let by = Contact::WecomApp {
            userid: "zhangsan".into(),
        };
        assert!(by.among(&contacts));
        let other = Contact::WecomApp {
            userid: "lisi".into(),
        };
        assert!(!other.among(&contacts));
        assert!(!by.among(&Contacts::default()));
        let page = PageRef::WecomCard(CardRef {
            task_id: "t-1".into(),
            response_code: Some("rc".into()),
        });
        assert_eq!(page.marker(), ("task_id=t-1".to_string(), "wecom_app"));
        assert_eq!(page.via(), "wecom_card");
    }
}
