//! WxPusher simple push (极简推送): `POST {api}/api/send/message/simple-push` with `sptList`, for
//! people who have no WxPusher app of their own, only the `SPT_…` token WxPusher gave them.
//!
//! Owns: the `spts` / `spts_file` config checks, the request body, and reading the per-SPT
//! results. Everything else (content types, summary, url, splitting, rate limit, the daily
//! budget) is the app-token path's, in [`super`]: there each SPT is a recipient named by
//! [`Spt::id`], a hash, because progress marks and budget counters live in the store and an
//! SPT is a secret that must not.
//!
//! The contract says the answer has "the same result shape" as the app-token send: a `data`
//! entry per target (`uid`, `code`, `status`), which does not name the SPT. An entry is
//! matched to its SPT by an `spt` field when WxPusher sends one, else by position when there
//! is exactly one entry per SPT of the call; otherwise failures cannot be placed, and every
//! SPT of the call is retried (a duplicate is better than a lost alert). A per-SPT failure
//! whose status names the token (a wrong or withdrawn SPT) is permanent for that SPT; any
//! other is retried, as for UIDs.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Batch, Entry, Progress, Recipient, RecipientResult, SendResult, WxPusher, uid_key};
use crate::channels::Env;
use crate::channels::error::{DeliveryError, Reason};
use crate::secret::Secret;

/// The API's `sptList` limit.
pub const SPTS_PER_CALL: usize = 10;

/// One simple-push token and the name it goes by in progress marks, counters and errors.
#[derive(Debug, Clone)]
pub struct Spt {
    /// `spt:` and 12 hex characters of the token's SHA-256: stable, not the secret.
    pub id: String,
    pub token: Secret,
}

impl Spt {
    pub fn new(token: Secret) -> Spt {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(token.expose().as_bytes());
        Spt {
            id: format!("spt:{}", hex::encode(&digest[..6])),
            token,
        }
    }
}

/// The simple-push body, field names as the API spells them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SimplePushBody<'a> {
    content: &'a str,
    summary: &'a str,
    content_type: u8,
    spt_list: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

/// A per-target entry, with the `spt` WxPusher may add.
#[derive(Debug, Deserialize)]
struct SptResult {
    #[serde(default)]
    spt: Option<String>,
}

/// Progress entry of an SPT WxPusher refused for good: retries leave it out.
pub(super) fn refused_key(id: &str) -> Entry {
    Entry::Refused(Recipient::Uid(id.to_string()))
}

impl WxPusher {
    /// Whether this integration sends by simple push.
    pub fn is_simple(&self) -> bool {
        !self.spts.is_empty()
    }

    pub(super) fn simple_endpoint(&self) -> String {
        format!(
            "{}/api/send/message/simple-push",
            self.api_url.trim_end_matches('/')
        )
    }

    pub(super) fn simple_body(&self, b: &Batch) -> Value {
        let spt_list = b
            .uids
            .iter()
            .filter_map(|id| self.spts.iter().find(|s| &s.id == id))
            .map(|s| s.token.expose())
            .collect();
        serde_json::to_value(SimplePushBody {
            content: &b.part.content,
            summary: &b.part.summary,
            content_type: self.content_type.code(),
            spt_list,
            url: b.part.url.as_deref(),
        })
        .unwrap_or(Value::Null)
    }

    /// Records what a successful simple-push call did for each SPT of `batch`.
    pub(super) fn account_spts(
        &self,
        env: &Env<'_>,
        batch: &Batch,
        result: &SendResult,
        progress: &mut Progress,
        failed: &mut Vec<String>,
        last_failure: &mut Option<(i64, String)>,
    ) {
        let items: &[Value] = match &result.data {
            Value::Array(items) => items,
            _ => &[],
        };
        let entries: Vec<(Option<String>, RecipientResult)> = items
            .iter()
            .filter_map(|v| {
                let e: RecipientResult = serde_json::from_value(v.clone()).ok()?;
                let spt = serde_json::from_value::<SptResult>(v.clone())
                    .ok()
                    .and_then(|s| s.spt);
                Some((spt, e))
            })
            .collect();
        let by_field = !entries.is_empty() && entries.iter().all(|(spt, _)| spt.is_some());
        let by_position = entries.len() == batch.uids.len();
        let mut outcome: Vec<(String, Option<&RecipientResult>)> = Vec::new();
        if by_field {
            for id in &batch.uids {
                let token = self.spts.iter().find(|s| &s.id == id).map(|s| &s.token);
                let entry = entries
                    .iter()
                    .find(|(spt, _)| spt.as_deref() == token.map(Secret::expose))
                    .map(|(_, e)| e);
                outcome.push((id.clone(), entry));
            }
        } else if by_position {
            for (id, (_, e)) in batch.uids.iter().zip(&entries) {
                outcome.push((id.clone(), Some(e)));
            }
        } else if let Some((_, bad)) = entries.iter().find(|(_, e)| e.code != 1000) {
            tracing::warn!(
                spts = batch.uids.len(),
                entries = entries.len(),
                "WxPusher simple push reported a failure that cannot be matched to an SPT; sending to every SPT of the call again"
            );
            failed.extend(batch.uids.iter().cloned());
            *last_failure = Some((bad.code, env.scrubber.scrub(&bad.status)));
            return;
        } else {
            // Call-level success and no failure reported: the call covered them.
            outcome = batch.uids.iter().map(|id| (id.clone(), None)).collect();
        }
        for (id, entry) in outcome {
            match entry {
                Some(e) if e.code != 1000 => {
                    let status = env.scrubber.scrub(&e.status);
                    if super::classify::names_credential(&status) {
                        tracing::warn!(spt = %id, code = e.code, status = %status, "WxPusher refused an SPT; it will not be sent to again for this message");
                        progress.insert(refused_key(&id));
                    } else {
                        failed.push(id.clone());
                    }
                    *last_failure = Some((e.code, status));
                }
                _ => {
                    progress.insert(uid_key(batch.part_index, &id));
                }
            }
        }
    }

