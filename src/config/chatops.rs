//! The `chatops:` block of the configuration and its validation.
//!
//! The `chatops:` section: its types and checks. Kept with the loader, below everything that
//! uses it, so that [`crate::chatops`] can read the running configuration.
//!
//! The keys of the channels commands arrive through (a callback secret each, a list each
//! under `allowed`) are not written here: each channel declares them in its folder
//! ([`crate::channels::CHATOPS`]), and the block is read from those declarations. It is read
//! by hand because serde's derive takes its keys from the struct alone; it answers what the
//! derived, `deny_unknown_fields` struct answered: the same keys in the same order, the same
//! refusals and messages.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::{check_http_url, resolve_secret};
use crate::channels::CHATOPS;
use crate::channels::chatops::CommandChannel;
use crate::secret::Secret;

/// Shortest callback secret accepted: it is a callback's only credential (a path segment, a
/// bearer token).
pub const MIN_CALLBACK_SECRET: usize = 16;

/// Replies from WeChat: where silences go, how callbacks are authenticated, who may act.
#[derive(Debug, Clone)]
pub struct ChatopsConfig {
    /// Base URL of the Alertmanager whose API v2 receives silences.
    pub alertmanager_url: String,
    /// The secret of each channel's callback, one per channel of [`crate::channels::CHATOPS`]
    /// in its order: `<secret_key>` or its `_file` twin.
    pub callback_secrets: Vec<CallbackSecret>,
    /// Who may run commands, per reply channel; others are refused. See [`Allowed`].
    pub allowed: Allowed,
    /// Subscriber enrolments (subscription callbacks) accepted per callback secret per hour;
    /// past it they are refused (and counted as `result="enrol_capped"`), so that a leaked
    /// callback URL cannot enrol an unbounded audience for the next alert.
    pub max_subscribers_per_hour: u32,
}

fn default_max_subscribers_per_hour() -> u32 {
    100
}

/// One channel's callback secret in the `chatops:` block.
#[derive(Debug, Clone)]
pub struct CallbackSecret {
    /// The channel whose callback it authenticates.
    pub channel: Channel,
    /// `<secret_key>`; read from `file` once the configuration is loaded.
    pub secret: Option<Secret>,
    /// `<secret_key>_file`.
    pub file: Option<PathBuf>,
}

impl CallbackSecret {
    /// Whether the callback is configured (a secret or its file given).
    fn given(&self) -> bool {
        self.secret.is_some() || self.file.is_some()
    }
}

/// The channel a command arrived through: one of [`crate::channels::CHATOPS`].
#[derive(Clone, Copy)]
pub struct Channel(&'static CommandChannel);

impl Channel {
    /// The channel of a channel kind ([`crate::channels::KINDS`]) commands can arrive through.
    pub fn of_kind(kind: &str) -> Option<Channel> {
        CHATOPS.iter().find(|c| c.kind == kind).map(Channel)
    }

    /// The channel an id's shape says it belongs to ([`CommandChannel::owns`]); `None` for an
    /// id of no channel's shape.
    pub fn of(id: &str) -> Option<Channel> {
        CHATOPS.iter().find(|c| (c.owns)(id)).map(Channel)
    }

    /// Its kind ([`crate::channels::KINDS`]).
    pub fn kind(self) -> &'static str {
        self.0.kind
    }

    /// Every channel commands can arrive through, in the registry's order.
    fn all() -> impl Iterator<Item = Channel> {
        CHATOPS.iter().map(Channel)
    }
}

impl PartialEq for Channel {
    fn eq(&self, other: &Channel) -> bool {
        self.0.kind == other.0.kind
    }
}

impl Eq for Channel {}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.kind)
    }
}

/// `chatops.allowed`: ids allowed to run commands, each valid on one channel only, so that an
/// id of one channel cannot act through another's callback.
///
/// Two forms:
/// - a list (`allowed: [id, id]`, the original form, still accepted): each entry belongs to
///   the channel its shape names ([`CommandChannel::owns`]). An entry of no channel's shape
///   is accepted on every channel, as before, and `check-config` warns about it;
/// - a map naming the channel of each id, by its kind: `allowed: { <kind>: [id], … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    List(Vec<String>),
    /// The map form: every channel's list, in the registry's order (empty when not given).
    PerChannel(Vec<(Channel, Vec<String>)>),
}

