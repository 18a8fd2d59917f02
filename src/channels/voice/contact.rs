//! A person's `contacts.voice` ({number}), paged through the `oncall.channels.voice` entry
//! with that recipient: what the registry's contact kinds ([`crate::channels::contact`]) need.

use serde::Deserialize;

use super::config::VoiceConfig;
use crate::channels::contact::{Contactable, StandIn};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceContact {
    /// E.164 (`+8613800000000`).
    pub number: String,
}

impl Contactable for VoiceConfig {
    type Contact = VoiceContact;
    const RECIPIENT_KEY: &'static str = "number";
    const STAND_IN: StandIn = StandIn::None;
    /// A call is placed only when a rule or a step names the voice contact.
    const PAGED_BY_DEFAULT: bool = false;
    /// A status update is never a phone call.
    const STATUS_UPDATES: bool = false;

    fn recipient(contact: &VoiceContact) -> &str {
        &contact.number
    }

    fn set_recipient(&mut self, recipient: String) {
        self.number = recipient;
    }

    fn check_contact(contact: &VoiceContact, at: &str, report: &mut dyn FnMut(String, String)) {
        if !is_e164(&contact.number) {
            report(
                format!("{at}.number"),
                format!(
                    "{:?} is not an E.164 number (+, country code, number: +8613800000000)",
                    contact.number
                ),
            );
        }
    }
}

/// Whether `n` is an E.164 number: `+`, a non-zero digit, at most 15 digits in all.
fn is_e164(n: &str) -> bool {
    let Some(digits) = n.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod identity {
    use super::*;
    use crate::channels::identity_of_config;

    /// Stored pages are bound to this identity: a change of its inputs re-sends every pending
    /// page after an upgrade, so its value is pinned and changing it is a decision. A voice
    /// integration is always a person's contact: the number is part of it.
    #[test]
    fn identity_is_pinned() {
        let entry = |number: &str| {
            let mut c: VoiceConfig = yaml_serde::from_str(
                "{provider: aliyun, access_key_id: LTAI5t, access_key_secret: aliyun-secret-value, called_show_number: '057100000000', start_code: TTS_123, ack_code: TTS_124, callback_secret: abcdefghijklmnop0123}",
            )
            .unwrap();
            c.set_recipient(number.into());
            c
        };
        assert_eq!(
            identity_of_config(entry("+8613800000000")),
            "voice-e2ded26a6ea53292"
        );
        assert_ne!(
            identity_of_config(entry("+8613800000000")),
            identity_of_config(entry("+8613900000000"))
        );
    }
}
