//! `global.timezone`: an IANA time zone name (`Asia/Shanghai`), and, for a name that is not
//! one (`Beijing`, `CST`, `asia/shanghai`), an error that says what is expected and suggests
//! the zone meant when it is cheap to guess.

use serde::{Deserialize, Deserializer};

/// Names people write for China Standard Time that are not IANA zone names.
const CHINA: &[&str] = &[
    "beijing",
    "peking",
    "china",
    "cst",
    "utc+8",
    "utc+08",
    "utc+08:00",
    "gmt+8",
    "gmt+08",
    "gmt+08:00",
    "+8",
    "+08",
    "+08:00",
    "北京",
    "北京时间",
    "中国",
];

/// Deserializes an IANA name, or says which zone was probably meant.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let name = String::deserialize(d)?;
    parse(&name).map_err(serde::de::Error::custom)
}

/// `name` as a zone, or the error to show.
pub fn parse(name: &str) -> Result<chrono_tz::Tz, String> {
    if let Ok(tz) = name.trim().parse::<chrono_tz::Tz>() {
        return Ok(tz);
    }
    let hint = match suggest(name) {
        Some(tz) => format!(" (did you mean {tz}?)"),
        None => String::new(),
    };
    Err(format!(
        "unknown time zone {name:?}: use an IANA time zone name such as Asia/Shanghai{hint}"
    ))
}

/// The zone probably meant: a known alias, the same name in another case or with spaces,
/// or the zone whose city is within two edits of it.
fn suggest(name: &str) -> Option<&'static str> {
    let wanted = name.trim().to_lowercase().replace(' ', "_");
    if wanted.is_empty() {
        return None;
    }
    if CHINA.contains(&wanted.as_str()) {
        return Some("Asia/Shanghai");
    }
    let city = |tz: &chrono_tz::Tz| tz.name().rsplit('/').next().unwrap_or("").to_lowercase();
    let zones = chrono_tz::TZ_VARIANTS.iter();
    if let Some(tz) = zones
        .clone()
        .find(|tz| tz.name().to_lowercase() == wanted || city(tz) == wanted)
    {
        return Some(tz.name());
    }
    let wanted_city = wanted.rsplit('/').next().unwrap_or(&wanted).to_string();
    zones
        .map(|tz| (edits(&city(tz), &wanted_city), tz))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, tz)| tz.name())
}

/// Levenshtein distance, by characters.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_is_not_an_iana_zone_gets_a_hint() {
        assert_eq!(parse("Asia/Shanghai"), Ok(chrono_tz::Asia::Shanghai));
        assert_eq!(
            parse("Beijing").unwrap_err(),
            "unknown time zone \"Beijing\": use an IANA time zone name such as Asia/Shanghai (did you mean Asia/Shanghai?)"
        );
        let hint = |n: &str| parse(n).unwrap_err();
        assert!(hint("CST").ends_with("(did you mean Asia/Shanghai?)"));
        assert!(hint("asia/shanghai").ends_with("(did you mean Asia/Shanghai?)"));
        assert!(hint("Hong Kong").ends_with("(did you mean Asia/Hong_Kong?)"));
        assert!(hint("Tokio").ends_with("(did you mean Asia/Tokyo?)"));
        assert!(hint("Europe/Londn").ends_with("(did you mean Europe/London?)"));
        assert_eq!(
            hint("Atlantis-Qwxz"),
            "unknown time zone \"Atlantis-Qwxz\": use an IANA time zone name such as Asia/Shanghai"
        );
    }
}
