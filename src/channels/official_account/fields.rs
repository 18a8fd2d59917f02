//! Template data fields: the value rules WeChat applies per field type, applied here after
//! rendering so that a long alert name is cut rather than rejected with 47003.
//!
//! A field's type is its key without the trailing number (`thing1` → `thing`,
//! `character_string12` → `character_string`). Lengths count user-visible characters
//! ([`crate::text`]). Every value is folded to one line first: no field may hold a newline.
//! Only free text (`thing`, and types we do not know) is cut with an ellipsis; the other types
//! are validated by character class, where `…` itself would be invalid, so they are cut hard.

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

/// Makes a rendered value acceptable for the field `key`.
pub fn fit(key: &str, rendered: &str, tz: Tz) -> String {
    let v = text::one_line(rendered);
    let Some(t) = FieldType::of(key) else {
        return text::truncate(&v, DEFAULT_MAX);
    };
    match t {
        FieldType::Thing | FieldType::Const => text::truncate(&v, 20),
        FieldType::CharacterString | FieldType::Number | FieldType::Letter => {
            cut(&ascii_only(&v), 32)
        }
        FieldType::PhoneNumber => cut(&ascii_only(&v), 17),
        FieldType::Symbol => cut(&v, 5),
        FieldType::Phrase => cut(&v, 5),
        FieldType::CarNumber => cut(&v, 8),
        FieldType::Name => {
            if v.chars().any(is_cjk) {
                cut(&v, 10)
            } else {
                cut(&v, 20)
            }
        }
        // One currency symbol, at most ten digits (or twelve, by some copies of the rules) and
        // an optional 元: spaces go, and twelve characters is the most it can be.
        FieldType::Amount => cut(&v.replace(' ', ""), 12),
        FieldType::Time | FieldType::Date => time_value(&v, tz),
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

#[cfg(test)]
mod tests {
    use super::*;

    const TZ: Tz = chrono_tz::Asia::Shanghai;
    const LONG_CJK: &str = "磁盘空间不足告警：生产环境数据库服务器的根分区使用率超过百分之九十";

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
            fit("thing1", LONG_CJK, TZ),
            "磁盘空间不足告警：生产环境数据库服务器…"
        );
        assert_eq!(fit("thing1", "短的", TZ), "短的");
        assert_eq!(fit("thing2", "第一行\n第二行", TZ), "第一行 第二行");
    }

    #[test]
    fn character_string_is_ascii_only_and_32_long() {
        assert_eq!(
            fit("character_string1", "节点 node-1:9100 告警", TZ),
            "node-1:9100"
        );
        let long = "a".repeat(40);
        assert_eq!(fit("character_string1", &long, TZ), "a".repeat(32));
    }

    #[test]
    fn number_and_letter_are_32() {
        assert_eq!(fit("number1", &"9".repeat(40), TZ), "9".repeat(32));
        assert_eq!(fit("letter1", &"x".repeat(33), TZ), "x".repeat(32));
        assert_eq!(fit("number1", "95.5 百分比", TZ), "95.5");
    }

    #[test]
    fn symbol_and_phrase_are_five() {
        assert_eq!(fit("symbol1", "%%%%%%%", TZ), "%%%%%");
        assert_eq!(fit("phrase3", "严重告警已触发", TZ), "严重告警已");
        assert_eq!(fit("phrase3", "告警", TZ), "告警");
    }

    #[test]
    fn name_is_ten_cjk_or_twenty_latin() {
        assert_eq!(
            fit("name1", "欧阳娜娜张三李四王五赵六", TZ),
            "欧阳娜娜张三李四王五"
        );
        assert_eq!(
            fit("name1", "Alexander Hamilton-Burr Jr", TZ),
            "Alexander Hamilton-B"
        );
    }

    #[test]
    fn phone_car_and_amount() {
        assert_eq!(
            fit("phone_number1", "+86 138 0013 8000 转 123", TZ),
            "+86 138 0013 8000"
        );
        assert_eq!(fit("car_number1", "粤B12345学警", TZ), "粤B12345学");
        assert_eq!(fit("amount1", "¥ 1234567890123元", TZ), "¥12345678901");
        assert_eq!(fit("amount1", "¥100元", TZ), "¥100元");
    }

    #[test]
    fn time_and_date_are_formatted_from_timestamps() {
        assert_eq!(fit("time2", "2026-11-25T08:00:00Z", TZ), "2026-11-25 16:00");
        assert_eq!(fit("date3", "2026-11-25T08:00:00Z", TZ), "2026-11-25 16:00");
        assert_eq!(
            fit("time2", "2026-11-25T08:00:00Z ~ 2026-11-25T08:42:00Z", TZ),
            "2026-11-25 16:00~2026-11-25 16:42"
        );
        assert_eq!(fit("time2", "15:01", TZ), "15:01");
    }

    #[test]
    fn unknown_types_are_cut_like_thing() {
        assert_eq!(
            fit("keyword1", LONG_CJK, TZ),
            "磁盘空间不足告警：生产环境数据库服务器…"
        );
    }
}
