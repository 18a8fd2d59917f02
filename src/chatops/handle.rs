//! Running one command for one WeChat user: permission, the store, Alertmanager, and the
//! text of the reply (in the command's language).
//!
//! Nothing here knows which channel the command came from or how the reply travels; that is
//! [`super::callback`]'s job. Every outcome, refusals and errors included, has a reply.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::command::{self, Command, Lang, Name, ParseError};
use super::upstream;
use crate::config::chatops::{Channel, ChatopsConfig};
use crate::runtime::Runtime;
use crate::store::Store;
use crate::store::chatops::RefRecord;
use crate::template::Locale;
use crate::template::humanize;
use crate::webhook::Ack;

/// How a command ended, as a metric label (a fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The user is not in `chatops.allowed`.
    Denied,
    /// Not a command, or wrong arguments.
    Invalid,
    /// The reference is unknown or expired.
    UnknownRef,
    /// Alertmanager or the store failed.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::UnknownRef => "unknown_ref",
            Outcome::Failed => "failed",
        }
    }
}

/// The result of one message: what it was, how it ended, what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub command: Name,
    pub outcome: Outcome,
    pub reply: String,
    /// For the log: the reference or silence id acted on.
    pub target: String,
    /// The receiver of the reference acted on, when there was one (its app replies).
    pub receiver: Option<String>,
}

