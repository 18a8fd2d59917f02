//! The Official Account's server URL (`/callback/official-account`): the URL check, pushes in
//! plain mode (a SHA-1 `signature` over token, timestamp and nonce) and in safe mode
//! (`encrypt_type=aes`: `msg_signature` over the `Encrypt` too, the WeCom cipher with the app
//! id), and `TEMPLATESENDJOBFINISH` (what became of a template message) as a neutral event:
//! `success` is delivered (to the phone, not read), anything starting `failed` is a failed page.
//! Everything is answered `success` once verified; other pushes change nothing here.

use super::oncall::MessageRef;
use super::oncall::OfficialAccountKeys;
use crate::channels::reach::{Failure, FailureReason, OncallEvent, PageRef, dedupe_key};
use crate::channels::wxcrypt::{CryptoError, InboundError, verify, xml_field};

/// What WeChat expects once a push is taken (an empty body would do as well).
pub const ANSWER: &str = "success";

/// The query of a callback request.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallbackQuery {
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
    pub openid: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

fn required<'a>(v: &'a Option<String>, name: &'static str) -> Result<&'a str, InboundError> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(InboundError::Missing(name))
}

/// The plain signature, checked on every request (safe mode sends it too).
fn check_signature(keys: &OfficialAccountKeys, q: &CallbackQuery) -> Result<(), InboundError> {
    let sig = required(&q.signature, "signature")?;
    let ts = required(&q.timestamp, "timestamp")?;
    let nonce = required(&q.nonce, "nonce")?;
    if verify(sig, &[keys.token.expose(), ts, nonce]) {
        Ok(())
    } else {
        Err(CryptoError::Signature.into())
    }
}

/// The URL check (GET): answers `echostr` unchanged once the signature holds.
pub fn url_check(keys: &OfficialAccountKeys, q: &CallbackQuery) -> Result<String, InboundError> {
    check_signature(keys, q)?;
    Ok(required(&q.echostr, "echostr")?.to_string())
}

/// A push (POST), verified; in safe mode decrypted. Returns the message XML.
pub fn open(
    keys: &OfficialAccountKeys,
    q: &CallbackQuery,
    body: &str,
) -> Result<String, InboundError> {
    check_signature(keys, q)?;
    if q.encrypt_type.as_deref() != Some("aes") {
        return Ok(body.to_string());
    }
    let crypt = keys
        .crypt
        .as_ref()
        .ok_or(InboundError::Crypto(CryptoError::BadKey))?;
    let msg_sig = required(&q.msg_signature, "msg_signature")?;
    let encrypt = xml_field(body, "Encrypt").ok_or(InboundError::Envelope)?;
    let (ts, nonce) = (
        required(&q.timestamp, "timestamp")?,
        required(&q.nonce, "nonce")?,
    );
    if !crypt.verify(msg_sig, ts, nonce, &encrypt) {
        return Err(CryptoError::Signature.into());
    }
    String::from_utf8(crypt.decrypt(&encrypt)?).map_err(|_| InboundError::Message)
}

