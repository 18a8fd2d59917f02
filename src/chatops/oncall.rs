//! The on-call replies: `值班` / `oncall` (who is on call now per schedule, until when, who is
//! next) and `值班 NAME 2h` / `oncall NAME 2h` (NAME covers the caller, from now, on every
//! schedule the caller is on now: one override per schedule, replacing the caller only).
//!
//! The caller is the person one of whose contacts sent the reply. A person may hand over
//! their own shifts and ask who is on call without being in `chatops.allowed` (as they may
//! acknowledge what paged them); anyone else needs `chatops.allowed` to ask.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::command::{Command, Lang, Name};
use super::handle::{Answer, Outcome};
use crate::config::chatops::{Channel, ChatopsConfig};
use crate::runtime::Runtime;
use crate::store::Store;
use crate::store::oncall::NewOverride;

/// The person (`people[].name`) one of whose contacts is `user`.
pub fn person_of(rt: &Runtime, user: &str) -> Option<String> {
    rt.config
        .people
        .iter()
        .find(|p| {
            p.contacts
                .kinds()
                .iter()
                .any(|k| p.contacts.recipient(k) == Some(user))
        })
        .map(|p| p.name.clone())
}

/// Runs `oncall` or a cover (`cmd` is one of them).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    rt: &Runtime,
    chat: &ChatopsConfig,
    store: &Store,
    channel: Channel,
    user: &str,
    cmd: &Command,
    lang: Lang,
    now: DateTime<Utc>,
) -> Answer {
    let zh = lang == Lang::Zh;
    let answer = |outcome, reply: String, target: &str| Answer {
        command: Name::Oncall,
        outcome,
        reply,
        target: target.to_string(),
        receiver: None,
    };
    let caller = person_of(rt, user);
    let failed = |e: String| {
        let reply = if zh {
            format!("操作失败：{e}")
        } else {
            format!("Failed: {e}")
        };
        answer(Outcome::Failed, reply, "")
    };
    let overrides = match store.overrides(now).await {
        Ok(o) => o,
        Err(e) => return failed(e.to_string()),
    };
    match cmd {
        Command::Cover { person, duration } => {
            let Some(caller) = caller else {
                let reply = if zh {
                    "无法替班：你的 ID 不是 people 中任何人的联系方式，不知道要替谁。未做任何更改。"
                } else {
                    "Cannot cover: your id is no contact of anyone in people, so whose shift is unknown. Nothing was changed."
                };
                return answer(Outcome::Denied, reply.to_string(), "");
            };
            cover(rt, store, &overrides, &caller, person, *duration, zh, now).await
        }
        _ => {
            if caller.is_none() && !chat.is_allowed(channel, user) {
                let reply = if zh {
                    "无权操作：你的 ID 不在 chatops.allowed 中，也不是值班人员的联系方式。"
                } else {
                    "Not allowed: your id is not in chatops.allowed and is no contact of anyone in people."
                };
                return answer(Outcome::Denied, reply.to_string(), "");
            }
            answer(Outcome::Ok, who(rt, &overrides, zh, now), "")
        }
    }
}

/// How a person is named in a reply.
fn named(rt: &Runtime, person: &str) -> String {
    crate::incident::display_name(rt, person)
}

fn at(rt: &Runtime, t: DateTime<Utc>) -> String {
    t.with_timezone(&rt.templates.timezone())
        .format("%m-%d %H:%M")
        .to_string()
}

/// Per schedule: who is on call now, until when, who is next.
fn who(
    rt: &Runtime,
    overrides: &[crate::store::oncall::Override],
    zh: bool,
    now: DateTime<Utc>,
) -> String {
    let schedules = &rt.config.schedules;
    if schedules.is_empty() {
        return if zh {
            "没有配置排班（schedules）。".into()
        } else {
            "No schedules are configured.".into()
        };
    }
    let mut out = if zh {
        "当前值班：".to_string()
    } else {
        "On call now:".to_string()
    };
    for s in schedules {
        let o = s.on_call(overrides, now);
        let person = match &o.person {
            Some(p) => named(rt, p),
            None if zh => "无人".into(),
            None => "nobody".into(),
        };
        let line = match (zh, o.until, &o.next) {
            (true, Some(u), Some(n)) => {
                format!(
                    "{}：{person}，至 {}，下一位 {}",
                    s.name,
                    at(rt, u),
                    named(rt, n)
                )
            }
            (true, Some(u), None) => format!("{}：{person}，至 {}", s.name, at(rt, u)),
            (true, None, _) => format!("{}：{person}", s.name),
            (false, Some(u), Some(n)) => format!(
                "{}: {person} until {}, then {}",
                s.name,
                at(rt, u),
                named(rt, n)
            ),
            (false, Some(u), None) => format!("{}: {person} until {}", s.name, at(rt, u)),
            (false, None, _) => format!("{}: {person}", s.name),
        };
        out.push('\n');
        out.push_str(&line);
    }
    out
}

/// `person` (a name or display name of `people:`) covers `caller` from `now` for `duration`
/// on every schedule `caller` is on now.
#[allow(clippy::too_many_arguments)]
async fn cover(
    rt: &Runtime,
    store: &Store,
    overrides: &[crate::store::oncall::Override],
    caller: &str,
    person: &str,
    duration: Duration,
    zh: bool,
    now: DateTime<Utc>,
) -> Answer {
    let answer = |outcome, reply: String| Answer {
        command: Name::Oncall,
        outcome,
        reply,
        target: person.to_string(),
        receiver: None,
    };
    let Some(covering) = rt
        .config
        .people
        .iter()
        .find(|p| p.name == person)
        .or_else(|| {
            rt.config
                .people
                .iter()
                .find(|p| p.display_name.as_deref() == Some(person))
        })
        .map(|p| p.name.clone())
    else {
        let reply = if zh {
            format!("people 中没有“{person}”，未做任何更改。")
        } else {
            format!("Nobody named \"{person}\" in people; nothing was changed.")
        };
        return answer(Outcome::Invalid, reply);
    };
    if covering == caller {
        let reply = if zh {
            "不能替自己值班，未做任何更改。".to_string()
        } else {
            "You cannot cover yourself; nothing was changed.".to_string()
        };
        return answer(Outcome::Invalid, reply);
    }
    let mine: Vec<&str> = rt
        .config
        .schedules
        .iter()
        .filter(|s| s.on_call(overrides, now).person.as_deref() == Some(caller))
        .map(|s| s.name.as_str())
        .collect();
    if mine.is_empty() {
        let reply = if zh {
            "你当前不在任何排班上值班，未做任何更改。".to_string()
        } else {
            "You are not on call on any schedule now; nothing was changed.".to_string()
        };
        return answer(Outcome::Invalid, reply);
    }
    let end = now + chrono::Duration::from_std(duration).unwrap_or_default();
    for schedule in &mine {
        let new = NewOverride {
            schedule: schedule.to_string(),
            person: covering.clone(),
            replaces: Some(caller.to_string()),
            start: now,
            end,
        };
        if let Err(e) = store.override_add(new, now).await {
            let reply = if zh {
                format!("操作失败：{e}")
            } else {
                format!("Failed: {e}")
            };
            return answer(Outcome::Failed, reply);
        }
    }
    let (who, list, until) = (named(rt, &covering), mine.join(", "), at(rt, end));
    let reply = if zh {
        format!("已安排 {who} 替你值班（{list}），至 {until}。")
    } else {
        format!("{who} covers your shifts ({list}) until {until}.")
    };
    answer(Outcome::Ok, reply)
}
