//! `oncall.channels.voice`: the keys of each provider, their defaults and the checks serde
//! cannot make, each error with its YAML path. The `*_file` secrets are read here (through
//! [`resolve_secret`]) when the loader calls [`VoiceConfig::check`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Provider;
use crate::channels::check::check_http_url;
use crate::secret::{Secret, resolve_secret};

pub const ALIYUN_ENDPOINT: &str = "https://dyvmsapi.aliyuncs.com";
pub const TENCENT_ENDPOINT: &str = "https://vms.tencentcloudapi.com";
pub const TENCENT_REGION: &str = "ap-guangzhou";
/// The report path's secret is all that protects an unsigned report: long enough not to guess.
pub const CALLBACK_SECRET_MIN: usize = 16;

/// Voice calls as a contact: Aliyun's IvrCall (a prompt, then a key) or Tencent Cloud's
/// SendTtsVoice. Keys of the other provider are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceConfig {
    pub provider: Provider,
    // ---- aliyun ----
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<Secret>,
    pub access_key_secret_file: Option<PathBuf>,
    /// A purchased number of your own, shown to the person called.
    pub called_show_number: Option<String>,
    /// The TTS template played on answer (variables `summary`, `ref`): "… press 1 to acknowledge".
    pub start_code: Option<String>,
    /// The TTS template played after the key 1.
    pub ack_code: Option<String>,
    // ---- tencent ----
    pub secret_id: Option<String>,
    pub secret_key: Option<Secret>,
    pub secret_key_file: Option<PathBuf>,
    /// The voice application's `VoiceSdkAppid` (`1400…`).
    pub sdk_app_id: Option<String>,
    /// The approved template (parameters `[summary, ref]`).
    pub template_id: Option<String>,
    /// Default `ap-guangzhou`.
    pub region: Option<String>,
    // ---- both ----
    /// The secret path segment of `/callback/voice/{provider}/{secret}`: the vendors sign
    /// their reports with nothing.
    pub callback_secret: Option<Secret>,
    pub callback_secret_file: Option<PathBuf>,
    /// The API base; default per provider (tests point it at a mock).
    pub endpoint: Option<String>,
    /// The number this entry calls (E.164): the person's `contacts.voice.number`, set when
    /// the on-call check makes the contact; never a YAML key.
    #[serde(skip)]
    pub number: String,
}

/// `oncall.channels.voice` as a channel entry: a person's voice contact is an integration like
/// their other contacts (a page is one call, never retried: the escalation moves on).
impl crate::channels::ChannelConfig for VoiceConfig {
    fn kind(&self) -> &'static str {
        super::KIND
    }

    fn send_resolved(&self) -> bool {
        false
    }

    fn fallback_receiver(&self) -> Option<&String> {
        None
    }

    fn delivery_options(
        &self,
        _at: &str,
        _report: &mut dyn FnMut(String, String),
    ) -> crate::channels::options::DeliveryOptions {
        crate::channels::options::DeliveryOptions {
            max_attempts: 1,
            ..Default::default()
        }
    }

    fn check(&mut self, cx: &mut crate::channels::Check<'_>) {
        let at = cx.at.clone();
        VoiceConfig::check(self, cx.base, &at, cx.report);
        for s in self.secrets() {
            cx.record(&s);
        }
    }

    fn build(&self, _cx: &mut crate::channels::Build<'_>) -> crate::channels::Kind {
        crate::channels::Kind::Voice(super::Voice::new(self.clone()))
    }
}