impl Default for Allowed {
    fn default() -> Allowed {
        Allowed::List(Vec::new())
    }
}

/// `a`, `a or b`, `a, b or c`: the way messages list alternatives.
fn either(items: &[String], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., end] => format!("{} {last} {end}", init.join(", ")),
    }
}

/// The block's keys, in the order the struct declared them before its channels' keys moved
/// to their folders: serde lists them in an unknown-field error.
static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut keys = vec!["alertmanager_url"];
    for (c, file) in CHATOPS.iter().zip(FILE_KEYS.iter()) {
        keys.push(c.secret_key);
        keys.push(file.as_str());
    }
    keys.extend(["allowed", "max_subscribers_per_hour"]);
    keys
});

/// Each channel's `<secret_key>_file`, in the registry's order.
static FILE_KEYS: LazyLock<Vec<String>> = LazyLock::new(|| {
    CHATOPS
        .iter()
        .map(|c| format!("{}_file", c.secret_key))
        .collect()
});

/// The keys of the map form of `allowed`: the channels' kinds.
static ALLOWED_KEYS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| CHATOPS.iter().map(|c| c.kind).collect());

/// A key of a map read as a `deny_unknown_fields` struct with the fields `.0`: the field it
/// names, else serde's own `unknown field` error, as a derived struct answers.
struct Key(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = &'static str;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<&'static str, E> {
        let field = usize::try_from(v).ok().and_then(|i| self.0.get(i));
        field.copied().ok_or_else(|| {
            let expected = format!("field index 0 <= i < {}", self.0.len());
            E::invalid_value(de::Unexpected::Unsigned(v), &expected.as_str())
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<&'static str, E> {
        let field = self.0.iter().find(|f| **f == v);
        field.copied().ok_or_else(|| E::unknown_field(v, self.0))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<&'static str, E> {
        self.visit_str(&String::from_utf8_lossy(v))
    }
}

/// Reads the value of `key` into its `slot`; a key given twice is refused, as a derived
/// struct refuses it.
fn read<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: Option<&mut Option<T>>,
    key: &'static str,
) -> Result<(), A::Error> {
    let Some(slot) = slot else {
        // A key of the list with no slot: not reachable, the lists are made together.
        return map.next_value::<de::IgnoredAny>().map(|_| ());
    };
    if slot.is_some() {
        return Err(de::Error::duplicate_field(key));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Deserialize<'de> for ChatopsConfig {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<ChatopsConfig, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChatopsConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("struct ChatopsConfig")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatopsConfig, A::Error> {
                let mut url: Option<String> = None;
                let mut secrets: Vec<Option<Option<Secret>>> = vec![None; CHATOPS.len()];
                let mut files: Vec<Option<Option<PathBuf>>> = vec![None; CHATOPS.len()];
                let mut allowed: Option<Allowed> = None;
                let mut max: Option<u32> = None;
                while let Some(key) = map.next_key_seed(Key(&KEYS))? {
                    match key {
                        "alertmanager_url" => read(&mut map, Some(&mut url), key)?,
                        "allowed" => read(&mut map, Some(&mut allowed), key)?,
                        "max_subscribers_per_hour" => read(&mut map, Some(&mut max), key)?,
                        _ => match CHATOPS.iter().position(|c| c.secret_key == key) {
                            Some(i) => read(&mut map, secrets.get_mut(i), key)?,
                            None => {
                                let i = FILE_KEYS.iter().position(|f| f == key);
                                read(&mut map, i.and_then(|i| files.get_mut(i)), key)?
                            }
                        },
                    }
                }
                let url = url.ok_or_else(|| de::Error::missing_field("alertmanager_url"))?;
                let callback_secrets = Channel::all()
                    .zip(secrets.into_iter().zip(files))
                    .map(|(channel, (secret, file))| CallbackSecret {
                        channel,
                        secret: secret.flatten(),
                        file: file.flatten(),
                    })
                    .collect();
                Ok(ChatopsConfig {
                    alertmanager_url: url,
                    callback_secrets,
                    allowed: allowed.unwrap_or_default(),
                    max_subscribers_per_hour: max.unwrap_or_else(default_max_subscribers_per_hour),
                })
            }
        }
        d.deserialize_struct("ChatopsConfig", &KEYS, V)
    }
}

