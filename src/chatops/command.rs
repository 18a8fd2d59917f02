//! The commands a WeChat user can reply with, in Chinese and English, and their parsing.
//!
//! Parsing is forgiving: full-width spaces and `＃` count as their ASCII forms, spacing and
//! case do not matter, a reference may carry its leading `#`, a Chinese keyword may be written
//! right against its argument (`静默K7Q2`), and a WxPusher `#<appId>` prefix is ignored. It
//! only turns text into a [`Command`]; who may run it and what it does is
//! [`super::handle`]'s job.

use std::time::Duration;

/// The language a command was written in; replies use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

/// The word after a silence's duration that silences a group with only broad labels.
pub const FORCE: &[&str] = &["force", "强制"];

/// Labels that alone do not narrow a silence to the alerts of one group: a silence whose
/// matchers are all among them (`severity="warning"`) would silence unrelated alerts across
/// the cluster, so it needs [`FORCE`].
pub const BROAD_LABELS: &[&str] = &[
    "severity",
    "priority",
    "team",
    "env",
    "environment",
    "cluster",
    "region",
    "prometheus",
    "replica",
    "monitor",
];

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `静默 K7Q2 2h 原因` / `silence K7Q2 2h reason`; `强制` / `force` right after the
    /// duration silences a group whose common labels are all broad ([`BROAD_LABELS`]).
    Silence {
        reference: String,
        duration: Duration,
        reason: String,
        force: bool,
    },
    /// `取消静默 <id>` / `unsilence <id>`.
    Unsilence { id: String },
    /// `确认 K7Q2` / `ack K7Q2`.
    Ack { reference: String },
    /// `升级 K7Q2` / `escalate K7Q2`: an incident's next step, now.
    Escalate { reference: String },
    /// `值班` / `oncall`: who is on call now per schedule, until when, who is next.
    Oncall,
    /// `值班 NAME 2h` / `oncall NAME 2h`: NAME covers the caller from now for the duration on
    /// every schedule the caller is on now.
    Cover { person: String, duration: Duration },
    /// `列表` / `list`.
    List,
    /// `帮助` / `help`.
    Help,
}

/// Which command a message meant, as a metric label (a fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Silence,
    Unsilence,
    Ack,
    Escalate,
    Oncall,
    List,
    Help,
    Unknown,
}

impl Name {
    pub fn as_str(self) -> &'static str {
        match self {
            Name::Silence => "silence",
            Name::Unsilence => "unsilence",
            Name::Ack => "ack",
            Name::Escalate => "escalate",
            Name::Oncall => "oncall",
            Name::List => "list",
            Name::Help => "help",
            Name::Unknown => "unknown",
        }
    }
}

impl Command {
    pub fn name(&self) -> Name {
        match self {
            Command::Silence { .. } => Name::Silence,
            Command::Unsilence { .. } => Name::Unsilence,
            Command::Ack { .. } => Name::Ack,
            Command::Escalate { .. } => Name::Escalate,
            Command::Oncall | Command::Cover { .. } => Name::Oncall,
            Command::List => Name::List,
            Command::Help => Name::Help,
        }
    }
}

/// Why a message is not a command; replied to the user with the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not one of the keywords.
    Unknown,
    /// A keyword with missing or extra arguments.
    Usage(Name),
    /// Not a duration like `2h`, `30m`, `1h30m`, `2小时`.
    Duration(String),
    /// Not a reference of the reference alphabet.
    Reference(String),
    /// Not a silence id.
    SilenceId(String),
}

pub use crate::store::chatops::REF_ALPHABET;
/// Longest accepted duration of a silence made from WeChat.
pub const MAX_SILENCE: Duration = Duration::from_secs(90 * 86_400);

