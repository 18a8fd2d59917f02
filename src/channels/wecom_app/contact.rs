//! A person's `contacts.wecom_app` ({userid}), paged through the `oncall.channels.wecom_app` entry
//! with that recipient: what the registry's contact kinds ([`crate::channels::contact`]) need.

use serde::Deserialize;

use super::config::WecomAppConfig;
use crate::channels::contact::{Contactable, StandIn};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomAppContact {
    pub userid: String,
}

impl Contactable for WecomAppConfig {
    type Contact = WecomAppContact;
    const RECIPIENT_KEY: &'static str = "to_user";
    const STAND_IN: StandIn = StandIn::One;

    fn recipient(contact: &WecomAppContact) -> &str {
        &contact.userid
    }

    fn set_recipient(&mut self, recipient: String) {
        self.to_user = Some(recipient);
    }
}
