//! What a channel users write commands through declares for the `chatops:` block: the key of
//! its callback's secret, how its user ids look and how messages call them. The block
//! ([`crate::config::chatops`]) is read from these declarations and names no channel; each
//! channel's `chatops.rs` holds its own, listed once in [`super::CHATOPS`].
//!
//! What the block makes of them: `<secret_key>` and `<secret_key>_file` among its keys, the
//! channel's kind as its list's key under `chatops.allowed`, and the texts of its checks and
//! warnings.

/// One channel commands arrive through ([`super::CHATOPS`]).
#[derive(Debug)]
pub struct CommandChannel {
    /// Its kind ([`super::KINDS`]): the key of its list under `chatops.allowed`, and `<kind>_configs`
    /// the receivers' list of its integrations.
    pub kind: &'static str,
    /// The `chatops` key of its callback's secret; `<secret_key>_file` is its twin, read from a
    /// file.
    pub secret_key: &'static str,
    /// Its user ids, as messages name them, without an article (`… UID`).
    pub user_id: &'static str,
    /// The shape of those ids, as messages show it (`UID_…`).
    pub id_shape: &'static str,
    /// Whether an id's shape says it belongs to this channel: an entry of the plain list form
    /// of `chatops.allowed` is valid on this channel only when it does (or when no channel's
    /// shape fits it).
    pub owns: fn(&str) -> bool,
    /// The upstream commands come from, as a warning names it.
    pub upstream: &'static str,
}
