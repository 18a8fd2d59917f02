//! A person's `contacts.weixin_gateway` ({user_id}), paged through the `oncall.channels.weixin_gateway` entry
//! with that recipient: what the registry's contact kinds ([`crate::channels::contact`]) need.

use serde::Deserialize;

use super::config::WeixinGatewayConfig;
use crate::channels::contact::{Contactable, StandIn};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeixinGatewayContact {
    pub user_id: String,
}

impl Contactable for WeixinGatewayConfig {
    type Contact = WeixinGatewayContact;
    const RECIPIENT_KEY: &'static str = "to_user_ids";
    const STAND_IN: StandIn = StandIn::List;

    fn recipient(contact: &WeixinGatewayContact) -> &str {
        &contact.user_id
    }

    fn set_recipient(&mut self, recipient: String) {
        self.to_user_ids = vec![recipient];
    }
}