    /// The permanent error for SPTs WxPusher refused, once nothing else is left to retry.
    pub(super) fn refused_error(
        &self,
        progress: &Progress,
        last_failure: Option<&(i64, String)>,
    ) -> Option<DeliveryError> {
        let refused: Vec<String> = self
            .spts
            .iter()
            .filter(|s| progress.contains(&refused_key(&s.id)))
            .map(|s| s.id.clone())
            .collect();
        if refused.is_empty() {
            return None;
        }
        let (code, status) = last_failure
            .cloned()
            .unwrap_or((1001, "SPT refused".to_string()));
        Some(DeliveryError::Upstream {
            service: super::SERVICE,
            code,
            message: format!("simple-push token refused: {status}"),
            reason: Reason::Recipient,
            retryable: false,
            recipients: refused,
        })
    }
}

/// What of a `wxpusher_configs` entry the simple-push checks look at; the app-token keys
/// only by whether they are set.
pub struct SptKeys<'a> {
    pub spts: &'a mut Vec<Secret>,
    pub spts_file: &'a Option<std::path::PathBuf>,
    /// `(key, set)` for `app_token`, `app_token_file`, `uids`, `topic_ids`, `subscriber_tags`.
    pub app_keys: [(&'static str, bool); 5],
}

/// Checks `spts` / `spts_file` of one `wxpusher_configs` entry, reading the file into `spts`.
/// Returns whether the app-token checks are to be skipped: the entry uses simple push, or
/// names no credential at all (reported here, once).
pub fn resolve_config(
    base: &Path,
    at: &str,
    k: SptKeys<'_>,
    report: &mut dyn FnMut(String, String),
) -> bool {
    let (spts, spts_file) = (k.spts, k.spts_file);
    if !spts.is_empty() && spts_file.is_some() {
        report(
            at.to_string(),
            "spts and spts_file are mutually exclusive".into(),
        );
    }
    if let (true, Some(f)) = (spts.is_empty(), spts_file) {
        let p = base.join(f);
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                *spts = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new)
                    .collect();
                if spts.is_empty() {
                    report(
                        format!("{at}.spts_file"),
                        format!("{} holds no SPT (one SPT_… a line)", p.display()),
                    );
                }
            }
            Err(e) => report(
                format!("{at}.spts_file"),
                format!("cannot read {}: {e}", p.display()),
            ),
        }
    }
    let simple = !spts.is_empty() || spts_file.is_some();
    let key = if spts_file.is_some() {
        "spts_file"
    } else {
        "spts"
    };
    if !simple {
        if !k.app_keys[0].1 && !k.app_keys[1].1 {
            report(
                at.to_string(),
                "one of app_token, app_token_file, spts and spts_file is required".into(),
            );
            return true;
        }
        return false;
    }
    let mixed: Vec<&str> = k
        .app_keys
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| k)
        .collect();
    if !mixed.is_empty() {
        report(
            at.to_string(),
            format!(
                "{key} (simple push) cannot be combined with {}: simple push sends to the SPTs' owners only; use another wxpusher_configs entry for the app token",
                mixed.join(", ")
            ),
        );
    }
    let field = if key == "spts_file" {
        format!("{at}.spts_file")
    } else {
        format!("{at}.spts")
    };
    for (k, s) in spts.iter().enumerate() {
        // The value is a secret: errors say where, never what.
        let place = if key == "spts" {
            format!("{field}[{k}]")
        } else {
            format!("{field} (SPT {})", k + 1)
        };
        if !s.expose().starts_with("SPT_") || s.expose().contains(char::is_whitespace) {
            report(place, "is not a simple-push token (SPT_…)".into());
        } else if spts[..k].contains(s) {
            report(place, "repeats an earlier SPT".into());
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spt_id_is_stable_short_and_not_the_token() {
        let a = Spt::new(Secret::new("SPT_secret_one"));
        assert!(a.id.starts_with("spt:"));
        assert_eq!(a.id.len(), 4 + 12);
        assert!(!a.id.contains("secret"));
        assert_eq!(a.id, Spt::new(Secret::new("SPT_secret_one")).id);
        assert_ne!(a.id, Spt::new(Secret::new("SPT_secret_two")).id);
        assert_eq!(format!("{a:?}").matches("SPT_").count(), 0, "{a:?}");
    }
}