/// Runs the command in `text` sent by `user`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    rt: &Runtime,
    chat: &ChatopsConfig,
    store: &Store,
    metrics: &crate::metrics::Metrics,
    channel: Channel,
    user: &str,
    text: &str,
    now: DateTime<Utc>,
) -> Answer {
    let (lang, parsed) = command::parse(text);
    let zh = lang == Lang::Zh;
    let answer = |command, outcome, reply: String, target: &str| Answer {
        command,
        outcome,
        reply,
        target: target.to_string(),
        receiver: None,
    };
    let cmd = match parsed {
        Ok(c) => c,
        Err(e) => {
            let name = match &e {
                ParseError::Usage(n) => *n,
                ParseError::Unknown => Name::Unknown,
                ParseError::Duration(_) | ParseError::Reference(_) => {
                    // The keyword was fine; which one is in the text.
                    command_name_of(text)
                }
                ParseError::SilenceId(_) => Name::Unsilence,
            };
            return answer(name, Outcome::Invalid, invalid(lang, &e), "");
        }
    };
    let name = cmd.name();
    // An incident's reference: its acts, which its paged people may do without being in
    // `chatops.allowed` (rule 10).
    if let Command::Ack { reference } | Command::Escalate { reference } = &cmd
        && let Some(a) = incident_act(
            rt, chat, store, metrics, channel, user, &cmd, reference, zh, now,
        )
        .await
    {
        return a;
    }
    // On call: its own rules of who may ask (the caller's contacts).
    if let Command::Oncall | Command::Cover { .. } = &cmd {
        return super::oncall::run(rt, chat, store, channel, user, &cmd, lang, now).await;
    }
    // Help tells nothing about alerts: anyone may ask for it.
    if name != Name::Help && !chat.is_allowed(channel, user) {
        let reply = if zh {
            "无权操作：你的 ID 不在 chatops.allowed 中，未做任何更改。".to_string()
        } else {
            "Not allowed: your id is not in chatops.allowed; nothing was changed.".to_string()
        };
        return answer(name, Outcome::Denied, reply, "");
    }
    let failed = |e: String| {
        let reply = if zh {
            format!("操作失败：{e}")
        } else {
            format!("Failed: {e}")
        };
        answer(name, Outcome::Failed, reply, "")
    };
    let locale = if zh { Locale::ZhCn } else { Locale::En };
    match cmd {
        Command::Help => answer(name, Outcome::Ok, help(lang), ""),
        Command::List => match store.chatops_firing().await {
            Ok(all) => {
                let mine: Vec<RefRecord> = all
                    .into_iter()
                    .filter(|r| r.recipients.iter().any(|u| u == user))
                    .collect();
                answer(name, Outcome::Ok, list(lang, &mine, rt), "")
            }
            Err(e) => failed(e.to_string()),
        },
        Command::Escalate { reference } => unknown_ref(lang, name, &reference),
        // Answered above.
        Command::Oncall | Command::Cover { .. } => answer(name, Outcome::Ok, help(lang), ""),
        Command::Ack { reference } => {
            let rec = match store.chatops_ref(reference.clone(), now).await {
                Ok(Some(r)) => r,
                Ok(None) => return unknown_ref(lang, name, &reference),
                Err(e) => return failed(e.to_string()),
            };
            let ack = Ack {
                by: user.to_string(),
                at: now,
            };
            match store.chatops_ack(reference.clone(), ack).await {
                Ok(true) => {
                    let reply = if zh {
                        format!(
                            "已确认 #{reference}（{}），之后的消息会显示由你确认。",
                            title(&rec)
                        )
                    } else {
                        format!(
                            "Acknowledged #{reference} ({}); later messages show it.",
                            title(&rec)
                        )
                    };
                    Answer {
                        receiver: Some(rec.receiver),
                        ..answer(name, Outcome::Ok, reply, &reference)
                    }
                }
                Ok(false) => unknown_ref(lang, name, &reference),
                Err(e) => failed(e.to_string()),
            }
        }
        Command::Silence {
            reference,
            duration,
            reason,
            force,
        } => {
            let rec = match store.chatops_ref(reference.clone(), now).await {
                Ok(Some(r)) => r,
                Ok(None) => return unknown_ref(lang, name, &reference),
                Err(e) => return failed(e.to_string()),
            };
            if rec.labels.is_empty() {
                let reply = if zh {
                    format!("#{reference} 的告警没有共同标签，无法生成静默匹配条件。")
                } else {
                    format!("The alerts of #{reference} share no labels to silence them by.")
                };
                return answer(name, Outcome::Failed, reply, &reference);
            }
            let narrowing = rec
                .labels
                .keys()
                .any(|k| !super::command::BROAD_LABELS.contains(&k.as_str()));
            if !narrowing && !force {
                let labels = rec
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                let labels = crate::text::one_line(&labels);
                let reply = if zh {
                    format!(
                        "#{reference} 的告警只有宽泛的共同标签（{labels}），静默会波及其他告警，未静默。确需静默请在时长后加“强制”，如：静默 {reference} 2h 强制"
                    )
                } else {
                    format!(
                        "The alerts of #{reference} share only broad labels ({labels}): a silence would cover unrelated alerts, so none was made. To silence anyway, add \"force\" after the duration, e.g.: silence {reference} 2h force"
                    )
                };
                return answer(name, Outcome::Failed, reply, &reference);
            }
            let ends = now + chrono::Duration::from_std(duration).unwrap_or_default();
            let comment = if reason.is_empty() {
                format!("silenced from WeChat (#{reference})")
            } else {
                reason
            };
            let body = upstream::silence_body(&rec.labels, now, ends, user, &comment);
            match upstream::create_silence(&rt.client, &chat.alertmanager_url, &body, &rt.scrubber)
                .await
            {
                Ok(id) => {
                    let matchers = crate::text::one_line(
                        &rec.labels
                            .iter()
                            .map(|(k, v)| format!("{k}=\"{v}\""))
                            .collect::<Vec<_>>()
                            .join(", "),
                    );
                    let until = ends
                        .with_timezone(&rt.templates.timezone())
                        .format("%Y-%m-%d %H:%M");
                    let d = humanize(duration.as_secs() as i64, locale);
                    let reply = if zh {
                        format!(
                            "已静默 #{reference} {d}（至 {until}）\n匹配：{matchers}\n静默 ID：{id}\n撤销请回复：取消静默 {id}"
                        )
                    } else {
                        format!(
                            "Silenced #{reference} for {d} (until {until})\nMatchers: {matchers}\nSilence ID: {id}\nTo undo, reply: unsilence {id}"
                        )
                    };
                    Answer {
                        receiver: Some(rec.receiver),
                        ..answer(name, Outcome::Ok, reply, &id)
                    }
                }
                Err(e) => Answer {
                    receiver: Some(rec.receiver),
                    ..failed(e.to_string())
                },
            }
        }
        Command::Unsilence { id } => {
            match upstream::delete_silence(&rt.client, &chat.alertmanager_url, &id, &rt.scrubber)
                .await
            {
                Ok(()) => {
                    let reply = if zh {
                        format!("已取消静默 {id}")
                    } else {
                        format!("Silence {id} expired")
                    };
                    answer(name, Outcome::Ok, reply, &id)
                }
                Err(e) if e.is_not_found() => {
                    let reply = if zh {
                        format!("Alertmanager 中没有静默 {id}")
                    } else {
                        format!("Alertmanager has no silence {id}")
                    };
                    answer(name, Outcome::Invalid, reply, &id)
                }
                Err(e) => failed(e.to_string()),
            }
        }
    }
}

