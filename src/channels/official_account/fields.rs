//! Template data fields: the value rules WeChat applies per field type, applied here after
//! rendering so that a long alert name is cut rather than rejected with 47003. A value that
//! cannot be made to fit is sent as a [`placeholder`] the field accepts, named in a log line
//! and counted in `template_fields_degraded_total`, rather than losing the whole message;
//! `check-config` warns when the sample notification does not fit (real alerts may carry the
//! label the sample lacks).
//!
//! A field's type is its key without the trailing number (`thing1` → `thing`,
//! `character_string12` → `character_string`). Lengths count user-visible characters
//! ([`crate::text`]). Every value is folded to one line first: no field may hold a newline.
//! Only free text (`thing`, and types we do not know) is cut with an ellipsis; the other types
//! are validated by character class, where `…` itself would be invalid, so they are cut hard
//! after the characters their class does not allow are dropped.

use chrono::DateTime;
use chrono_tz::Tz;

use crate::text;

/// The field types WeChat documents for category templates and subscribe notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Thing,
    CharacterString,
    Number,
    Letter,
    Symbol,
    Phrase,
    Name,
    PhoneNumber,
    CarNumber,
    Amount,
    Time,
    Date,
    Const,
}

/// What unknown types are cut to: the 2023 rule for every template field.
pub const DEFAULT_MAX: usize = 20;
/// How times are written in `time` and `date` fields.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M";

impl FieldType {
    /// The type of a data key, or `None` for a prefix WeChat does not document.
    pub fn of(key: &str) -> Option<FieldType> {
        let prefix = key.trim_end_matches(|c: char| c.is_ascii_digit());
        Some(match prefix {
            "thing" => FieldType::Thing,
            "character_string" => FieldType::CharacterString,
            "number" => FieldType::Number,
            "letter" => FieldType::Letter,
            "symbol" => FieldType::Symbol,
            "phrase" => FieldType::Phrase,
            "name" => FieldType::Name,
            "phone_number" => FieldType::PhoneNumber,
            "car_number" => FieldType::CarNumber,
            "amount" => FieldType::Amount,
            "time" => FieldType::Time,
            "date" => FieldType::Date,
            "const" => FieldType::Const,
            _ => return None,
        })
    }
}

/// Why a rendered value cannot be made acceptable for its field; names the field, the rule
/// and what the template produced (alert text, never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template field {key} ({rule}): {reason}")]
pub struct FieldError {
    pub key: String,
    /// WeChat's rule for the field's type, in words.
    pub rule: &'static str,
    pub reason: String,
}

impl FieldType {
    /// WeChat's rule for the type, as error messages state it.
    pub fn rule(self) -> &'static str {
        match self {
            FieldType::Thing => "thing: at most 20 characters",
            FieldType::CharacterString => {
                "character_string: at most 32 digits, letters or symbols, no Chinese"
            }
            FieldType::Number => "number: at most 32 digits, a decimal point allowed",
            FieldType::Letter => "letter: at most 32 letters",
            FieldType::Symbol => "symbol: at most 5 symbols",
            FieldType::Phrase => "phrase: at most 5 Chinese characters, nothing else",
            FieldType::Name => "name: at most 10 Chinese characters or 20 letters",
            FieldType::PhoneNumber => "phone_number: at most 17 digits and symbols",
            FieldType::CarNumber => {
                "car_number: at most 8, letters and digits, Chinese only first and last"
            }
            FieldType::Amount => "amount: a currency symbol, at most 10 digits, optional 元",
            FieldType::Time => "time: a 24-hour time, optionally with its date; ranges with ~",
            FieldType::Date => "date: a date, optionally with a 24-hour time; ranges with ~",
            FieldType::Const => "const: at most 20 characters",
        }
    }
}

/// What a field holds instead of a value that cannot be made to fit ([`fit`] failed): a
/// placeholder every field of its type accepts, so the message still goes out. Times and dates
/// hold `now`.
pub fn placeholder(key: &str, now: chrono::DateTime<chrono::Utc>, tz: Tz) -> String {
    match FieldType::of(key) {
        Some(FieldType::Number) | Some(FieldType::PhoneNumber) => "0".into(),
        Some(FieldType::Amount) => "¥0".into(),
        Some(FieldType::Phrase) => "未知".into(),
        Some(FieldType::Letter | FieldType::Name | FieldType::CarNumber) => "NA".into(),
        Some(FieldType::Symbol) => "-".into(),
        Some(FieldType::Time | FieldType::Date) => {
            now.with_timezone(&tz).format(TIME_FORMAT).to_string()
        }
        Some(FieldType::CharacterString | FieldType::Thing | FieldType::Const) | None => {
            "n/a".into()
        }
    }
}

