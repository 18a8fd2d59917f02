//! What makes a channel one people can be paged through: `oncall.channels.<kind>` is one of
//! its `*_configs` entries without recipients, and a person's `contacts.<kind>` names the
//! recipient. A channel folder says how (its `contact.rs`, [`Contactable`]); the registry lists
//! the kinds, one line each ([`contact_kinds!`]), and the configuration's types and checks for
//! `oncall.channels` and `people[].contacts` are made from that list.

use serde::de::DeserializeOwned;

use super::check::{ChannelConfig, Check};

/// What stands in for an entry's recipients while `oncall.channels.<kind>` is read alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandIn {
    /// A list of recipients.
    List,
    /// One recipient.
    One,
    /// Nothing: the entry reads without one (the recipient is set on each person's copy).
    None,
}

/// A channel people can be paged through.
pub trait Contactable: ChannelConfig + Clone + DeserializeOwned + std::fmt::Debug {
    /// A person's `contacts.<kind>` mapping.
    type Contact: DeserializeOwned + Clone + std::fmt::Debug;
    /// The entry's recipient key, which `oncall.channels` leaves to each person.
    const RECIPIENT_KEY: &'static str;
    /// What stands in for the recipient while the entry is read alone.
    const STAND_IN: StandIn;
    /// Whether a person without `notify` rules is paged through this kind (every kind but
    /// the ones that only act when a rule or a step names them).
    const PAGED_BY_DEFAULT: bool = true;
    /// Whether an incident's status updates go to a person paged through this kind.
    const STATUS_UPDATES: bool = true;
    /// The recipient a contact names.
    fn recipient(contact: &Self::Contact) -> &str;
    /// The entry with `recipient` as its only recipient.
    fn set_recipient(&mut self, recipient: String);
    /// Checks what serde cannot of a person's contact at `at` (`people[0].contacts.<kind>`).
    fn check_contact(_contact: &Self::Contact, _at: &str, _report: &mut dyn FnMut(String, String)) {
    }
}

/// Reads `oncall.channels.{kind}` (at `cx.at`) as the channel's entry, with a stand-in
/// recipient, and runs its check, which reads its secrets; `None` if it is broken (reported).
pub fn read_entry<T: Contactable>(value: &yaml_serde::Value, cx: &mut Check<'_>) -> Option<T> {
    let key = T::RECIPIENT_KEY;
    let mut map = match value {
        yaml_serde::Value::Mapping(m) => m.clone(),
        _ => {
            cx.report(
                cx.at.clone(),
                "must be a mapping (a *_configs entry without recipients)".into(),
            );
            return None;
        }
    };
    let recipient = yaml_serde::Value::String(key.into());
    if map.contains_key(&recipient) {
        cx.report(
            format!("{}.{key}", cx.at),
            format!("recipients come from each person's contacts: remove {key}"),
        );
        return None;
    }
    let stand_in = yaml_serde::Value::String("stand-in".into());
    match T::STAND_IN {
        StandIn::List => {
            map.insert(recipient, yaml_serde::Value::Sequence(vec![stand_in]));
        }
        StandIn::One => {
            map.insert(recipient, stand_in);
        }
        StandIn::None => {}
    }
    let value = yaml_serde::Value::Mapping(map);
    let mut entry = match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(t) => t,
        Err(e) => {
            let path = e.path().to_string();
            let at = if path == "." {
                cx.at.clone()
            } else {
                format!("{}.{path}", cx.at)
            };
            cx.report(at, e.into_inner().to_string());
            return None;
        }
    };
    entry.check(cx);
    Some(entry)
}