/// `ack` or `escalate` of the incident `reference` names, by `user`; `None` when it names no
/// incident (a plain group reference: chatops' own acknowledgement).
#[allow(clippy::too_many_arguments)]
async fn incident_act(
    rt: &Runtime,
    chat: &ChatopsConfig,
    store: &Store,
    metrics: &crate::metrics::Metrics,
    channel: Channel,
    user: &str,
    cmd: &Command,
    reference: &str,
    zh: bool,
    now: DateTime<Utc>,
) -> Option<Answer> {
    let name = cmd.name();
    let answer = |outcome, reply: String| Answer {
        command: name,
        outcome,
        reply,
        target: reference.to_string(),
        receiver: None,
    };
    let failed = |e: String| {
        let reply = if zh {
            format!("操作失败：{e}")
        } else {
            format!("Failed: {e}")
        };
        answer(Outcome::Failed, reply)
    };
    let inc = match crate::incident::by_reference(store, rt, reference, now).await {
        Ok(Some(i)) => i,
        Ok(None) => return None,
        Err(e) => return Some(failed(e.to_string())),
    };
    // The person whose contact sent the reply.
    let person = rt
        .config
        .people
        .iter()
        .find(|p| {
            p.contacts
                .kinds()
                .iter()
                .any(|k| p.contacts.recipient(k) == Some(user))
        })
        .map(|p| p.name.clone());
    let paged = person
        .as_ref()
        .is_some_and(|p| inc.paged.iter().any(|x| &x.person == p));
    if !paged && !chat.is_allowed(channel, user) {
        let reply = if zh {
            "无权操作：你未被通知处理该事件，且你的 ID 不在 chatops.allowed 中，未做任何更改。"
                .to_string()
        } else {
            "Not allowed: you were not paged for this incident and your id is not in chatops.allowed; nothing was changed.".to_string()
        };
        return Some(answer(Outcome::Denied, reply));
    }
    let by = person.unwrap_or_else(|| format!("chatops:{user}"));
    let acted = match cmd {
        Command::Escalate { .. } => {
            crate::incident::escalate(store, rt, metrics, inc.id, Some(inc.step), &by, now).await
        }
        _ => crate::incident::acknowledge(store, rt, metrics, inc.id, &by, "reply", now).await,
    };
    let a = match acted {
        Ok(a) => a,
        Err(e) => return Some(failed(e.to_string())),
    };
    let r = &a.incident.reference;
    let state = a.incident.state.as_str();
    let reply = match (cmd, a.changed, zh) {
        (Command::Escalate { .. }, true, true) => {
            format!("已升级 #{r}：正在通知第 {} 步。", a.incident.step)
        }
        (Command::Escalate { .. }, true, false) => {
            format!("Escalated #{r}: paging step {}.", a.incident.step)
        }
        (_, true, true) => format!("已认领 #{r}，升级已停止；已通知其他被呼叫的人。"),
        (_, true, false) => {
            format!("Acknowledged #{r}; the escalation stopped and everyone paged was told.")
        }
        (_, false, true) => format!("#{r} 当前为 {state}，未做更改。"),
        (_, false, false) => format!("#{r} is {state}; nothing was changed."),
    };
    Some(Answer {
        receiver: Some(a.incident.receiver.clone()),
        ..answer(Outcome::Ok, reply)
    })
}

fn command_name_of(text: &str) -> Name {
    let lower = text.to_lowercase();
    if lower.contains("取消静默") || lower.contains("解除静默") || lower.contains("unsilence")
    {
        Name::Unsilence
    } else if lower.contains("静默") || lower.contains("silence") {
        Name::Silence
    } else if lower.contains("确认") || lower.contains("ack") {
        Name::Ack
    } else if lower.contains("值班") || lower.contains("oncall") {
        Name::Oncall
    } else {
        Name::Unknown
    }
}

fn unknown_ref(lang: Lang, name: Name, reference: &str) -> Answer {
    let reply = match lang {
        Lang::Zh => {
            format!("未知编号 #{reference}（可能已恢复并过期）。回复「列表」查看正在告警的编号。")
        }
        Lang::En => format!(
            "Unknown reference #{reference} (it may have resolved and expired). Reply \"list\" for the firing ones."
        ),
    };
    Answer {
        command: name,
        outcome: Outcome::UnknownRef,
        reply,
        target: reference.to_string(),
        receiver: None,
    }
}