/// Makes a rendered value acceptable for the field `key`, or says why it cannot be.
///
/// Each type is made to fit where that keeps the meaning: free text is cut, characters a type
/// does not allow are dropped (`95.5 %` → `95.5` in a number field), timestamps are formatted,
/// status words become Chinese in a phrase field whatever the locale (`FIRING` → `告警`, as zh-CN's `status_text`).
/// Where nothing acceptable is left (a phrase with no Chinese, a number with no digits), or
/// fitting would change the meaning (an amount over 10 digits), it is an error: WeChat would
/// refuse the whole message with 47003.
pub fn fit(key: &str, rendered: &str, tz: Tz) -> Result<String, FieldError> {
    let v = text::one_line(rendered);
    let Some(t) = FieldType::of(key) else {
        return Ok(text::truncate(&v, DEFAULT_MAX));
    };
    // Nothing rendered is a matter of the alert's data (a label it lacks), not of the
    // template: sent as it is, as before, and not held against the config by the sample check.
    if v.is_empty() {
        return Ok(v);
    }
    let fail = |reason: String| FieldError {
        key: key.to_string(),
        rule: t.rule(),
        reason,
    };
    let shown = || format!("{:?}", text::truncate(&v, 24));
    let kept = |out: String, what: &str| {
        if out.is_empty() {
            Err(fail(format!("{} has no {what}", shown())))
        } else {
            Ok(out)
        }
    };
    match t {
        FieldType::Thing | FieldType::Const => Ok(text::truncate(&v, 20)),
        FieldType::CharacterString => kept(cut(&ascii_only(&v), 32), "ASCII characters"),
        FieldType::Number => kept(cut(&number(&v), 32), "digits"),
        FieldType::Letter => kept(
            cut(
                &v.chars()
                    .filter(char::is_ascii_alphabetic)
                    .collect::<String>(),
                32,
            ),
            "letters",
        ),
        FieldType::Symbol => kept(
            cut(&v.chars().filter(|c| is_symbol(*c)).collect::<String>(), 5),
            "symbols",
        ),
        FieldType::Phrase => {
            if let Some(word) = phrase_word(&v) {
                return Ok(word.to_string());
            }
            kept(
                cut(&v.chars().filter(|c| is_cjk(*c)).collect::<String>(), 5),
                "Chinese characters",
            )
        }
        FieldType::PhoneNumber => {
            let out: String = v
                .chars()
                .filter(|c| c.is_ascii_digit() || c.is_ascii_punctuation() || *c == ' ')
                .collect();
            let out = text::one_line(&out);
            let out = out.trim_matches(|c: char| !(c.is_ascii_digit() || "+()".contains(c)));
            let out = cut(out, 17);
            if out.chars().any(|c| c.is_ascii_digit()) {
                Ok(out)
            } else {
                kept(String::new(), "digits")
            }
        }
        FieldType::CarNumber => kept(car_number(&v), "plate characters (letters and digits)"),
        FieldType::Name => {
            let out = if v.chars().any(is_cjk) {
                cut(&v, 10)
            } else {
                cut(&v, 20)
            };
            kept(out, "characters")
        }
        FieldType::Amount => amount(&v).map_err(|reason| fail(format!("{} {reason}", shown()))),
        FieldType::Time | FieldType::Date => {
            let out = time_value(&v, tz);
            if is_time_like(&out, t) {
                Ok(out)
            } else {
                Err(fail(format!(
                    "{} is not a {} (like 2026-01-01 12:00)",
                    shown(),
                    if t == FieldType::Time { "time" } else { "date" }
                )))
            }
        }
    }
}

/// The first `max` visible characters, no ellipsis, trailing blanks dropped.
fn cut(s: &str, max: usize) -> String {
    use unicode_segmentation::UnicodeSegmentation;
    let mut out = String::new();
    for g in s.graphemes(true).take(max) {
        out.push_str(g);
    }
    out.trim_end().to_string()
}