impl VoiceConfig {
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(match self.provider {
            Provider::Aliyun => ALIYUN_ENDPOINT,
            Provider::Tencent => TENCENT_ENDPOINT,
        })
    }

    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(TENCENT_REGION)
    }

    /// The secrets, for the scrubber.
    pub fn secrets(&self) -> Vec<Secret> {
        [
            &self.access_key_secret,
            &self.secret_key,
            &self.callback_secret,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// Reads the `*_file` secrets (relative to `base`) and checks every key; `at` is the YAML
    /// path (`oncall.channels.voice`).
    pub fn check(&mut self, base: &Path, at: &str, report: &mut dyn FnMut(String, String)) {
        let p = self.provider.as_str();
        type Keys<'k> = &'k [(&'k str, bool)];
        let (own, other): (Keys<'_>, Keys<'_>) = match self.provider {
            Provider::Aliyun => (
                &[
                    ("access_key_id", self.access_key_id.is_some()),
                    ("called_show_number", self.called_show_number.is_some()),
                    ("start_code", self.start_code.is_some()),
                    ("ack_code", self.ack_code.is_some()),
                ],
                &[
                    ("secret_id", self.secret_id.is_some()),
                    ("secret_key", self.secret_key.is_some()),
                    ("secret_key_file", self.secret_key_file.is_some()),
                    ("sdk_app_id", self.sdk_app_id.is_some()),
                    ("template_id", self.template_id.is_some()),
                    ("region", self.region.is_some()),
                ],
            ),
            Provider::Tencent => (
                &[
                    ("secret_id", self.secret_id.is_some()),
                    ("sdk_app_id", self.sdk_app_id.is_some()),
                    ("template_id", self.template_id.is_some()),
                ],
                &[
                    ("access_key_id", self.access_key_id.is_some()),
                    ("access_key_secret", self.access_key_secret.is_some()),
                    (
                        "access_key_secret_file",
                        self.access_key_secret_file.is_some(),
                    ),
                    ("called_show_number", self.called_show_number.is_some()),
                    ("start_code", self.start_code.is_some()),
                    ("ack_code", self.ack_code.is_some()),
                ],
            ),
        };
        for (key, given) in own {
            if !given {
                report(at.to_string(), format!("provider {p} needs {key}"));
            }
        }
        for (key, given) in other {
            if *given {
                report(
                    format!("{at}.{key}"),
                    format!("does not apply to provider {p}"),
                );
            }
        }
        match self.provider {
            Provider::Aliyun => resolve_secret(
                base,
                at,
                "access_key_secret",
                &mut self.access_key_secret,
                &self.access_key_secret_file,
                true,
                report,
            ),
            Provider::Tencent => resolve_secret(
                base,
                at,
                "secret_key",
                &mut self.secret_key,
                &self.secret_key_file,
                true,
                report,
            ),
        }
        resolve_secret(
            base,
            at,
            "callback_secret",
            &mut self.callback_secret,
            &self.callback_secret_file,
            true,
            report,
        );
        if let Some(s) = &self.callback_secret {
            let v = s.expose();
            if v.len() < CALLBACK_SECRET_MIN
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
            {
                let key = if self.callback_secret_file.is_some() {
                    "callback_secret_file"
                } else {
                    "callback_secret"
                };
                report(
                    format!("{at}.{key}"),
                    format!(
                        "must be at least {CALLBACK_SECRET_MIN} characters of A-Z a-z 0-9 - _ . ~ (it is a URL path segment)"
                    ),
                );
            }
        }
        if let Some(n) = &self.called_show_number
            && (n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
        {
            report(
                format!("{at}.called_show_number"),
                format!("{n:?} is not a phone number (digits only, as Aliyun lists it)"),
            );
        }
        for (key, v) in [
            ("sdk_app_id", &self.sdk_app_id),
            ("template_id", &self.template_id),
        ] {
            if let Some(v) = v
                && (v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
            {
                report(format!("{at}.{key}"), format!("{v:?} must be digits"));
            }
        }
        for (key, v) in [
            ("access_key_id", &self.access_key_id),
            ("secret_id", &self.secret_id),
            ("start_code", &self.start_code),
            ("ack_code", &self.ack_code),
            ("region", &self.region),
        ] {
            if let Some(v) = v
                && v.trim().is_empty()
            {
                report(format!("{at}.{key}"), "must not be empty".into());
            }
        }
        if let Some(e) = &self.endpoint
            && let Err(m) = check_http_url(e)
        {
            report(format!("{at}.endpoint"), m);
        }
    }
}

/// The national number Aliyun dials: E.164 `+86…` without the `+86`; other countries are
/// refused (mainland numbers only).
pub fn aliyun_number(e164: &str) -> Result<String, String> {
    match e164.strip_prefix("+86") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => Ok(n.to_string()),
        _ => Err(format!(
            "{} is not a mainland China number (+86…): Aliyun calls mainland numbers only",
            mask(e164)
        )),
    }
}

/// A phone number for logs and errors: the middle digits hidden (`+86138****0000`).
pub fn mask(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..chars.len() - 8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> (VoiceConfig, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ak"), "aliyun-secret-value\n").unwrap();
        let mut c: VoiceConfig = yaml_serde::from_str(yaml).unwrap();
        let mut errors = Vec::new();
        c.check(dir.path(), "oncall.channels.voice", &mut |at, m| {
            errors.push(format!("{at}: {m}"))
        });
        (c, errors)
    }

    #[test]
    fn a_complete_aliyun_entry_is_valid_and_reads_its_secret_file() {
        let (c, e) = check(
            "{provider: aliyun, access_key_id: LTAI5t, access_key_secret_file: ak, called_show_number: '057100000000', start_code: TTS_123, ack_code: TTS_124, callback_secret: abcdefghijklmnop0123}",
        );
        assert_eq!(e, Vec::<String>::new());
        assert_eq!(
            c.access_key_secret.as_ref().map(|s| s.expose()),
            Some("aliyun-secret-value")
        );
        assert_eq!(c.endpoint(), ALIYUN_ENDPOINT);
    }

    #[test]
    fn missing_and_foreign_keys_are_named() {
        let (_, e) = check(
            "{provider: tencent, sdk_app_id: '14x', region: '', start_code: TTS_1, callback_secret: short}",
        );
        assert_eq!(
            e,
            vec![
                "oncall.channels.voice: provider tencent needs secret_id",
                "oncall.channels.voice: provider tencent needs template_id",
                "oncall.channels.voice.start_code: does not apply to provider tencent",
                "oncall.channels.voice: one of secret_key and secret_key_file is required",
                "oncall.channels.voice.callback_secret: must be at least 16 characters of A-Z a-z 0-9 - _ . ~ (it is a URL path segment)",
                "oncall.channels.voice.sdk_app_id: \"14x\" must be digits",
                "oncall.channels.voice.region: must not be empty",
            ]
        );
        let (_, e) = check(
            "{provider: aliyun, access_key_id: A, access_key_secret: abcdefgh, called_show_number: '+86571', start_code: T, ack_code: T, callback_secret_file: nothere, endpoint: ftp://x, region: ap-guangzhou}",
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].ends_with(".region: does not apply to provider aliyun"));
        assert!(e[1].starts_with("oncall.channels.voice.callback_secret_file: cannot read"));
        assert!(e[2].ends_with(
            "called_show_number: \"+86571\" is not a phone number (digits only, as Aliyun lists it)"
        ));
        assert!(e[3].ends_with("endpoint: \"ftp://x\" is not an http(s) URL"));
        let (_, e) = check(
            "{provider: tencent, secret_id: AKID, secret_key: key-secret, sdk_app_id: '1400', template_id: '12'}",
        );
        // Without it no keypress and no report arrives: nobody could acknowledge by the key.
        assert_eq!(
            e,
            vec![
                "oncall.channels.voice: one of callback_secret and callback_secret_file is required"
            ]
        );
        let unknown = yaml_serde::from_str::<VoiceConfig>("{provider: twilio}");
        assert!(unknown.is_err());
    }

    #[test]
    fn numbers_drop_plus_86_for_aliyun_and_are_masked_in_text() {
        assert_eq!(aliyun_number("+8613800000000").unwrap(), "13800000000");
        let e = aliyun_number("+14155550100").unwrap_err();
        assert!(e.starts_with("+141****0100 is not"), "{e}");
        assert_eq!(mask("+8613800000000"), "+86138****0000");
    }

    #[test]
    fn debug_hides_the_secrets() {
        let (c, _) = check(
            "{provider: aliyun, access_key_id: LTAI5t, access_key_secret: topsecretvalue, called_show_number: '0571', start_code: T, ack_code: T, callback_secret: pathsecretpathsecret}",
        );
        let d = format!("{c:?}");
        assert!(!d.contains("topsecretvalue") && !d.contains("pathsecretpathsecret"));
    }
}
