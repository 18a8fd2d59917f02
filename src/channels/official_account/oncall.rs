//! The Official Account's on-call side: its server URL (`GET/POST /callback/official-account`:
//! the URL check and pushes, parsed by [`super::inbound`]), the keys it checks, how its
//! template messages are found again ([`marker`]), and pages to a person's
//! `contacts.official_account` ([`Pager`]): each message's `msgid` is kept with the incident,
//! what its delivery report (`TEMPLATESENDJOBFINISH`) names.

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tracing::warn;

use super::OfficialAccount;
use super::config::OfficialAccountConfig;
use super::inbound as oa;
use crate::channels::callbacks::{
    CallbackState, XML_LIMIT, deliver, not_found, plain, read_body, refused,
};
use crate::channels::error::DeliveryError;
use crate::channels::reach::{Desk, Pager};
use crate::channels::wxcrypt::{InboundError, MsgCrypt};
use crate::channels::{Contacts, Env, Integration, Progress};
use crate::secret::Secret;
use crate::webhook::Notification;

/// The keys of the Official Account's callbacks.
#[derive(Debug, Clone)]
pub struct OfficialAccountKeys {
    pub token: Secret,
    /// Present when `callback_aes_key` is configured (safe or compatible mode).
    pub crypt: Option<MsgCrypt>,
}

/// Whether `contacts` name the Official Account follower `openid`.
pub fn among(contacts: &Contacts, openid: &str) -> bool {
    contacts
        .official_account
        .as_ref()
        .is_some_and(|c| c.openid == openid)
}

/// A template message, by the `msgid` of its send answer (19 digits: 64 bits), and the
/// recipient's openid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub msg_id: u64,
    pub openid: String,
}

impl MessageRef {
    /// The marker of the `sent` entry recording the message, and its contact kind.
    pub fn marker(&self) -> (String, &'static str) {
        (format!("msgid={}", self.msg_id), super::KIND)
    }
}

/// The callback token of `entry` (and, in safe mode, the crypto with the app id), unless
/// `slot` has keys already.
pub fn keys(entry: &OfficialAccountConfig, slot: &mut Option<OfficialAccountKeys>) {
    if slot.is_some() {
        return;
    }
    if let Some(token) = &entry.callback_token {
        let crypt = entry.callback_aes_key.as_ref().and_then(|key| {
            MsgCrypt::new(token.clone(), key, entry.app_id.clone())
                .inspect_err(|e| {
                    warn!(error = %e, "oncall.channels.official_account: unusable callback key")
                })
                .ok()
        });
        *slot = Some(OfficialAccountKeys {
            token: token.clone(),
            crypt,
        });
    }
}

/// `GET/POST /callback/official-account`.
pub fn routes(router: Router<CallbackState>) -> Router<CallbackState> {
    router.route(
        "/callback/official-account",
        axum::routing::get(url_check).post(event),
    )
}

async fn url_check(
    State(app): State<CallbackState>,
    Query(q): Query<oa::CallbackQuery>,
) -> Response {
    let Some(keys) = app.endpoints.keys().official_account.clone() else {
        return not_found();
    };
    match oa::url_check(&keys, &q) {
        Ok(echo) => plain(echo),
        Err(e) => refused(e),
    }
}

async fn event(
    State(app): State<CallbackState>,
    Query(q): Query<oa::CallbackQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(keys) = app.endpoints.keys().official_account.clone() else {
        return not_found();
    };
    if q.signature.is_none() || q.timestamp.is_none() || q.nonce.is_none() {
        return refused(InboundError::Missing("signature, timestamp and nonce"));
    }
    let body = match read_body(&headers, body, XML_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let message = match oa::open(&keys, &q, &String::from_utf8_lossy(&body)) {
        Ok(m) => m,
        Err(e) => return refused(e),
    };
    let events: Vec<_> = oa::event(&message).into_iter().collect();
    match deliver(&app, events).await {
        Ok(_) => (StatusCode::OK, oa::ANSWER).into_response(),
        Err(r) => r,
    }
}

impl Pager for OfficialAccount {
    fn send_oncall<'a>(
        &'a self,
        desk: &'a dyn Desk,
        _: &'a Integration,
        env: &'a Env<'a>,
        n: &'a Notification,
        progress: &'a mut Progress,
    ) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let step = n.incident.as_ref().map_or(0, |c| c.step);
            let mut ids = Vec::new();
            let result = self.send_with_ids(env, n, progress, &mut ids).await;
            for (_, msgid) in ids {
                let detail = format!("step {step}: msgid={msgid}");
                let lost = "its delivery report will be ignored";
                desk.sent(super::KIND, detail, lost).await;
            }
            result
        })
    }
}