/// Printable ASCII only (Chinese characters are what `character_string` rejects), spaces
/// folded.
fn ascii_only(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .collect();
    text::one_line(&kept)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

/// RFC 3339 timestamps (alone or as a `a ~ b` range) are written in the configured zone as
/// `2026-01-01 12:00`; anything else is kept as the template wrote it.
fn time_value(v: &str, tz: Tz) -> String {
    let format = |s: &str| -> Option<String> {
        let t = DateTime::parse_from_rfc3339(s.trim()).ok()?;
        Some(t.with_timezone(&tz).format(TIME_FORMAT).to_string())
    };
    if let Some(one) = format(v) {
        return one;
    }
    if let Some((a, b)) = v.split_once('~')
        && let (Some(a), Some(b)) = (format(a), format(b))
    {
        return format!("{a}~{b}");
    }
    v.to_string()
}

/// The Chinese word for a status (or severity) word in a phrase field, in any locale: the
/// shipped English `status_text` is `FIRING` / `RESOLVED`, which WeChat refuses there.
fn phrase_word(v: &str) -> Option<&'static str> {
    Some(match v.trim().to_ascii_lowercase().as_str() {
        "firing" | "alerting" | "alert" | "problem" => "告警",
        "resolved" | "ok" | "recovered" | "normal" => "已恢复",
        "pending" => "待处理",
        "acknowledged" | "acked" | "ack" => "已确认",
        "silenced" | "suppressed" => "已静默",
        "critical" | "page" => "严重",
        "warning" | "warn" => "警告",
        "info" | "informational" => "提示",
        _ => return None,
    })
}

/// Digits with at most one decimal point between them; everything else dropped.
fn number(v: &str) -> String {
    let mut out = String::new();
    let mut point = false;
    for c in v.chars() {
        if c.is_ascii_digit() {
            out.push(c);
        } else if c == '.' && !point && out.chars().last().is_some_and(|l| l.is_ascii_digit()) {
            out.push(c);
            point = true;
        }
    }
    out.trim_end_matches('.').to_string()
}

/// Not a letter, digit, space or Chinese character.
fn is_symbol(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control() && !is_cjk(c)
}

/// A plate: a Chinese character (or letter) first, letters and digits, one Chinese character
/// allowed last (挂, 学, 警); eight at most.
fn car_number(v: &str) -> String {
    let chars: Vec<char> = v
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || is_cjk(*c))
        .collect();
    let mut out = String::new();
    let mut body = 0;
    for (i, c) in chars.iter().enumerate() {
        if out.chars().count() == 8 {
            break;
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
            body += 1;
        } else if i == 0 {
            out.push(*c);
        } else if body > 0 {
            // The last character: nothing may follow it.
            out.push(*c);
            break;
        }
    }
    if body == 0 { String::new() } else { out }
}

/// One currency symbol (¥ when none is given), the digits with an optional fraction, an
/// optional 元. More than 10 digits before the point cannot be cut without changing the sum.
fn amount(v: &str) -> Result<String, String> {
    let v: String = v
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ',')
        .collect();
    let yuan = v.ends_with('元');
    let symbol = v
        .chars()
        .find(|c| matches!(c, '¥' | '￥' | '$' | '€' | '£' | '₩' | '₹'));
    let digits = number(&v);
    if digits.is_empty() {
        return Err("has no digits".into());
    }
    let whole = digits.split('.').next().unwrap_or_default();
    if whole.len() > 10 {
        return Err(format!(
            "has {} digits before the point (at most 10)",
            whole.len()
        ));
    }
    let symbol = match (symbol, yuan) {
        (Some(s), _) => s.to_string(),
        (None, true) => String::new(),
        (None, false) => "¥".to_string(),
    };
    Ok(format!("{symbol}{digits}{}", if yuan { "元" } else { "" }))
}

/// Whether a value reads as WeChat's time (`15:01`, `2026-01-01 15:01`) or date
/// (`2026-01-01`, `2026年1月1日 15:01`) format, alone or as an `a~b` range.
fn is_time_like(v: &str, t: FieldType) -> bool {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
    let one = |s: &str| -> bool {
        let s = s.trim();
        const DATETIME: &[&str] = &[
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y/%m/%d %H:%M",
            "%Y/%m/%d %H:%M:%S",
            "%Y年%m月%d日 %H:%M",
            "%Y年%m月%d日 %H:%M:%S",
            "%Y年%m月%d日%H:%M",
        ];
        const DATE: &[&str] = &["%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日"];
        const TIME: &[&str] = &["%H:%M", "%H:%M:%S"];
        DATETIME
            .iter()
            .any(|f| NaiveDateTime::parse_from_str(s, f).is_ok())
            || match t {
                FieldType::Date => DATE.iter().any(|f| NaiveDate::parse_from_str(s, f).is_ok()),
                _ => TIME.iter().any(|f| NaiveTime::parse_from_str(s, f).is_ok()),
            }
    };
    if one(v) {
        return true;
    }
    match v.split_once('~') {
        Some((a, b)) => one(a) && one(b),
        None => false,
    }
}

