//! weixin-gateway in the `chatops:` block: `weixin_gateway_secret`, the gateway's
//! `UPSTREAM_SHARED_SECRET` it sends as `Authorization: Bearer …`, and its users' ids (WeChat
//! iLink's, ending in `@im.wechat`).

use crate::channels::chatops::CommandChannel;

/// The registry's line ([`crate::channels::CHATOPS`]).
pub const CHANNEL: CommandChannel = CommandChannel {
    kind: super::KIND,
    secret_key: "weixin_gateway_secret",
    user_id: "gateway user id",
    id_shape: "…@im.wechat",
    owns: |id| id.ends_with("@im.wechat"),
    upstream: "the gateway",
};