impl<'de> Deserialize<'de> for Allowed {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Allowed, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Allowed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let kinds: Vec<String> = ALLOWED_KEYS.iter().map(|k| k.to_string()).collect();
                write!(
                    f,
                    "a list of ids, or a map with {} lists",
                    either(&kinds, "and")
                )
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Allowed, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(Allowed::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Allowed, A::Error> {
                let mut lists: Vec<Option<Vec<String>>> = vec![None; CHATOPS.len()];
                while let Some(key) = map.next_key_seed(Key(&ALLOWED_KEYS))? {
                    let i = ALLOWED_KEYS.iter().position(|k| *k == key);
                    read(&mut map, i.and_then(|i| lists.get_mut(i)), key)?;
                }
                let lists = lists.into_iter().map(Option::unwrap_or_default);
                Ok(Allowed::PerChannel(Channel::all().zip(lists).collect()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Allowed {
    /// Whether `user`, arriving through `channel`, may run commands.
    pub fn permits(&self, channel: Channel, user: &str) -> bool {
        match self {
            Allowed::List(ids) => ids
                .iter()
                .any(|a| a == user && Channel::of(a).is_none_or(|c| c == channel)),
            Allowed::PerChannel(lists) => lists
                .iter()
                .any(|(c, ids)| *c == channel && ids.iter().any(|a| a == user)),
        }
    }

    /// Every entry with its path under `chatops.allowed`.
    fn entries(&self) -> Vec<(String, &str)> {
        match self {
            Allowed::List(ids) => ids
                .iter()
                .enumerate()
                .map(|(k, id)| (format!("[{k}]"), id.as_str()))
                .collect(),
            Allowed::PerChannel(lists) => lists
                .iter()
                .flat_map(|(c, ids)| {
                    ids.iter()
                        .enumerate()
                        .map(move |(k, id)| (format!(".{}[{k}]", c.kind()), id.as_str()))
                })
                .collect(),
        }
    }
}

impl ChatopsConfig {
    /// The channel kinds whose inbound callback is configured (a secret or its file given).
    pub fn callbacks(&self) -> Vec<&'static str> {
        self.callback_secrets
            .iter()
            .filter(|c| c.given())
            .map(|c| c.channel.kind())
            .collect()
    }

    /// The secret of channel `kind`'s callback, when it is configured (read from its file once
    /// the configuration is loaded).
    pub fn callback_secret(&self, kind: &str) -> Option<&Secret> {
        let c = self
            .callback_secrets
            .iter()
            .find(|c| c.channel.kind() == kind)?;
        c.secret.as_ref()
    }

    /// Reads the `*_file` secrets and checks the block; problems go to `report`.
    pub fn resolve(&mut self, base: &Path, report: &mut dyn FnMut(String, String)) {
        let at = "chatops";
        if let Err(m) = check_http_url(&self.alertmanager_url) {
            report(format!("{at}.alertmanager_url"), m);
        }
        for c in &mut self.callback_secrets {
            let key = c.channel.0.secret_key;
            resolve_secret(base, at, key, &mut c.secret, &c.file, false, report);
            let Some(s) = &c.secret else { continue };
            let s = s.expose();
            if s.len() < MIN_CALLBACK_SECRET {
                report(
                    format!("{at}.{key}"),
                    format!("must be at least {MIN_CALLBACK_SECRET} characters"),
                );
            } else if !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
            {
                // A secret may be a URL path segment; one rule for all keeps them simple.
                report(
                    format!("{at}.{key}"),
                    "may only contain letters, digits and - _ . ~".into(),
                );
            }
        }
        if !self.callback_secrets.iter().any(CallbackSecret::given) {
            let keys: Vec<String> = CHATOPS.iter().map(|c| c.secret_key.to_string()).collect();
            report(
                at.into(),
                format!(
                    "needs {} (or a _file twin): without one no reply can arrive",
                    either(&keys, "or")
                ),
            );
        }
        let entries = self.allowed.entries();
        if entries.is_empty() {
            let ids: Vec<String> = CHATOPS.iter().map(|c| c.user_id.to_string()).collect();
            report(
                format!("{at}.allowed"),
                format!("needs at least one {}", either(&ids, "or")),
            );
        }
        for (k, u) in entries {
            if u.trim().is_empty() {
                report(format!("{at}.allowed{k}"), "must not be empty".into());
            }
        }
        if self.max_subscribers_per_hour == 0 {
            report(
                format!("{at}.max_subscribers_per_hour"),
                "must be at least 1".into(),
            );
        }
    }

    /// The callback secrets, for scrubbing text.
    pub fn secrets(&self) -> Vec<Secret> {
        self.callback_secrets
            .iter()
            .filter_map(|c| c.secret.clone())
            .collect()
    }

    /// Whether `user`, arriving through `channel`, may run commands.
    pub fn is_allowed(&self, channel: Channel, user: &str) -> bool {
        self.allowed.permits(channel, user)
    }
}

/// Things valid but probably wrong, printed by `check-config`: a callback configured although
/// no integration can answer on its channel (every reply would be lost), and entries of the
/// list form of `allowed` of no channel's shape (allowed on every channel).
pub fn warnings(config: &crate::config::Config) -> Vec<String> {
    let Some(c) = &config.chatops else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for cb in &c.callback_secrets {
        let kind = cb.channel.kind();
        let answered = config
            .receivers
            .iter()
            .any(|r| r.integrations().iter().any(|(_, i)| i.kind() == kind));
        if cb.secret.is_some() && !answered {
            out.push(format!(
                "{}: chatops.{}: warning: no receiver has {kind}_configs, so commands from {} cannot be answered",
                config.source, cb.channel.0.secret_key, cb.channel.0.upstream
            ));
        }
    }
    if let Allowed::List(ids) = &c.allowed {
        for (k, id) in ids.iter().enumerate() {
            if !id.trim().is_empty() && Channel::of(id).is_none() {
                out.push(format!(
                    "{}: chatops.allowed[{k}]: warning: {}",
                    config.source,
                    shapeless_warning()
                ));
            }
        }
    }
    out
}

/// What an entry of the list form of `allowed` of no channel's shape is warned with.
fn shapeless_warning() -> String {
    let shapes: Vec<String> = CHATOPS
        .iter()
        .map(|c| format!("a {} ({})", c.user_id, c.id_shape))
        .collect();
    let every = if CHATOPS.len() == 2 { "both" } else { "all" };
    let lists: Vec<String> = CHATOPS
        .iter()
        .map(|c| format!("{}: [...]", c.kind))
        .collect();
    format!(
        "neither {}, so it is allowed on {every} channels; name its channel with allowed: {{{}}}",
        either(&shapes, "nor"),
        lists.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn a_callback_nobody_can_answer_is_warned_about() {
        let c = Config::parse(
            "chatops: {alertmanager_url: 'http://am', weixin_gateway_secret: gateway-secret-0123456789, wxpusher_callback_secret: wxpusher-secret-0123456789, allowed: [UID_a]}\nroute: {receiver: a}\nreceivers:\n  - name: a\n    wxpusher_configs: [{app_token: AT_x, uids: [U]}]\n",
            "c.yml",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            super::warnings(&c),
            [
                "c.yml: chatops.weixin_gateway_secret: warning: no receiver has weixin_gateway_configs, so commands from the gateway cannot be answered"
            ]
        );
    }
}

#[cfg(test)]
mod allowed_tests {
    use std::path::Path;

    use super::{Allowed, Channel};
    use crate::channels::{weixin_gateway, wxpusher};
    use crate::config::Config;

    fn wx() -> Channel {
        Channel::of_kind(wxpusher::KIND).unwrap()
    }

    fn gw() -> Channel {
        Channel::of_kind(weixin_gateway::KIND).unwrap()
    }

    fn chatops(allowed: &str) -> Result<Config, String> {
        Config::parse(
            &format!("chatops: {{alertmanager_url: 'http://am', wxpusher_callback_secret: wxpusher-secret-0123456789, allowed: {allowed}}}\nroute: {{receiver: a}}\nreceivers: [{{name: a, wxpusher_configs: [{{app_token: AT_x, uids: [UID_a]}}]}}]\n"),
            "c.yml",
            Path::new("."),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn list_entries_belong_to_the_channel_their_shape_names() {
        let a = Allowed::List(vec!["UID_a".into(), "u@im.wechat".into(), "legacy".into()]);
        assert!(a.permits(wx(), "UID_a"));
        assert!(!a.permits(gw(), "UID_a"));
        assert!(a.permits(gw(), "u@im.wechat"));
        assert!(!a.permits(wx(), "u@im.wechat"));
        // Neither shape: both channels, as before (and warned about).
        assert!(a.permits(wx(), "legacy") && a.permits(gw(), "legacy"));
        assert!(!a.permits(wx(), "UID_b"));
    }

    #[test]
    fn the_map_form_names_each_ids_channel() {
        let c = chatops("{wxpusher: [UID_a, odd], weixin_gateway: [u@im.wechat]}").unwrap();
        let chat = c.chatops.as_ref().unwrap();
        assert!(chat.is_allowed(wx(), "odd"));
        assert!(!chat.is_allowed(gw(), "odd"));
        assert!(!chat.is_allowed(wx(), "u@im.wechat"));
        assert!(chat.is_allowed(gw(), "u@im.wechat"));
        assert!(super::warnings(&c).is_empty(), "{:?}", super::warnings(&c));
        assert_eq!(
            chatops("{wxpusher: ['']}").unwrap_err(),
            "c.yml: chatops.allowed.wxpusher[0]: must not be empty"
        );
        assert!(
            chatops("{wechat: [x]}")
                .unwrap_err()
                .starts_with("c.yml: chatops.allowed.wechat: unknown field `wechat`"),
        );
        assert!(chatops("{}").unwrap_err().contains(
            "c.yml: chatops.allowed: needs at least one WxPusher UID or gateway user id"
        ));
        let c = chatops("[UID_a]").unwrap();
        assert_eq!(c.chatops.as_ref().unwrap().max_subscribers_per_hour, 100);
        let e = Config::parse(
            "chatops: {alertmanager_url: 'http://am', wxpusher_callback_secret: wxpusher-secret-0123456789, allowed: [UID_a], max_subscribers_per_hour: 0}\nroute: {receiver: a}\nreceivers: [{name: a}]\n",
            "c.yml",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "c.yml: chatops.max_subscribers_per_hour: must be at least 1"
        );
        let c = chatops("[UID_a, legacy]").unwrap();
        assert_eq!(
            super::warnings(&c),
            [
                "c.yml: chatops.allowed[1]: warning: neither a WxPusher UID (UID_…) nor a gateway user id (…@im.wechat), so it is allowed on both channels; name its channel with allowed: {wxpusher: [...], weixin_gateway: [...]}"
            ]
        );
    }
}

/// The block as read before its channels' keys moved to their folders: every message, path
/// and value pinned, so that the move changed none.
#[cfg(test)]
mod reading_tests {
    use std::path::Path;

    use crate::config::Config;

    const GOOD: &str = "alertmanager_url: 'http://am', wxpusher_callback_secret: wxpusher-secret-0123456789, weixin_gateway_secret: gateway-secret-0123456789";

    fn parse(block: &str, receivers: bool) -> Result<Config, String> {
        let list = if receivers {
            "wxpusher_configs: [{app_token: AT_x, uids: [UID_a]}], weixin_gateway_configs: [{url: 'http://gw', account_id: b, to_user_ids: [u@im.wechat], bearer_token: gw-bearer}]"
        } else {
            "console_configs: [{}]"
        };
        Config::parse(
            &format!(
                "chatops: {block}\nroute: {{receiver: a}}\nreceivers: [{{name: a, {list}}}]\n"
            ),
            "c.yml",
            Path::new(env!("CARGO_MANIFEST_DIR")),
        )
        .map_err(|e| e.to_string().replace(env!("CARGO_MANIFEST_DIR"), "<dir>"))
    }

    /// What the block read as: its callbacks, secrets, `allowed` (form and entries) and cap,
    /// and the warnings of `check-config`; or the errors.
    fn outcome(block: &str, receivers: bool) -> String {
        match parse(block, receivers) {
            Ok(c) => format!(
                "ok {:?} warnings {:?}",
                c.chatops.as_ref().map(|c| (
                    c.callbacks(),
                    c.secrets()
                        .iter()
                        .map(|s| s.expose().to_string())
                        .collect::<Vec<_>>(),
                    matches!(c.allowed, super::Allowed::List(_)),
                    c.allowed.entries(),
                    c.max_subscribers_per_hour
                )),
                super::warnings(&c)
            ),
            Err(e) => e,
        }
    }

    #[test]
    fn alternatives_are_listed_as_messages_list_them() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(super::either(&words(&[]), "or"), "");
        assert_eq!(super::either(&words(&["a"]), "or"), "a");
        assert_eq!(super::either(&words(&["a", "b"]), "or"), "a or b");
        assert_eq!(super::either(&words(&["a", "b", "c"]), "and"), "a, b and c");
    }

    /// A channel with keys in the block serves the callback they authenticate.
    #[test]
    fn every_command_channel_has_its_callback_endpoint() {
        let served: Vec<&str> = crate::channels::INBOUND.iter().map(|e| e.kind).collect();
        for c in crate::channels::CHATOPS {
            assert!(served.contains(&c.kind), "{} has no endpoint", c.kind);
            assert_eq!(
                super::Channel::of_kind(c.kind).map(|c| c.kind()),
                Some(c.kind)
            );
        }
        assert!(super::Channel::of_kind("console").is_none());
    }

    #[test]
    fn the_block_reads_as_before() {
        let cases: &[(&str, bool, &str)] = &[
            (
                &format!("{{{GOOD}, allowed: [UID_a, u@im.wechat, legacy]}}"),
                true,
                r#"ok Some((["wxpusher", "weixin_gateway"], ["wxpusher-secret-0123456789", "gateway-secret-0123456789"], true, [("[0]", "UID_a"), ("[1]", "u@im.wechat"), ("[2]", "legacy")], 100)) warnings ["c.yml: chatops.allowed[2]: warning: neither a WxPusher UID (UID_…) nor a gateway user id (…@im.wechat), so it is allowed on both channels; name its channel with allowed: {wxpusher: [...], weixin_gateway: [...]}"]"#,
            ),
            (
                &format!("{{{GOOD}, allowed: [UID_a, legacy]}}"),
                false,
                r#"ok Some((["wxpusher", "weixin_gateway"], ["wxpusher-secret-0123456789", "gateway-secret-0123456789"], true, [("[0]", "UID_a"), ("[1]", "legacy")], 100)) warnings ["c.yml: chatops.wxpusher_callback_secret: warning: no receiver has wxpusher_configs, so commands from WxPusher cannot be answered", "c.yml: chatops.weixin_gateway_secret: warning: no receiver has weixin_gateway_configs, so commands from the gateway cannot be answered", "c.yml: chatops.allowed[1]: warning: neither a WxPusher UID (UID_…) nor a gateway user id (…@im.wechat), so it is allowed on both channels; name its channel with allowed: {wxpusher: [...], weixin_gateway: [...]}"]"#,
            ),
            (
                &format!(
                    "{{{GOOD}, allowed: {{wxpusher: [UID_a], weixin_gateway: [g@im.wechat]}}, max_subscribers_per_hour: 7}}"
                ),
                true,
                r#"ok Some((["wxpusher", "weixin_gateway"], ["wxpusher-secret-0123456789", "gateway-secret-0123456789"], false, [(".wxpusher[0]", "UID_a"), (".weixin_gateway[0]", "g@im.wechat")], 7)) warnings []"#,
            ),
            (
                "{alertmanager_url: 'http://am', allowed: [U], colour: red}",
                true,
                "c.yml: chatops.colour: unknown field `colour`, expected one of `alertmanager_url`, `wxpusher_callback_secret`, `wxpusher_callback_secret_file`, `weixin_gateway_secret`, `weixin_gateway_secret_file`, `allowed`, `max_subscribers_per_hour` at line 1 column 56\nc.yml: chatops: needs wxpusher_callback_secret or weixin_gateway_secret (or a _file twin): without one no reply can arrive",
            ),
            (
                "x",
                true,
                "c.yml: chatops: invalid type: a string, expected struct ChatopsConfig at line 1 column 10",
            ),
            (
                "[]",
                true,
                "c.yml: chatops: invalid type: sequence, expected struct ChatopsConfig at line 1 column 10",
            ),
            (
                "['http://am']",
                true,
                "c.yml: chatops: invalid type: sequence, expected struct ChatopsConfig at line 1 column 10",
            ),
            (
                "{wxpusher_callback_secret: wxpusher-secret-0123456789, allowed: [U]}",
                true,
                "c.yml: chatops: missing field `alertmanager_url` at line 1 column 10",
            ),
            (
                &format!("{{{GOOD}, allowed: {{wechat: [x]}}}}"),
                true,
                "c.yml: chatops.allowed.wechat: unknown field `wechat`, expected `wxpusher` or `weixin_gateway` at line 1 column 156\nc.yml: chatops.allowed: needs at least one WxPusher UID or gateway user id",
            ),
            (
                &format!("{{{GOOD}, allowed: {{wxpusher: x}}}}"),
                true,
                "c.yml: chatops.allowed.wxpusher: invalid type: a string, expected a sequence at line 1 column 166\nc.yml: chatops.allowed: needs at least one WxPusher UID or gateway user id",
            ),
            (
                &format!("{{{GOOD}, allowed: 5}}"),
                true,
                "c.yml: chatops.allowed: invalid type: an integer, expected a list of ids, or a map with wxpusher and weixin_gateway lists at line 1 column 155",
            ),
            (
                &format!("{{{GOOD}, allowed: {{0: [x]}}}}"),
                true,
                "c.yml: chatops.allowed.0: unknown field `0`, expected `wxpusher` or `weixin_gateway` at line 1 column 156",
            ),
            (
                &format!("{{{GOOD}, allowed: {{5: [x]}}}}"),
                true,
                "c.yml: chatops.allowed.5: unknown field `5`, expected `wxpusher` or `weixin_gateway` at line 1 column 156",
            ),
            (
                &format!("{{{GOOD}, allowed: {{wxpusher: [a], wxpusher: [b]}}}}"),
                true,
                "c.yml: chatops.allowed: duplicate field `wxpusher` at line 1 column 155",
            ),
            (
                &format!("{{{GOOD}, allowed: {{}}}}"),
                true,
                "c.yml: chatops.allowed: needs at least one WxPusher UID or gateway user id",
            ),
            (
                &format!("{{{GOOD}, allowed: {{wxpusher: [''], weixin_gateway: [x, '']}}}}"),
                true,
                "c.yml: chatops.allowed.wxpusher[0]: must not be empty\nc.yml: chatops.allowed.weixin_gateway[1]: must not be empty",
            ),
            (
                &format!("{{{GOOD}, allowed: [U], max_subscribers_per_hour: x}}"),
                true,
                "c.yml: chatops.max_subscribers_per_hour: invalid type: a string, expected u32 at line 1 column 186",
            ),
            (
                &format!("{{{GOOD}, allowed: [U], max_subscribers_per_hour: 0}}"),
                true,
                "c.yml: chatops.max_subscribers_per_hour: must be at least 1",
            ),
            (
                "{alertmanager_url: 'http://am', wxpusher_callback_secret: [a], allowed: [U]}",
                true,
                "c.yml: chatops.wxpusher_callback_secret: invalid type: sequence, expected a string at line 1 column 68\nc.yml: chatops: needs wxpusher_callback_secret or weixin_gateway_secret (or a _file twin): without one no reply can arrive",
            ),
            (
                "{alertmanager_url: 'http://am', wxpusher_callback_secret: ~, weixin_gateway_secret: gateway-secret-0123456789, allowed: [U]}",
                true,
                r#"ok Some((["weixin_gateway"], ["gateway-secret-0123456789"], true, [("[0]", "U")], 100)) warnings ["c.yml: chatops.allowed[0]: warning: neither a WxPusher UID (UID_…) nor a gateway user id (…@im.wechat), so it is allowed on both channels; name its channel with allowed: {wxpusher: [...], weixin_gateway: [...]}"]"#,
            ),
            (
                "{alertmanager_url: 'http://am', wxpusher_callback_secret_file: no/such/file, allowed: [U]}",
                true,
                "c.yml: chatops.wxpusher_callback_secret_file: cannot read <dir>/no/such/file: No such file or directory (os error 2)",
            ),
            (
                "{alertmanager_url: 'http://am', weixin_gateway_secret_file: Cargo.toml, allowed: [U]}",
                true,
                "c.yml: chatops.weixin_gateway_secret: may only contain letters, digits and - _ . ~",
            ),
            (
                "{alertmanager_url: 'http://am', weixin_gateway_secret: gateway-secret-0123456789, weixin_gateway_secret_file: Cargo.toml, allowed: [U]}",
                true,
                "c.yml: chatops: weixin_gateway_secret and weixin_gateway_secret_file are mutually exclusive",
            ),
            (
                "{alertmanager_url: 'am', wxpusher_callback_secret: short, weixin_gateway_secret: 'has/slash-0123456789', allowed: []}",
                true,
                "c.yml: chatops.alertmanager_url: \"am\" is not an http(s) URL\nc.yml: chatops.wxpusher_callback_secret: must be at least 16 characters\nc.yml: chatops.weixin_gateway_secret: may only contain letters, digits and - _ . ~\nc.yml: chatops.allowed: needs at least one WxPusher UID or gateway user id",
            ),
            (
                "{alertmanager_url: 'http://am', allowed: [U], bogus: 1, max_subscribers_per_hour: x}",
                true,
                "c.yml: chatops.bogus: unknown field `bogus`, expected one of `alertmanager_url`, `wxpusher_callback_secret`, `wxpusher_callback_secret_file`, `weixin_gateway_secret`, `weixin_gateway_secret_file`, `allowed`, `max_subscribers_per_hour` at line 1 column 56\nc.yml: chatops.max_subscribers_per_hour: invalid type: a string, expected u32 at line 1 column 66\nc.yml: chatops: needs wxpusher_callback_secret or weixin_gateway_secret (or a _file twin): without one no reply can arrive",
            ),
            (
                "{alertmanager_url: 'http://am', alertmanager_url: 'http://b', allowed: [U]}",
                true,
                "c.yml: chatops: duplicate field `alertmanager_url` at line 1 column 10",
            ),
            (
                "{alertmanager_url: 'http://am', wxpusher_callback_secret: wxpusher-secret-0123456789, allowed: {wechat: [x], wxpusher: 3}}",
                true,
                "c.yml: chatops.allowed.wechat: unknown field `wechat`, expected `wxpusher` or `weixin_gateway` at line 1 column 106\nc.yml: chatops.allowed.wxpusher: invalid type: an integer, expected a sequence at line 1 column 119\nc.yml: chatops.allowed: needs at least one WxPusher UID or gateway user id",
            ),
            ("~", true, "ok None warnings []"),
        ];
        let mut wrong = Vec::new();
        for (block, receivers, expected) in cases {
            let got = outcome(block, *receivers);
            if got != *expected {
                wrong.push(format!(
                    "{block}\n  got:      {got:?}\n  expected: {expected:?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