/// Why WeChat refused the data (47003): the field it names, with that type's rule, or, when
/// the message names none, the fields that were sent.
pub fn explain_47003<'a>(message: &str, keys: impl IntoIterator<Item = &'a str>) -> String {
    match super::bad_field(message) {
        Some(field) => match FieldType::of(field) {
            Some(t) => format!("template field {field} ({}) rejected: {message}", t.rule()),
            None => format!("template field {field} rejected: {message}"),
        },
        None => {
            let keys: Vec<&str> = keys.into_iter().collect();
            if keys.is_empty() {
                return message.to_string();
            }
            format!(
                "a template field was rejected (fields sent: {}): {message}",
                keys.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_placeholder_fits_its_own_field() {
        let tz = chrono_tz::Asia::Shanghai;
        let now = chrono::Utc::now();
        for key in [
            "thing1",
            "character_string2",
            "number3",
            "letter4",
            "symbol5",
            "phrase6",
            "name7",
            "phone_number8",
            "car_number9",
            "amount10",
            "time11",
            "date12",
            "const13",
            "odd14",
        ] {
            let p = placeholder(key, now, tz);
            assert_eq!(fit(key, &p, tz).as_deref(), Ok(p.as_str()), "{key}");
        }
    }

    use super::*;

    const TZ: Tz = chrono_tz::Asia::Shanghai;
    const LONG_CJK: &str = "磁盘空间不足告警：生产环境数据库服务器的根分区使用率超过百分之九十";

    fn ok(key: &str, v: &str) -> String {
        fit(key, v, TZ).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(key: &str, v: &str) -> String {
        match fit(key, v, TZ) {
            Ok(out) => panic!("{key}: {v:?} fitted as {out:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn type_comes_from_the_key_prefix() {
        assert_eq!(FieldType::of("thing1"), Some(FieldType::Thing));
        assert_eq!(
            FieldType::of("character_string12"),
            Some(FieldType::CharacterString)
        );
        assert_eq!(FieldType::of("phone_number3"), Some(FieldType::PhoneNumber));
        assert_eq!(FieldType::of("time"), Some(FieldType::Time));
        assert_eq!(FieldType::of("keyword1"), None);
        assert_eq!(FieldType::of("first"), None);
    }

    #[test]
    fn thing_is_twenty_visible_characters_with_ellipsis() {
        assert_eq!(
            ok("thing1", LONG_CJK),
            "磁盘空间不足告警：生产环境数据库服务器…"
        );
        assert_eq!(ok("thing1", "短的"), "短的");
        assert_eq!(ok("thing2", "第一行\n第二行"), "第一行 第二行");
        assert_eq!(ok("const1", &"x".repeat(30)).chars().count(), 20);
    }

    #[test]
    fn character_string_is_ascii_only_and_32_long() {
        assert_eq!(
            ok("character_string1", "节点 node-1:9100 告警"),
            "node-1:9100"
        );
        assert_eq!(ok("character_string1", &"a".repeat(40)), "a".repeat(32));
        assert_eq!(
            err("character_string1", "磁盘告警"),
            "template field character_string1 (character_string: at most 32 digits, letters or symbols, no Chinese): \"磁盘告警\" has no ASCII characters"
        );
    }

    #[test]
    fn number_keeps_digits_and_one_decimal_point() {
        assert_eq!(ok("number1", &"9".repeat(40)), "9".repeat(32));
        assert_eq!(ok("number1", "95.5 百分比"), "95.5");
        assert_eq!(ok("number1", "共 1,234 条"), "1234");
        assert_eq!(ok("number1", "v1.2.3"), "1.23");
        assert_eq!(ok("number1", "3 ."), "3");
        assert_eq!(
            err("number1", "none"),
            "template field number1 (number: at most 32 digits, a decimal point allowed): \"none\" has no digits"
        );
        // Nothing rendered (a label the alert lacks) is sent as it is.
        assert_eq!(ok("number2", "  "), "");
        assert_eq!(ok("phrase2", ""), "");
    }

    #[test]
    fn letter_is_letters_only() {
        assert_eq!(ok("letter1", &"x".repeat(33)), "x".repeat(32));
        assert_eq!(ok("letter1", "node-1 告警"), "node");
        assert!(err("letter1", "123 告警").ends_with("has no letters"));
    }

    #[test]
    fn symbol_is_five_symbols_only() {
        assert_eq!(ok("symbol1", "%%%%%%%"), "%%%%%");
        assert_eq!(ok("symbol1", "CPU > 90%"), ">%");
        assert!(err("symbol1", "告警 abc").ends_with("has no symbols"));
    }

    #[test]
    fn phrase_is_five_chinese_characters_and_status_words_become_chinese() {
        assert_eq!(ok("phrase3", "严重告警已触发"), "严重告警已");
        assert_eq!(ok("phrase3", "告警"), "告警");
        assert_eq!(ok("phrase3", "已恢复 ✅"), "已恢复");
        // The English status_text, whatever the locale: never "FIRIN".
        assert_eq!(ok("phrase3", "FIRING"), "告警");
        assert_eq!(ok("phrase3", "RESOLVED"), "已恢复");
        assert_eq!(ok("phrase1", "critical"), "严重");
        assert_eq!(
            err("phrase3", "HighCPU"),
            "template field phrase3 (phrase: at most 5 Chinese characters, nothing else): \"HighCPU\" has no Chinese characters"
        );
    }

    #[test]
    fn name_is_ten_cjk_or_twenty_latin() {
        assert_eq!(
            ok("name1", "欧阳娜娜张三李四王五赵六"),
            "欧阳娜娜张三李四王五"
        );
        assert_eq!(
            ok("name1", "Alexander Hamilton-Burr Jr"),
            "Alexander Hamilton-B"
        );
        assert_eq!(ok("name1", "Ops-Team/张"), "Ops-Team/张");
    }

    #[test]
    fn phone_number_is_digits_and_symbols() {
        assert_eq!(
            ok("phone_number1", "+86 138 0013 8000 转 123"),
            "+86 138 0013 8000"
        );
        assert_eq!(ok("phone_number1", "tel: 0766-66888866."), "0766-66888866");
        assert!(err("phone_number1", "值班电话").ends_with("has no digits"));
    }

    #[test]
    fn car_number_is_a_plate() {
        assert_eq!(ok("car_number1", "粤B12345学警"), "粤B12345学");
        assert_eq!(ok("car_number1", "粤 a·8z888 挂"), "粤A8Z888挂");
        assert_eq!(ok("car_number1", "京A12345678"), "京A123456");
        assert!(err("car_number1", "没有车牌").contains("has no plate characters"));
    }

    #[test]
    fn amount_is_a_currency_symbol_and_at_most_ten_digits() {
        assert_eq!(ok("amount1", "¥100元"), "¥100元");
        assert_eq!(ok("amount1", "$ 1,234.50"), "$1234.50");
        assert_eq!(ok("amount1", "100元"), "100元");
        assert_eq!(ok("amount1", "费用 88.8"), "¥88.8");
        assert_eq!(
            err("amount1", "¥ 1234567890123元"),
            "template field amount1 (amount: a currency symbol, at most 10 digits, optional 元): \"¥ 1234567890123元\" has 13 digits before the point (at most 10)"
        );
        assert!(err("amount1", "免费").ends_with("has no digits"));
    }

    #[test]
    fn time_and_date_are_formatted_from_timestamps() {
        assert_eq!(ok("time2", "2026-11-25T08:00:00Z"), "2026-11-25 16:00");
        assert_eq!(ok("date3", "2026-11-25T08:00:00Z"), "2026-11-25 16:00");
        assert_eq!(
            ok("time2", "2026-11-25T08:00:00Z ~ 2026-11-25T08:42:00Z"),
            "2026-11-25 16:00~2026-11-25 16:42"
        );
        assert_eq!(ok("time2", "15:01"), "15:01");
        assert_eq!(ok("date1", "2019年10月1日"), "2019年10月1日");
        assert_eq!(ok("date1", "2019年10月1日 15:01"), "2019年10月1日 15:01");
        assert_eq!(
            err("time2", "yesterday"),
            "template field time2 (time: a 24-hour time, optionally with its date; ranges with ~): \"yesterday\" is not a time (like 2026-01-01 12:00)"
        );
        // A time alone is no date.
        assert!(err("date1", "15:01").ends_with("is not a date (like 2026-01-01 12:00)"));
    }

    #[test]
    fn unknown_types_are_cut_like_thing() {
        assert_eq!(
            ok("keyword1", LONG_CJK),
            "磁盘空间不足告警：生产环境数据库服务器…"
        );
    }

    #[test]
    fn a_47003_names_the_field_or_lists_the_fields_sent() {
        assert_eq!(
            explain_47003(
                "argument invalid! data.phrase3.value invalid rid: 1",
                ["thing1", "phrase3"]
            ),
            "template field phrase3 (phrase: at most 5 Chinese characters, nothing else) rejected: argument invalid! data.phrase3.value invalid rid: 1"
        );
        assert_eq!(
            explain_47003("argument invalid! rid: 2", ["thing1", "time2", "phrase3"]),
            "a template field was rejected (fields sent: thing1, time2, phrase3): argument invalid! rid: 2"
        );
    }
}
