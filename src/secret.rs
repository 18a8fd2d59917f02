//! Secrets (app tokens, app secrets, bearer tokens) and how they are kept out of sight.
//!
//! A [`Secret`] prints as `<secret>` through `Debug` and `Display`; the only way to the value is
//! [`Secret::expose`], so every place that sends one upstream is easy to find. [`Scrubber`]
//! removes known secret values from text that came back from elsewhere (error bodies, URLs)
//! before it reaches a log line, an error message or the `render` output. [`resolve_secret`]
//! reads a `*_file` secret twin.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A credential that must never be printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Replaces every occurrence of a set of secret values in text.
#[derive(Clone, Debug, Default)]
pub struct Scrubber {
    secrets: Vec<Secret>,
}

/// What a masked secret looks like in output.
pub const MASK: &str = "<secret>";

impl Scrubber {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        // Secrets shorter than 4 characters would mask ordinary words; config validation refuses them.
        let mut secrets: Vec<Secret> = secrets.into_iter().filter(|s| s.0.len() >= 4).collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        secrets.dedup();
        Scrubber { secrets }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), MASK);
            }
        }
        out
    }

    /// Masks every string in a JSON value that contains a secret.
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                let scrubbed = self.scrub(s);
                if scrubbed != *s {
                    *s = scrubbed;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }
}

/// The credentials of an `Authorization` value if its scheme is `scheme`. Schemes are
/// case-insensitive (RFC 7235 §2.1): `Bearer`, `bearer` and `BEARER` are one scheme.
pub fn credentials<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let value = value.trim_start();
    let (given, rest) = value.split_once([' ', '\t'])?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|c| !c.is_empty())
}

/// Fills `value` from `file` when given; checks that exactly one (or, if optional, at most one)
/// of the two is set.
pub fn resolve_secret(
    base: &std::path::Path,
    at: &str,
    key: &str,
    value: &mut Option<Secret>,
    file: &Option<std::path::PathBuf>,
    required: bool,
    report: &mut dyn FnMut(String, String),
) {
    match (value.as_ref(), file) {
        (Some(_), Some(_)) => report(
            at.to_string(),
            format!("{key} and {key}_file are mutually exclusive"),
        ),
        (None, Some(f)) => {
            let p = base.join(f);
            match std::fs::read_to_string(&p) {
                Ok(s) => {
                    let s = s.trim_end_matches(['\n', '\r']).to_string();
                    if s.is_empty() {
                        report(
                            format!("{at}.{key}_file"),
                            format!("{} is empty", p.display()),
                        );
                    } else {
                        *value = Some(Secret::new(s));
                    }
                }
                Err(e) => report(
                    format!("{at}.{key}_file"),
                    format!("cannot read {}: {e}", p.display()),
                ),
            }
        }
        (Some(v), None) if v.expose().len() < 4 => report(
            format!("{at}.{key}"),
            "is too short to be a real secret (at least 4 characters)".into(),
        ),
        (None, None) if required => report(
            at.to_string(),
            format!("one of {key} and {key}_file is required"),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("AT_supersecret");
        assert_eq!(format!("{s:?} {s}"), "<secret> <secret>");
    }

    #[test]
    fn scrubber_masks_in_text_and_json() {
        let sc = Scrubber::new([Secret::new("AT_abcdef"), Secret::new("xy")]);
        assert_eq!(sc.scrub("token AT_abcdef bad"), "token <secret> bad");
        // Too short to scrub safely: left alone.
        assert_eq!(sc.scrub("xy"), "xy");
        let mut v = serde_json::json!({"appToken": "AT_abcdef", "list": ["q=AT_abcdef"]});
        sc.scrub_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"appToken": "<secret>", "list": ["q=<secret>"]})
        );
    }
}
