//! The WeCom application callback (`/callback/wecom`): the URL check, the encrypted POST, and
//! a `template_card_event` (a click on a page's 认领/升级 button) as a neutral
//! [`OncallEvent`]. Verifies `msg_signature` before decrypting anything; the decrypted
//! message must name our corp id. Other messages and events are ignored (answered, no event).

use super::card::{ButtonKey, KEY_ACK, KEY_ESCALATE};
use super::oncall::CardRef;
use crate::channels::reach::{Contact, OncallEvent, PageRef, dedupe_key};
pub use crate::channels::wxcrypt::InboundError;
use crate::channels::wxcrypt::{CryptoError, MsgCrypt, xml_field};

/// The query of a callback request.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallbackQuery {
    pub msg_signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
}

fn required<'a>(v: &'a Option<String>, name: &'static str) -> Result<&'a str, InboundError> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(InboundError::Missing(name))
}

/// The URL check (GET): the signature over the echostr, then its plaintext, which is the
/// whole answer.
pub fn url_check(crypt: &MsgCrypt, q: &CallbackQuery) -> Result<Vec<u8>, InboundError> {
    let sig = required(&q.msg_signature, "msg_signature")?;
    let ts = required(&q.timestamp, "timestamp")?;
    let nonce = required(&q.nonce, "nonce")?;
    let echo = required(&q.echostr, "echostr")?;
    if !crypt.verify(sig, ts, nonce, echo) {
        return Err(CryptoError::Signature.into());
    }
    Ok(crypt.decrypt(echo)?)
}

/// An encrypted POST: the signature over its `Encrypt`, then the decrypted message XML.
pub fn open(crypt: &MsgCrypt, q: &CallbackQuery, body: &str) -> Result<String, InboundError> {
    let sig = required(&q.msg_signature, "msg_signature")?;
    let ts = required(&q.timestamp, "timestamp")?;
    let nonce = required(&q.nonce, "nonce")?;
    let encrypt = xml_field(body, "Encrypt").ok_or(InboundError::Envelope)?;
    if !crypt.verify(sig, ts, nonce, &encrypt) {
        return Err(CryptoError::Signature.into());
    }
    String::from_utf8(crypt.decrypt(&encrypt)?).map_err(|_| InboundError::Message)
}

/// A decrypted message as an event, with the key it is deduplicated by
/// (`TaskId`+`FromUserName`+`EventKey`): `None` for anything but a click on one of our
/// buttons.
pub fn event(message: &str) -> Option<(OncallEvent, String)> {
    if xml_field(message, "MsgType").as_deref() != Some("event")
        || xml_field(message, "Event").as_deref() != Some("template_card_event")
    {
        return None;
    }
    let userid = xml_field(message, "FromUserName").filter(|s| !s.is_empty())?;
    let key = xml_field(message, "EventKey")?;
    let task_id = xml_field(message, "TaskId").filter(|s| !s.is_empty())?;
    let response_code = xml_field(message, "ResponseCode").filter(|s| !s.is_empty());
    let parsed = ButtonKey::parse(&key)?;
    let dedupe = dedupe_key(
        "wecom",
        &format!("{task_id}\n{}\n{key}", userid.to_lowercase()),
    );
    let by = Contact::WecomApp { userid };
    let page = PageRef::WecomCard(CardRef {
        task_id,
        response_code,
    });
    let event = match parsed.action {
        KEY_ACK => OncallEvent::Ack {
            by,
            incident: Some(parsed.incident),
            page,
        },
        KEY_ESCALATE => OncallEvent::Escalate {
            by,
            incident: parsed.incident,
            from_step: parsed.step,
            page,
        },
        _ => return None,
    };
    Some((event, dedupe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    const KEY: &str = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt";

    fn click(key: &str, user: &str) -> String {
        format!(
            "<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>\
<CreateTime>123456789</CreateTime><MsgType><![CDATA[event]]></MsgType>\
<Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[{key}]]></EventKey>\
<TaskId><![CDATA[K7Q2-1-zhangsan-1h3k9]]></TaskId><CardType><![CDATA[button_interaction]]></CardType>\
<ResponseCode><![CDATA[RC1]]></ResponseCode><AgentID>1000002</AgentID></xml>"
        )
    }

    #[test]
    fn a_click_on_ack_is_an_ack_by_the_clicker() {
        let (e, k) = event(&click("ack:K7Q2:1", "ZhangSan")).unwrap();
        assert_eq!(
            e,
            OncallEvent::Ack {
                by: Contact::WecomApp {
                    userid: "ZhangSan".into()
                },
                incident: Some("K7Q2".into()),
                page: PageRef::WecomCard(CardRef {
                    task_id: "K7Q2-1-zhangsan-1h3k9".into(),
                    response_code: Some("RC1".into())
                }),
            }
        );
        // The same click re-sent (any case of the userid) has the same key; another button not.
        assert_eq!(k, event(&click("ack:K7Q2:1", "zhangsan")).unwrap().1);
        assert_ne!(k, event(&click("escalate:K7Q2:1", "ZhangSan")).unwrap().1);
    }

    #[test]
    fn a_click_on_escalate_carries_the_step() {
        let (e, _) = event(&click("escalate:K7Q2:3", "LiSi")).unwrap();
        assert!(matches!(
            e,
            OncallEvent::Escalate { from_step: 3, ref incident, .. } if incident == "K7Q2"
        ));
    }

    #[test]
    fn other_messages_and_foreign_keys_are_no_event() {
        assert!(event(&click("key111", "u")).is_none());
        assert!(event(&click("ack:K7Q2:x", "u")).is_none());
        let text = "<xml><MsgType><![CDATA[text]]></MsgType><Content>ack K7Q2</Content></xml>";
        assert!(event(text).is_none());
    }

    #[test]
    fn a_post_is_verified_then_decrypted_and_a_forged_one_refused() {
        let crypt = MsgCrypt::new(Secret::new("tok1"), &Secret::new(KEY), "ww1").unwrap();
        let enc = crypt.encrypt(click("ack:K7Q2:1", "ZhangSan").as_bytes());
        let body = format!(
            "<xml><ToUserName><![CDATA[ww1]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
        );
        let mut q = CallbackQuery {
            msg_signature: Some(crypt.sign("1700000000", "n1", &enc)),
            timestamp: Some("1700000000".into()),
            nonce: Some("n1".into()),
            echostr: None,
        };
        let msg = open(&crypt, &q, &body).unwrap();
        assert!(event(&msg).is_some());
        q.nonce = Some("n2".into());
        assert_eq!(
            open(&crypt, &q, &body),
            Err(InboundError::Crypto(CryptoError::Signature))
        );
        q.msg_signature = None;
        assert_eq!(
            open(&crypt, &q, &body),
            Err(InboundError::Missing("msg_signature"))
        );
    }

    #[test]
    fn the_url_check_answers_the_sample_plaintext() {
        let crypt = MsgCrypt::new(
            Secret::new("hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"),
            &Secret::new(KEY),
            "ww1436e0e65a779aee",
        )
        .unwrap();
        let q = CallbackQuery {
            msg_signature: Some("012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb".into()),
            timestamp: Some("1476416373".into()),
            nonce: Some("47744683".into()),
            echostr: Some("fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==".into()),
        };
        assert_eq!(url_check(&crypt, &q).unwrap(), b"1288432023552776189");
    }
}
