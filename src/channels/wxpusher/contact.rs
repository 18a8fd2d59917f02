//! A person's `contacts.wxpusher` ({uid}), paged through the `oncall.channels.wxpusher` entry
//! with that recipient: what the registry's contact kinds ([`crate::channels::contact`]) need.

use serde::Deserialize;

use super::config::WxPusherConfig;
use crate::channels::contact::{Contactable, StandIn};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WxPusherContact {
    pub uid: String,
}

impl Contactable for WxPusherConfig {
    type Contact = WxPusherContact;
    const RECIPIENT_KEY: &'static str = "uids";
    const STAND_IN: StandIn = StandIn::List;

    fn recipient(contact: &WxPusherContact) -> &str {
        &contact.uid
    }

    fn set_recipient(&mut self, recipient: String) {
        self.uids = vec![recipient];
    }
}
