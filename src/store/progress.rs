//! What a stored job has already done, so that a retry after a partial failure goes only to
//! those still missing: a set of typed [`Entry`]s (a part reached a recipient, a recipient
//! refused for good, a recipient over its daily budget), written by the channels as they send
//! and kept by the store with the job.
//!
//! Each entry is stored as one string of a small grammar, the one earlier versions wrote by
//! hand, so that jobs and dead letters stored before the entries were typed read back as the
//! same entries, and a store written now still reads in an earlier version:
//!
//! | entry | stored as |
//! |---|---|
//! | `Sent { part, to }` | `<part>/uid/<id>`, `<part>/topic/<n>`, `<part>/user/<id>`, `<part>/party/<id>`, `<part>/tag/<id>`, `<part>/<id>` |
//! | `SentPart(i)` | `part/<i>` |
//! | `Delivered(id)` | `<id>` |
//! | `Refused(to)` | `refused/<id>` (a `Uid`), `failed/user/<id>`, `failed/party/<id>`, `failed/tag/<id>`, `failed/topic/<n>`, `failed/<id>` |
//! | `RefusedWith { to, code }` | `failed/<id>/<code>` |
//! | `OverBudget { day, budget, to }` | `quota/<YYYY-MM-DD>/<budget>/uid/<id>` |
//!
//! Reading is total: every string is some entry, and writing that entry gives the string back,
//! so nothing stored is ever lost or rejected. The grammar assumes ids without `/` (what the
//! upstreams issue); an id with one may read back as another entry, which can only make a
//! retry send to that recipient again, never skip one. This module knows no channel.

use std::collections::BTreeSet;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Someone a message goes to, as progress names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recipient {
    /// A push service's user id (or the id standing for a per-user token).
    Uid(String),
    /// A push service's topic, by number.
    Topic(i64),
    /// A member of an organisation's directory.
    User(String),
    /// A department of an organisation's directory.
    Party(String),
    /// A tag of an organisation's directory.
    Tag(String),
    /// A user named by an id alone.
    Id(String),
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::Uid(id) => write!(f, "uid/{id}"),
            Recipient::Topic(n) => write!(f, "topic/{n}"),
            Recipient::User(id) => write!(f, "user/{id}"),
            Recipient::Party(id) => write!(f, "party/{id}"),
            Recipient::Tag(id) => write!(f, "tag/{id}"),
            Recipient::Id(id) => f.write_str(id),
        }
    }
}

/// One thing a job has done.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    /// Part `part` (from 0) of the message reached `to`.
    Sent { part: usize, to: Recipient },
    /// Part `i` reached the integration's one destination (it has no recipients of its own).
    SentPart(usize),
    /// The whole message, never split, reached the user with this id.
    Delivered(String),
    /// `to` refused the message for good: it is not sent to again for this job.
    Refused(Recipient),
    /// The user with id `to` refused the message for good with the upstream's `code`.
    RefusedWith { to: String, code: i64 },
    /// The user id `to` was left out on `day` because its daily budget of `budget` messages
    /// was spent: left out again that day under that budget, sent to on a later day or after
    /// the budget changed.
    OverBudget {
        day: NaiveDate,
        budget: u32,
        to: String,
    },
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Sent { part, to } => write!(f, "{part}/{to}"),
            Entry::SentPart(i) => write!(f, "part/{i}"),
            Entry::Delivered(id) => f.write_str(id),
            Entry::Refused(Recipient::Uid(id)) => write!(f, "refused/{id}"),
            Entry::Refused(to) => write!(f, "failed/{to}"),
            Entry::RefusedWith { to, code } => write!(f, "failed/{to}/{code}"),
            Entry::OverBudget { day, budget, to } => {
                write!(f, "quota/{}/{budget}/uid/{to}", day.format("%Y-%m-%d"))
            }
        }
    }
}

/// A number as this module writes it (no sign, no leading zeros), so that reading and writing
/// again gives the same string.
fn number<T: std::str::FromStr + ToString>(s: &str) -> Option<T> {
    s.parse::<T>().ok().filter(|n| n.to_string() == s)
}

/// `<kind>/<id>`; `uid` only where that kind is written this way (a refused UID is not).
fn kinded(s: &str, uid: bool) -> Option<Recipient> {
    let (kind, id) = s.split_once('/')?;
    let id = id.to_string();
    Some(match kind {
        "uid" if uid => Recipient::Uid(id),
        "topic" => Recipient::Topic(number(&id)?),
        "user" => Recipient::User(id),
        "party" => Recipient::Party(id),
        "tag" => Recipient::Tag(id),
        _ => return None,
    })
}

