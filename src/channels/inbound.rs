//! The neutral side of the callbacks upstreams send us: what a channel's `inbound.rs` turns a
//! request into, so that chatops (and whatever else consumes replies) never learns which
//! upstream a user wrote through.
//!
//! A channel that receives callbacks declares one [`Endpoint`] in the registry
//! ([`super::INBOUND`]): its path, how a request's head is verified against its secret, and
//! how its body becomes an [`Event`]. Answering a user on the channel they wrote through is
//! the registry's [`super::reply`]; what the channel does on its own when a user writes (the
//! gateway's send window) is [`super::received`]. Nothing here reads the configuration, the
//! store or HTTP bodies: the endpoint is mounted and its body read by the caller.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Integration;
use crate::secret::Secret;

/// What a callback request shows before its body is read: all a verification may look at, so
/// that nothing is buffered for a caller without the secret.
#[derive(Debug, Clone, Copy, Default)]
pub struct Head<'a> {
    /// The `{secret}` segment of the path, for endpoints whose path is their credential.
    pub path_secret: Option<&'a str>,
    /// The `Authorization` header, when it is text.
    pub authorization: Option<&'a str>,
    /// The query string, without the `?` (signed callbacks put their signature there).
    pub query: Option<&'a str>,
}

/// What a channel may verify a callback with: the secret the `chatops` block configures for its
/// kind, and the integrations in force (for channels whose callback keys are part of an
/// integration's own config).
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub secret: Option<&'a Secret>,
    pub receivers: &'a BTreeMap<String, Vec<Integration>>,
}

/// Why a request is refused from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Answered as if the endpoint did not exist (a path that is its own credential).
    NotFound,
    /// A credential missing or wrong: 401.
    Unauthorized,
}

/// Why a verified body is refused: 400 with the reason.
#[derive(Debug)]
pub enum Malformed {
    /// The body (or a part of it) is not the JSON the upstream sends; serde's words, which
    /// quote the sender's text, are made inert by the caller.
    Json(serde_json::Error),
    /// Well-formed, but missing what it must carry; the answer's text, newline included.
    Invalid(&'static str),
}

/// A text a user sent through a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The channel it came through (its kind, [`super::KINDS`]).
    pub kind: &'static str,
    /// Who wrote, as the channel names them (a WxPusher UID, a gateway user id).
    pub user: String,
    /// What they wrote.
    pub text: String,
    /// The bot account it arrived on, for channels with several; empty otherwise.
    pub account: String,
    /// What tells this message from a replay of it (with the user and the text), when the
    /// upstream gives one; `None`: a replay cannot be told from the same text sent again.
    pub upstream_id: Option<String>,
    /// What the channel needs to answer in the same conversation (opaque to callers).
    pub reply_token: String,
}

/// A user who subscribed through a channel (a WxPusher parameter QR code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The channel it came through.
    pub kind: &'static str,
    /// The subscriber's id on that channel.
    pub user: String,
    /// The tag the subscription carries (the QR code's `extra`); empty when none.
    pub tag: String,
    /// When the user subscribed, when the upstream says.
    pub at: Option<DateTime<Utc>>,
}

/// What one callback says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(Message),
    Subscribed(Subscription),
    /// What to answer the upstream, and nothing more to do (a URL check's echo).
    Answer(String),
    /// Something the upstream reports that nothing here acts on: acknowledged, not refused,
    /// so that the upstream does not retry it.
    Ignored,
}

/// One callback endpoint a channel serves.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// The channel's kind ([`super::KINDS`]); its secret is `chatops`' for this kind.
    pub kind: &'static str,
    /// The route, `POST`, with `{secret}` where the path carries the credential.
    pub path: &'static str,
    /// Whether the route answers `GET` too (upstreams that check a URL before using it); the
    /// request then has an empty body.
    pub get: bool,
    /// Checks the request's head against the keys, in constant time; logs why it refuses. An
    /// endpoint without keys answers [`Refused::NotFound`]: it does not exist.
    pub verify: fn(&Head<'_>, &Keys<'_>) -> Result<(), Refused>,
    /// The verified body → what it says.
    pub parse: fn(&Head<'_>, &Keys<'_>, &[u8]) -> Result<Event, Malformed>,
}

/// Whether `given` is `expected`, compared in constant time.
pub fn same(given: &str, expected: &Secret) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(expected.expose().as_bytes()).into()
}