fn invalid(lang: Lang, e: &ParseError) -> String {
    let what = match (lang, e) {
        (Lang::Zh, ParseError::Unknown) => "看不懂这条命令。".to_string(),
        (Lang::En, ParseError::Unknown) => "Unknown command.".to_string(),
        (Lang::Zh, ParseError::Usage(_)) => "命令的参数不对。".to_string(),
        (Lang::En, ParseError::Usage(_)) => "Wrong arguments.".to_string(),
        (Lang::Zh, ParseError::Duration(d)) => {
            format!("“{d}”不是时长（例如 30m、2h、1d，最长 90 天）。")
        }
        (Lang::En, ParseError::Duration(d)) => {
            format!("\"{d}\" is not a duration (like 30m, 2h, 1d; at most 90 days).")
        }
        (Lang::Zh, ParseError::Reference(r)) => format!("“{r}”不是告警编号（例如 #K7Q2）。"),
        (Lang::En, ParseError::Reference(r)) => {
            format!("\"{r}\" is not an alert reference (like #K7Q2).")
        }
        (Lang::Zh, ParseError::SilenceId(s)) => format!("“{s}”不是静默 ID。"),
        (Lang::En, ParseError::SilenceId(s)) => format!("\"{s}\" is not a silence id."),
    };
    format!("{what}\n\n{}", help(lang))
}

/// The usage text.
pub fn help(lang: Lang) -> String {
    match lang {
        Lang::Zh => "可用命令（编号见告警消息末尾，如 #K7Q2）：\n\
            静默 K7Q2 2h 原因 — 在 Alertmanager 中静默该组告警\n\
            取消静默 <静默ID> — 提前结束静默\n\
            确认 K7Q2 — 认领，之后的消息显示由你确认；值班事件停止升级\n\
            升级 K7Q2 — 值班事件立即通知下一级\n\
            值班 — 各排班当前谁值班、到何时、下一位是谁\n\
            值班 李四 2h — 从现在起 2 小时由李四替你值你当前的所有班\n\
            列表 — 发给你的、正在告警的组\n\
            帮助 — 本说明"
            .to_string(),
        Lang::En => "Commands (the reference ends each alert message, like #K7Q2):\n\
            silence K7Q2 2h reason — silence the group in Alertmanager\n\
            unsilence <silence id> — end a silence early\n\
            ack K7Q2 — acknowledge; later messages show who did; stops an incident's escalation\n\
            escalate K7Q2 — page an incident's next step now\n\
            oncall — who is on call per schedule, until when, who is next\n\
            oncall lisi 2h — lisi covers all your current shifts from now for 2 hours\n\
            list — the firing groups sent to you\n\
            help — this text"
            .to_string(),
    }
}

/// A group's name for humans: its alert name(s), instance when shared, and count.
fn title(r: &RefRecord) -> String {
    let mut out = match r.labels.get("alertname") {
        Some(a) => a.clone(),
        None => {
            let mut names: Vec<&str> = r
                .alerts
                .iter()
                .filter_map(|a| a.get("alertname").map(String::as_str))
                .collect();
            names.dedup();
            names.join(", ")
        }
    };
    if let Some(i) = r.labels.get("instance") {
        let _ = write!(out, " {i}");
    }
    if r.alerts.len() > 1 {
        let _ = write!(out, " ×{}", r.alerts.len());
    }
    out
}

fn list(lang: Lang, refs: &[RefRecord], rt: &Runtime) -> String {
    let zh = lang == Lang::Zh;
    if refs.is_empty() {
        return if zh {
            "没有发给你的正在告警的组。".into()
        } else {
            "Nothing sent to you is firing.".into()
        };
    }
    let mut out = if zh {
        format!("正在告警 {} 组：", refs.len())
    } else {
        format!("{} firing:", refs.len())
    };
    let tz = rt.templates.timezone();
    for r in refs {
        let _ = write!(out, "\n#{} {}", r.reference, title(r));
        if let Some(a) = &r.ack {
            let at = a.at.with_timezone(&tz).format("%H:%M");
            if zh {
                let _ = write!(out, "（{} 已确认 {at}）", a.by);
            } else {
                let _ = write!(out, " (acked by {} at {at})", a.by);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        let mut r = RefRecord {
            reference: "K7Q2".into(),
            receiver: "a".into(),
            group_key: "g".into(),
            labels: [("alertname".to_string(), "DiskFull".to_string())].into(),
            alerts: vec![Default::default(), Default::default()],
            recipients: vec![],
            resolved_at: None,
            ack: None,
        };
        assert_eq!(title(&r), "DiskFull ×2");
        r.labels.insert("instance".into(), "n1".into());
        r.alerts.truncate(1);
        assert_eq!(title(&r), "DiskFull n1");
    }

    #[test]
    fn invalid_replies_carry_the_usage() {
        let t = invalid(Lang::En, &ParseError::Duration("2x".into()));
        assert!(t.starts_with("\"2x\" is not a duration"), "{t}");
        assert!(t.ends_with(&help(Lang::En)), "{t}");
        assert!(invalid(Lang::Zh, &ParseError::Unknown).starts_with("看不懂"));
    }
}