/// Keywords, longest first within a prefix family (`取消静默` before `静默`, `unsilence`
/// before `silence`).
const KEYWORDS: &[(&str, Name, Lang)] = &[
    ("取消静默", Name::Unsilence, Lang::Zh),
    ("解除静默", Name::Unsilence, Lang::Zh),
    ("静默", Name::Silence, Lang::Zh),
    ("确认", Name::Ack, Lang::Zh),
    ("升级", Name::Escalate, Lang::Zh),
    ("值班", Name::Oncall, Lang::Zh),
    ("列表", Name::List, Lang::Zh),
    ("帮助", Name::Help, Lang::Zh),
    ("unsilence", Name::Unsilence, Lang::En),
    ("silence", Name::Silence, Lang::En),
    ("acknowledge", Name::Ack, Lang::En),
    ("ack", Name::Ack, Lang::En),
    ("escalate", Name::Escalate, Lang::En),
    ("oncall", Name::Oncall, Lang::En),
    ("on-call", Name::Oncall, Lang::En),
    ("list", Name::List, Lang::En),
    ("help", Name::Help, Lang::En),
];

/// Parses one message. The language is the keyword's; for text that is no command, Chinese
/// if it contains any non-ASCII character.
pub fn parse(text: &str) -> (Lang, Result<Command, ParseError>) {
    let text = normalize(text);
    let guess = if text.is_ascii() { Lang::En } else { Lang::Zh };
    let Some(&(keyword, name, lang)) = KEYWORDS.iter().find(|(k, _, lang)| {
        let Some(rest) = text
            .get(..k.len())
            .filter(|p| p.eq_ignore_ascii_case(k))
            .map(|_| &text[k.len()..])
        else {
            return false;
        };
        match lang {
            // English keywords are whole words; Chinese ones may touch their argument.
            Lang::En => rest.chars().next().is_none_or(|c| c == ' ' || c == '#'),
            Lang::Zh => true,
        }
    }) else {
        return (guess, Err(ParseError::Unknown));
    };
    let rest = text[keyword.len()..].trim();
    let args: Vec<&str> = rest.split(' ').filter(|s| !s.is_empty()).collect();
    let result = match name {
        Name::Silence => match args.as_slice() {
            [r, d, rest @ ..] => reference(r).and_then(|reference| {
                let (force, reason) = match rest {
                    [w, reason @ ..] if FORCE.contains(&w.to_lowercase().as_str()) => {
                        (true, reason)
                    }
                    reason => (false, reason),
                };
                Ok(Command::Silence {
                    reference,
                    duration: duration(d)?,
                    reason: reason.join(" "),
                    force,
                })
            }),
            _ => Err(ParseError::Usage(name)),
        },
        Name::Unsilence => match args.as_slice() {
            [id] => silence_id(id).map(|id| Command::Unsilence { id }),
            _ => Err(ParseError::Usage(name)),
        },
        Name::Ack => match args.as_slice() {
            [r] => reference(r).map(|reference| Command::Ack { reference }),
            _ => Err(ParseError::Usage(name)),
        },
        Name::Escalate => match args.as_slice() {
            [r] => reference(r).map(|reference| Command::Escalate { reference }),
            _ => Err(ParseError::Usage(name)),
        },
        Name::Oncall => match args.as_slice() {
            [] => Ok(Command::Oncall),
            [p, d] => duration(d).map(|duration| Command::Cover {
                person: p.to_string(),
                duration,
            }),
            _ => Err(ParseError::Usage(name)),
        },
        Name::List if args.is_empty() => Ok(Command::List),
        Name::Help if args.is_empty() => Ok(Command::Help),
        _ => Err(ParseError::Usage(name)),
    };
    (lang, result)
}

/// Full-width forms to ASCII, whitespace folded to single spaces, a WxPusher `#<appId>`
/// command prefix dropped, a `#` stuck to its reference separated by a space.
fn normalize(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '＃' => '#',
            c if c.is_whitespace() => ' ',
            // Full-width ASCII (Ａ-ｚ, ０-９, ：…) to ASCII.
            c @ '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect();
    let mut words: Vec<&str> = mapped.split(' ').filter(|s| !s.is_empty()).collect();
    if words
        .first()
        .and_then(|w| w.strip_prefix('#'))
        .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
    {
        words.remove(0);
    }
    words.join(" ")
}

