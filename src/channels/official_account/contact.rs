//! A person's `contacts.official_account` ({openid}), paged through the `oncall.channels.official_account` entry
//! with that recipient: what the registry's contact kinds ([`crate::channels::contact`]) need.

use serde::Deserialize;

use super::config::OfficialAccountConfig;
use crate::channels::contact::{Contactable, StandIn};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialAccountContact {
    pub openid: String,
}

impl Contactable for OfficialAccountConfig {
    type Contact = OfficialAccountContact;
    const RECIPIENT_KEY: &'static str = "to_openids";
    const STAND_IN: StandIn = StandIn::List;

    fn recipient(contact: &OfficialAccountContact) -> &str {
        &contact.openid
    }

    fn set_recipient(&mut self, recipient: String) {
        self.to_openids = vec![recipient];
    }
}