/// Makes, from the registry's list of contact kinds (`Variant(kind): ConfigType`, in the
/// order people's contacts are listed), `CONTACT_KINDS`, `OncallChannels` (the
/// `oncall.channels` block), `Contacts` (a person's `contacts`), `ContactEntry` (one kind's
/// entry), `paged_by_default` and `status_updates`.
macro_rules! contact_kinds {
    ($($variant:ident($kind:ident): $config:ty),+ $(,)?) => {
        /// The contact kinds a person may have, in the order they are listed; each pages
        /// through a channel entry of `oncall.channels`.
        pub const CONTACT_KINDS: &[&str] = &[$(stringify!($kind)),+];

        /// `oncall.channels`: the channel entries people's contacts are sent through. Kept as
        /// YAML until the check, which adds a recipient and reads them as the channel's own
        /// entry ([`contact::read_entry`]).
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct OncallChannels {
            $(pub $kind: Option<yaml_serde::Value>,)+
        }

        impl OncallChannels {
            /// The entry of contact kind `kind`, when given.
            pub fn get(&self, kind: &str) -> Option<&yaml_serde::Value> {
                match kind {
                    $(stringify!($kind) => self.$kind.as_ref(),)+
                    _ => None,
                }
            }
        }

        /// How a person is reached, per contact kind.
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Contacts {
            $(pub $kind: Option<<$config as $crate::channels::contact::Contactable>::Contact>,)+
        }

        impl Contacts {
            /// Whether the contact of this kind is given.
            pub fn has(&self, kind: &str) -> bool {
                match kind {
                    $(stringify!($kind) => self.$kind.is_some(),)+
                    _ => false,
                }
            }

            /// The recipient a contact of this kind sends to.
            pub fn recipient(&self, kind: &str) -> Option<&str> {
                match kind {
                    $(stringify!($kind) => self.$kind.as_ref().map(
                        <$config as $crate::channels::contact::Contactable>::recipient,
                    ),)+
                    _ => None,
                }
            }

            /// The kinds given, in [`CONTACT_KINDS`] order.
            pub fn kinds(&self) -> Vec<&'static str> {
                CONTACT_KINDS.iter().copied().filter(|k| self.has(k)).collect()
            }

            /// Checks each contact given (`at` is `people[i].contacts`).
            pub fn check(&self, at: &str, report: &mut dyn FnMut(String, String)) {
                $(if let Some(c) = &self.$kind {
                    <$config as $crate::channels::contact::Contactable>::check_contact(
                        c,
                        &format!("{at}.{}", stringify!($kind)),
                        report,
                    );
                })+
            }
        }

        /// One channel entry of a contact kind.
        #[derive(Debug, Clone)]
        pub enum ContactEntry {
            $($variant($config),)+
        }

        impl ContactEntry {
            pub fn as_channel(&self) -> &dyn ChannelConfig {
                match self {
                    $(ContactEntry::$variant(c) => c,)+
                }
            }

            /// The entry with `recipient` as its only recipient.
            pub fn to(&self, recipient: &str) -> ContactEntry {
                match self.clone() {
                    $(ContactEntry::$variant(mut c) => {
                        $crate::channels::contact::Contactable::set_recipient(
                            &mut c,
                            recipient.to_string(),
                        );
                        ContactEntry::$variant(c)
                    })+
                }
            }

            /// Reads `oncall.channels.{kind}` as the channel's entry and checks it
            /// ([`contact::read_entry`]); `None` if it is broken (reported) or `kind` unknown.
            pub fn read(
                kind: &str,
                value: &yaml_serde::Value,
                cx: &mut Check<'_>,
            ) -> Option<ContactEntry> {
                match kind {
                    $(stringify!($kind) => {
                        $crate::channels::contact::read_entry::<$config>(value, cx)
                            .map(ContactEntry::$variant)
                    })+
                    _ => None,
                }
            }
        }

        /// Whether a person paged through contact kind `kind` gets the incident's updates.
        pub fn status_updates(kind: &str) -> bool {
            match kind {
                $(stringify!($kind) =>
                    <$config as $crate::channels::contact::Contactable>::STATUS_UPDATES,)+
                _ => true,
            }
        }

        /// Whether a person without `notify` rules is paged through contact kind `kind`.
        pub fn paged_by_default(kind: &str) -> bool {
            match kind {
                $(stringify!($kind) =>
                    <$config as $crate::channels::contact::Contactable>::PAGED_BY_DEFAULT,)+
                _ => true,
            }
        }
    };
}

pub(crate) use contact_kinds;