/// A reference: alphabet characters, 4 to 8 of them, any case, an optional leading `#`.
pub fn reference(word: &str) -> Result<String, ParseError> {
    let r = word.trim_start_matches('#').to_ascii_uppercase();
    if (4..=8).contains(&r.len()) && r.bytes().all(|b| REF_ALPHABET.contains(&b)) {
        Ok(r)
    } else {
        Err(ParseError::Reference(word.to_string()))
    }
}

/// An Alertmanager silence id (a UUID); only characters that are safe in a URL path.
fn silence_id(word: &str) -> Result<String, ParseError> {
    if (1..=64).contains(&word.len()) && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        Ok(word.to_ascii_lowercase())
    } else {
        Err(ParseError::SilenceId(word.to_string()))
    }
}

/// `2h`, `90m`, `1h30m`, `1d`, `1w`, `2小时`, `30分钟`, `1天`: number–unit pairs, summed.
pub fn duration(word: &str) -> Result<Duration, ParseError> {
    let bad = || ParseError::Duration(word.to_string());
    let lower = word.to_lowercase();
    let mut rest = lower.as_str();
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "s" | "sec" | "secs" | "秒" => 1,
            "m" | "min" | "mins" | "分" | "分钟" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" | "时" | "小时" | "个小时" => 3_600,
            "d" | "day" | "days" | "天" => 86_400,
            "w" | "week" | "weeks" | "周" | "星期" => 604_800,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(secs)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    let d = Duration::from_secs(total);
    if d.is_zero() || d > MAX_SILENCE {
        return Err(bad());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (Lang, Command) {
        let (lang, r) = parse(text);
        (lang, r.unwrap_or_else(|e| panic!("{text:?}: {e:?}")))
    }

    fn silence(r: &str, secs: u64, reason: &str) -> Command {
        Command::Silence {
            reference: r.into(),
            duration: Duration::from_secs(secs),
            reason: reason.into(),
            force: false,
        }
    }

    #[test]
    fn force_follows_the_duration_in_both_languages() {
        let forced = |reason: &str| Command::Silence {
            reference: "K7Q2".into(),
            duration: Duration::from_secs(7200),
            reason: reason.into(),
            force: true,
        };
        assert_eq!(ok("silence K7Q2 2h force"), (Lang::En, forced("")));
        assert_eq!(ok("silence K7Q2 2h FORCE disk"), (Lang::En, forced("disk")));
        assert_eq!(ok("静默 K7Q2 2小时 强制 换盘"), (Lang::Zh, forced("换盘")));
        // Elsewhere it is part of the reason.
        assert_eq!(
            ok("silence K7Q2 2h disk force"),
            (Lang::En, silence("K7Q2", 7200, "disk force"))
        );
    }

    #[test]
    fn silence_in_both_languages_any_spacing_and_case() {
        assert_eq!(
            ok("静默 K7Q2 2h 原因"),
            (Lang::Zh, silence("K7Q2", 7200, "原因"))
        );
        assert_eq!(
            ok("silence K7Q2 2h reason"),
            (Lang::En, silence("K7Q2", 7200, "reason"))
        );
        assert_eq!(
            ok("  SILENCE   #k7q2\t1h30m  disk   maintenance "),
            (Lang::En, silence("K7Q2", 5400, "disk maintenance"))
        );
        assert_eq!(
            ok("静默K7Q2　2小时　换盘"),
            (Lang::Zh, silence("K7Q2", 7200, "换盘"))
        );
        assert_eq!(
            ok("＃97 静默 ＃K7Q2 30分钟"),
            (Lang::Zh, silence("K7Q2", 1800, ""))
        );
        assert_eq!(
            ok("Silence k7q2 1D"),
            (Lang::En, silence("K7Q2", 86_400, ""))
        );
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            ok("取消静默 0F6A-B2"),
            (
                Lang::Zh,
                Command::Unsilence {
                    id: "0f6a-b2".into()
                }
            )
        );
        assert_eq!(
            ok("unsilence 3fa85f64-5717-4562-b3fc-2c963f66afa6"),
            (
                Lang::En,
                Command::Unsilence {
                    id: "3fa85f64-5717-4562-b3fc-2c963f66afa6".into()
                }
            )
        );
        let ack = Command::Ack {
            reference: "K7Q2".into(),
        };
        assert_eq!(ok("确认 K7Q2"), (Lang::Zh, ack.clone()));
        assert_eq!(ok("确认#k7q2"), (Lang::Zh, ack.clone()));
        assert_eq!(ok("ACK #K7Q2"), (Lang::En, ack.clone()));
        assert_eq!(ok("acknowledge k7q2"), (Lang::En, ack));
        let up = Command::Escalate {
            reference: "K7Q2".into(),
        };
        assert_eq!(ok("升级 K7Q2"), (Lang::Zh, up.clone()));
        assert_eq!(ok("escalate #k7q2"), (Lang::En, up));
        assert_eq!(ok("列表"), (Lang::Zh, Command::List));
        assert_eq!(ok(" List "), (Lang::En, Command::List));
        assert_eq!(ok("帮助"), (Lang::Zh, Command::Help));
        assert_eq!(ok("HELP"), (Lang::En, Command::Help));
        assert_eq!(ok("值班"), (Lang::Zh, Command::Oncall));
        assert_eq!(ok("OnCall"), (Lang::En, Command::Oncall));
        let cover = |p: &str| Command::Cover {
            person: p.into(),
            duration: Duration::from_secs(7_200),
        };
        assert_eq!(ok("值班 lisi 2h"), (Lang::Zh, cover("lisi")));
        assert_eq!(ok("值班李四　2小时"), (Lang::Zh, cover("李四")));
        assert_eq!(ok("oncall lisi 2h"), (Lang::En, cover("lisi")));
        assert_eq!(parse("值班 lisi").1, Err(ParseError::Usage(Name::Oncall)));
        assert_eq!(
            parse("oncall lisi 2x").1,
            Err(ParseError::Duration("2x".into()))
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(parse("hello"), (Lang::En, Err(ParseError::Unknown)));
        assert_eq!(parse("你好"), (Lang::Zh, Err(ParseError::Unknown)));
        // An English keyword must be a whole word.
        assert_eq!(parse("listing"), (Lang::En, Err(ParseError::Unknown)));
        assert_eq!(parse(""), (Lang::En, Err(ParseError::Unknown)));
        assert_eq!(
            parse("silence K7Q2"),
            (Lang::En, Err(ParseError::Usage(Name::Silence)))
        );
        assert_eq!(
            parse("静默 K7Q2 两小时"),
            (Lang::Zh, Err(ParseError::Duration("两小时".into())))
        );
        assert_eq!(
            parse("silence K7Q2 0h"),
            (Lang::En, Err(ParseError::Duration("0h".into())))
        );
        assert_eq!(
            parse("silence K7Q2 1000d"),
            (Lang::En, Err(ParseError::Duration("1000d".into())))
        );
        // O and 0, I and 1 are not in the alphabet: such a reference is a typo.
        assert_eq!(
            parse("ack K0Q2"),
            (Lang::En, Err(ParseError::Reference("K0Q2".into())))
        );
        assert_eq!(
            parse("unsilence ../../x"),
            (Lang::En, Err(ParseError::SilenceId("../../x".into())))
        );
        assert_eq!(
            parse("list all"),
            (Lang::En, Err(ParseError::Usage(Name::List)))
        );
        assert_eq!(parse("确认"), (Lang::Zh, Err(ParseError::Usage(Name::Ack))));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("45s").unwrap(), Duration::from_secs(45));
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("1w").unwrap(), Duration::from_secs(604_800));
        assert_eq!(duration("1天2小时").unwrap(), Duration::from_secs(93_600));
        assert!(duration("h").is_err());
        assert!(duration("2").is_err());
        assert!(duration("99999999999999999999h").is_err());
    }
}
