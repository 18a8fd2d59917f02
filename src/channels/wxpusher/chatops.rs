//! WxPusher in the `chatops:` block: `wxpusher_callback_secret`, the path segment of
//! `POST /callback/wxpusher/{secret}` (WxPusher signs nothing), and its users' UIDs.

use crate::channels::chatops::CommandChannel;

/// The registry's line ([`crate::channels::CHATOPS`]).
pub const CHANNEL: CommandChannel = CommandChannel {
    kind: super::KIND,
    secret_key: "wxpusher_callback_secret",
    user_id: "WxPusher UID",
    id_shape: "UID_…",
    owns: |id| id.starts_with("UID_"),
    upstream: "WxPusher",
};