fn over_budget(s: &str) -> Option<Entry> {
    let (day, rest) = s.split_once('/')?;
    let (budget, rest) = rest.split_once('/')?;
    let parsed = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    (parsed.format("%Y-%m-%d").to_string() == day).then_some(())?;
    Some(Entry::OverBudget {
        day: parsed,
        budget: number(budget)?,
        to: rest.strip_prefix("uid/")?.to_string(),
    })
}

impl Entry {
    /// The entry a stored string is: any string, including every form earlier versions
    /// wrote (see the module's table).
    pub fn parse(s: &str) -> Entry {
        if let Some(e) = s.strip_prefix("quota/").and_then(over_budget) {
            return e;
        }
        if let Some(id) = s.strip_prefix("refused/") {
            return Entry::Refused(Recipient::Uid(id.to_string()));
        }
        if let Some(rest) = s.strip_prefix("failed/") {
            if let Some(to) = kinded(rest, false) {
                return Entry::Refused(to);
            }
            if let Some((to, code)) = rest.rsplit_once('/')
                && let Some(code) = number(code)
            {
                let to = to.to_string();
                return Entry::RefusedWith { to, code };
            }
            return Entry::Refused(Recipient::Id(rest.to_string()));
        }
        if let Some(i) = s.strip_prefix("part/").and_then(number) {
            return Entry::SentPart(i);
        }
        if let Some((part, rest)) = s.split_once('/')
            && let Some(part) = number(part)
        {
            let to = kinded(rest, true).unwrap_or_else(|| Recipient::Id(rest.to_string()));
            return Entry::Sent { part, to };
        }
        Entry::Delivered(s.to_string())
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Entry::parse(&s))
    }
}

/// Everything one job has done so far; stored with it as a JSON array of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Progress(BTreeSet<Entry>);

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Records `e`; false if it was recorded already.
    pub fn insert(&mut self, e: Entry) -> bool {
        self.0.insert(e)
    }

    pub fn contains(&self, e: &Entry) -> bool {
        self.0.contains(e)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.0.iter()
    }

    /// The code the user with id `to` refused the message with, if they did
    /// ([`Entry::RefusedWith`]).
    pub fn refused_with(&self, to: &str) -> Option<i64> {
        let at = |code| Entry::RefusedWith {
            to: to.to_string(),
            code,
        };
        self.0
            .range(at(i64::MIN)..=at(i64::MAX))
            .find_map(|e| match e {
                Entry::RefusedWith { code, .. } => Some(*code),
                _ => None,
            })
    }

    /// Every entry as stored, in the order the stored strings sort: what operators are shown.
    pub fn stored(&self) -> Vec<String> {
        let mut out: Vec<String> = self.0.iter().map(Entry::to_string).collect();
        out.sort();
        out
    }
}

impl FromIterator<Entry> for Progress {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Progress {
        Progress(iter.into_iter().collect())
    }
}