/// `TEMPLATESENDJOBFINISH` as an event, with its dedupe key (the `MsgID`); `None` for any
/// other push, or a status that is neither `success` nor `failed…`.
pub fn event(message: &str) -> Option<(OncallEvent, String)> {
    if xml_field(message, "MsgType").as_deref() != Some("event")
        || xml_field(message, "Event").as_deref() != Some("TEMPLATESENDJOBFINISH")
    {
        return None;
    }
    // 19 digits: 64 bits, never a float or an i32.
    let msg_id: u64 = xml_field(message, "MsgID")
        .or_else(|| xml_field(message, "MsgId"))?
        .trim()
        .parse()
        .ok()?;
    let openid = xml_field(message, "FromUserName").unwrap_or_default();
    let status = xml_field(message, "Status").unwrap_or_default();
    let page = PageRef::OfficialAccount(MessageRef { msg_id, openid });
    let key = dedupe_key("official_account", &msg_id.to_string());
    let status_l = status.to_ascii_lowercase();
    if status_l == "success" {
        return Some((OncallEvent::Delivered { page }, key));
    }
    let rest = status_l.strip_prefix("failed")?;
    let rest: String = rest
        .trim_start_matches(':')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let reason = match rest.as_str() {
        "user block" => FailureReason::Blocked,
        "freq limit" => FailureReason::Limited,
        _ => FailureReason::Other,
    };
    Some((
        OncallEvent::PageFailed {
            page,
            failure: Failure {
                reason,
                detail: crate::text::truncate(&status, 100),
            },
        },
        key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::wxcrypt::{MsgCrypt, signature};
    use crate::secret::Secret;

    const BLOCKED: &str = "<xml><ToUserName><![CDATA[gh_f5b69a2ea37b]]></ToUserName>\n<FromUserName><![CDATA[ovPQ26Vgx51Ep-HoZqOITMHLk6eg]]></FromUserName>\n<CreateTime>1717466001</CreateTime><MsgType><![CDATA[event]]></MsgType>\n<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>3487542469355618313</MsgID>\n<Status><![CDATA[failed:user block]]></Status></xml>";

    fn keys(crypt: bool) -> OfficialAccountKeys {
        OfficialAccountKeys {
            token: Secret::new("oatoken"),
            crypt: crypt.then(|| {
                MsgCrypt::new(
                    Secret::new("oatoken"),
                    &Secret::new("6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"),
                    "wx0123",
                )
                .unwrap()
            }),
        }
    }

    fn query(ts: &str, nonce: &str) -> CallbackQuery {
        CallbackQuery {
            signature: Some(signature(&["oatoken", ts, nonce])),
            timestamp: Some(ts.into()),
            nonce: Some(nonce.into()),
            openid: Some("ovPQ26Vgx51Ep-HoZqOITMHLk6eg".into()),
            ..Default::default()
        }
    }

    #[test]
    fn user_block_is_a_failed_page_with_a_64_bit_msgid() {
        let (e, k) = event(BLOCKED).unwrap();
        assert_eq!(
            e,
            OncallEvent::PageFailed {
                page: PageRef::OfficialAccount(MessageRef {
                    msg_id: 3487542469355618313,
                    openid: "ovPQ26Vgx51Ep-HoZqOITMHLk6eg".into()
                }),
                failure: Failure {
                    reason: FailureReason::Blocked,
                    detail: "failed:user block".into()
                }
            }
        );
        assert_eq!(k, dedupe_key("official_account", "3487542469355618313"));
    }

    #[test]
    fn every_failed_spelling_fails_and_success_is_delivered() {
        for (status, reason) in [
            ("failed: user block", FailureReason::Blocked),
            ("failed: system failed", FailureReason::Other),
            ("failed:freq limit", FailureReason::Limited),
            ("failed:something new", FailureReason::Other),
        ] {
            let m = BLOCKED.replace("failed:user block", status);
            assert!(
                matches!(event(&m), Some((OncallEvent::PageFailed { ref failure, .. }, _)) if failure.reason == reason),
                "{status}"
            );
        }
        let ok = BLOCKED.replace("failed:user block", "success");
        assert!(matches!(
            event(&ok),
            Some((OncallEvent::Delivered { .. }, _))
        ));
        assert!(event(&BLOCKED.replace("failed:user block", "pending")).is_none());
        assert!(event(&BLOCKED.replace("TEMPLATESENDJOBFINISH", "subscribe")).is_none());
    }

    #[test]
    fn plain_mode_checks_the_signature() {
        let k = keys(false);
        let q = query("1717466001", "n1");
        assert_eq!(open(&k, &q, BLOCKED).unwrap(), BLOCKED);
        let mut forged = query("1717466001", "n1");
        forged.nonce = Some("n2".into());
        assert_eq!(
            open(&k, &forged, BLOCKED),
            Err(InboundError::Crypto(CryptoError::Signature))
        );
        let mut check = query("1", "2");
        check.echostr = Some("e123".into());
        assert_eq!(url_check(&k, &check).unwrap(), "e123");
    }

    #[test]
    fn safe_mode_decrypts_with_the_app_id() {
        let k = keys(true);
        let crypt = k.crypt.clone().unwrap();
        let enc = crypt.encrypt(BLOCKED.as_bytes());
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_f5b69a2ea37b]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
        );
        let mut q = query("1717466001", "n1");
        q.encrypt_type = Some("aes".into());
        q.msg_signature = Some(crypt.sign("1717466001", "n1", &enc));
        assert_eq!(open(&k, &q, &body).unwrap(), BLOCKED);
        q.msg_signature = Some(crypt.sign("1717466001", "n1", "other"));
        assert!(open(&k, &q, &body).is_err());
        // Safe mode without a configured key is refused, not read as plain.
        assert!(open(&keys(false), &q, &body).is_err());
    }
}