impl Extend<Entry> for Progress {
    fn extend<I: IntoIterator<Item = Entry>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
    }

    /// Every form earlier versions stored, and the typed entry it reads as.
    fn legacy() -> Vec<(&'static str, Entry)> {
        let sent = |part, to| Entry::Sent { part, to };
        vec![
            ("0/uid/UID_a", sent(0, Recipient::Uid("UID_a".into()))),
            (
                "12/uid/spt-3f9a",
                sent(12, Recipient::Uid("spt-3f9a".into())),
            ),
            ("1/topic/42", sent(1, Recipient::Topic(42))),
            (
                "quota/2026-11-26/500/uid/UID_a",
                Entry::OverBudget {
                    day: day(),
                    budget: 500,
                    to: "UID_a".into(),
                },
            ),
            (
                "refused/spt-3f9a",
                Entry::Refused(Recipient::Uid("spt-3f9a".into())),
            ),
            ("oAbc-123_x", Entry::Delivered("oAbc-123_x".into())),
            (
                "failed/oAbc-123_x/43004",
                Entry::RefusedWith {
                    to: "oAbc-123_x".into(),
                    code: 43004,
                },
            ),
            (
                "0/wxid_abc@im.wechat",
                sent(0, Recipient::Id("wxid_abc@im.wechat".into())),
            ),
            ("part/3", Entry::SentPart(3)),
            (
                "2/user/zhangsan",
                sent(2, Recipient::User("zhangsan".into())),
            ),
            ("0/party/7", sent(0, Recipient::Party("7".into()))),
            ("0/tag/ops", sent(0, Recipient::Tag("ops".into()))),
            (
                "failed/user/zhangsan",
                Entry::Refused(Recipient::User("zhangsan".into())),
            ),
            (
                "failed/party/7",
                Entry::Refused(Recipient::Party("7".into())),
            ),
            (
                "failed/tag/ops",
                Entry::Refused(Recipient::Tag("ops".into())),
            ),
        ]
    }

    #[test]
    fn every_legacy_form_reads_as_its_entry_and_is_written_back_the_same() {
        for (stored, entry) in legacy() {
            assert_eq!(Entry::parse(stored), entry, "{stored}");
            assert_eq!(entry.to_string(), stored);
        }
    }

    #[test]
    fn a_stored_array_of_legacy_strings_round_trips() {
        let json =
            serde_json::to_string(&legacy().iter().map(|(s, _)| *s).collect::<Vec<_>>()).unwrap();
        let p: Progress = serde_json::from_str(&json).unwrap();
        assert_eq!(p.len(), legacy().len());
        for (_, entry) in legacy() {
            assert!(p.contains(&entry), "{entry:?}");
        }
        let again: Progress = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(again, p);
        // What operators are shown is the stored strings, sorted as they always were.
        let mut shown: Vec<String> = legacy().iter().map(|(s, _)| s.to_string()).collect();
        shown.sort();
        assert_eq!(p.stored(), shown);
        assert_eq!(
            serde_json::from_str::<Progress>("[]").unwrap(),
            Progress::new()
        );
    }

    #[test]
    fn near_misses_are_kept_as_written() {
        // Not quite a form above: read as some other entry, written back unchanged.
        for s in [
            "quota/2026-11-26/500/UID_a",
            "quota/26-11-2026/500/uid/UID_a",
            "quota/2026-11-26/-5/uid/UID_a",
            "01/uid/UID_a",
            "0/topic/x",
            "part/x",
            "failed/oAbc/x",
            "failed/",
            "",
            "/",
        ] {
            assert_eq!(Entry::parse(s).to_string(), s, "{s}");
        }
    }

    #[test]
    fn refused_with_finds_only_that_users_code() {
        let p: Progress = [
            Entry::RefusedWith {
                to: "o2".into(),
                code: 43004,
            },
            Entry::Delivered("o1".into()),
            Entry::RefusedWith {
                to: "o22".into(),
                code: 40003,
            },
        ]
        .into_iter()
        .collect();
        assert_eq!(p.refused_with("o2"), Some(43004));
        assert_eq!(p.refused_with("o22"), Some(40003));
        assert_eq!(p.refused_with("o1"), None);
        assert_eq!(p.refused_with("o"), None);
    }

    fn id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_@.-]{1,12}"
    }

    fn entry() -> impl Strategy<Value = Entry> {
        let recipient = prop_oneof![
            id().prop_map(Recipient::Uid),
            any::<i64>().prop_map(Recipient::Topic),
            id().prop_map(Recipient::User),
            id().prop_map(Recipient::Party),
            id().prop_map(Recipient::Tag),
            id().prop_map(Recipient::Id),
        ];
        prop_oneof![
            (0usize..100, recipient.clone()).prop_map(|(part, to)| Entry::Sent { part, to }),
            (0usize..100).prop_map(Entry::SentPart),
            id().prop_map(Entry::Delivered),
            recipient.prop_map(Entry::Refused),
            (id(), any::<i64>()).prop_map(|(to, code)| Entry::RefusedWith { to, code }),
            (0i64..100_000, any::<u32>(), id()).prop_map(|(d, budget, to)| Entry::OverBudget {
                day: day() + chrono::Duration::days(d - 50_000),
                budget,
                to,
            }),
        ]
    }

    proptest! {
        #[test]
        fn any_string_is_written_back_as_read(s in ".{0,40}") {
            prop_assert_eq!(Entry::parse(&s).to_string(), s);
        }

        #[test]
        fn an_entry_with_plain_ids_reads_back_as_itself(e in entry()) {
            // An id that is a kind's name reads as that kind's form: leave those out.
            let plain = |s: &str| !["topic", "user", "party", "tag"].contains(&s);
            let ok = match &e {
                Entry::Delivered(id) => plain(id),
                Entry::Refused(Recipient::Id(id)) | Entry::Sent { to: Recipient::Id(id), .. } => {
                    plain(id)
                }
                Entry::RefusedWith { to, .. } => plain(to),
                _ => true,
            };
            prop_assume!(ok);
            prop_assert_eq!(Entry::parse(&e.to_string()), e);
        }
    }
}
