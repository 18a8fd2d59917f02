//! The message crypto WeCom and the Official Account (safe mode) share for their callbacks
//! (`WXBizMsgCrypt`): the SHA-1 signatures over sorted strings, AES-256-CBC with the
//! EncodingAESKey, and the small flat XML those callbacks carry. No I/O; the endpoints are
//! each channel's `inbound.rs`.
//!
//! The EncodingAESKey is 43 random alphanumerics: the last character's low bits are usually
//! set, so it is not canonical base64 and is decoded with trailing bits allowed, as WeCom's
//! own samples need. Padding is PKCS#7 to a 32-byte block, not AES's 16.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// Standard alphabet, padding optional, trailing bits allowed: what an EncodingAESKey needs.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The block WeCom pads to (PKCS#7 with 32-byte blocks).
const PAD_BLOCK: usize = 32;

/// Why a callback was refused. The texts name no key, token or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("EncodingAESKey must be 43 characters of base64 decoding to 32 bytes")]
    BadKey,
    #[error("signature does not match")]
    Signature,
    #[error("ciphertext is not base64 of whole AES blocks")]
    Ciphertext,
    #[error("decrypted message is malformed")]
    Plaintext,
    #[error("message is for another receiver id")]
    ReceiveId,
}

/// Why a callback was refused (answered 401/400, nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("missing query parameter {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("body is not the callback XML with an Encrypt element")]
    Envelope,
    #[error("decrypted message is not UTF-8 XML")]
    Message,
}

/// `hex(sha1(concat(sort(parts))))`: the plain Official Account signature (token, timestamp,
/// nonce) and WeCom's `msg_signature` (token, timestamp, nonce, encrypt).
pub fn signature(parts: &[&str]) -> String {
    let mut sorted: Vec<&str> = parts.to_vec();
    sorted.sort_unstable();
    let mut h = sha1_smol::Sha1::new();
    for p in sorted {
        h.update(p.as_bytes());
    }
    h.digest().to_string()
}

/// Whether `given` is the signature of `parts`, compared in constant time.
pub fn verify(given: &str, parts: &[&str]) -> bool {
    let expected = signature(parts);
    given.len() == expected.len()
        && bool::from(
            given
                .to_ascii_lowercase()
                .as_bytes()
                .ct_eq(expected.as_bytes()),
        )
}

/// One callback's keys: the token that signs, the AES key and the id the plaintext must end
/// with (the corp id for WeCom, the app id for the Official Account).
#[derive(Clone)]
pub struct MsgCrypt {
    token: Secret,
    key: [u8; 32],
    receive_id: String,
}

impl std::fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgCrypt")
            .field("receive_id", &self.receive_id)
            .finish_non_exhaustive()
    }
}

/// Decodes an EncodingAESKey (43 characters) leniently into the 32-byte AES key.
pub fn decode_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    if encoding_aes_key.len() != 43 {
        return Err(CryptoError::BadKey);
    }
    let bytes = LENIENT
        .decode(encoding_aes_key)
        .map_err(|_| CryptoError::BadKey)?;
    bytes.try_into().map_err(|_| CryptoError::BadKey)
}

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

impl MsgCrypt {
    pub fn new(
        token: Secret,
        encoding_aes_key: &Secret,
        receive_id: impl Into<String>,
    ) -> Result<MsgCrypt, CryptoError> {
        Ok(MsgCrypt {
            token,
            key: decode_aes_key(encoding_aes_key.expose())?,
            receive_id: receive_id.into(),
        })
    }

    /// Whether `msg_signature` signs (token, timestamp, nonce, encrypt).
    pub fn verify(&self, msg_signature: &str, timestamp: &str, nonce: &str, encrypt: &str) -> bool {
        verify(
            msg_signature,
            &[self.token.expose(), timestamp, nonce, encrypt],
        )
    }

    /// The signature of (token, timestamp, nonce, encrypt), for a passive reply or a test.
    pub fn sign(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature(&[self.token.expose(), timestamp, nonce, encrypt])
    }

    /// Decrypts a base64 `Encrypt`/`echostr` and checks the receiver id; returns the message.
    pub fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>, CryptoError> {
        let mut buf = base64::engine::general_purpose::STANDARD
            .decode(encrypt.trim())
            .map_err(|_| CryptoError::Ciphertext)?;
        if buf.is_empty() || buf.len() % PAD_BLOCK != 0 {
            return Err(CryptoError::Ciphertext);
        }
        let dec = Dec::new((&self.key).into(), self.key[..16].into());
        let plain = dec
            .decrypt_padded_mut::<cbc::cipher::block_padding::NoPadding>(&mut buf)
            .map_err(|_| CryptoError::Ciphertext)?;
        let pad = *plain.last().ok_or(CryptoError::Plaintext)? as usize;
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(CryptoError::Plaintext);
        }
        let body = &plain[..plain.len() - pad];
        if body.len() < 20 {
            return Err(CryptoError::Plaintext);
        }
        let len = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
        let rest = &body[20..];
        if len > rest.len() {
            return Err(CryptoError::Plaintext);
        }
        let (msg, receive_id) = rest.split_at(len);
        if receive_id != self.receive_id.as_bytes() {
            return Err(CryptoError::ReceiveId);
        }
        Ok(msg.to_vec())
    }

    /// Encrypts `msg` with a random 16-byte prefix (passive replies, and the tests' mocks).
    pub fn encrypt(&self, msg: &[u8]) -> String {
        self.encrypt_with(rand::random::<[u8; 16]>(), msg)
    }

    /// Encrypts with a given prefix (deterministic, for tests).
    pub fn encrypt_with(&self, random: [u8; 16], msg: &[u8]) -> String {
        let mut plain = Vec::with_capacity(20 + msg.len() + self.receive_id.len() + PAD_BLOCK);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        plain.extend_from_slice(msg);
        plain.extend_from_slice(self.receive_id.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let len = plain.len();
        let enc = Enc::new((&self.key).into(), self.key[..16].into());
        let out = enc
            .encrypt_padded_mut::<cbc::cipher::block_padding::NoPadding>(&mut plain, len)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(out)
    }
}

/// Reads and checks an entry's callback keys (`callback_token[_file]`,
/// `callback_aes_key[_file]`): each optional, the AES key a 43-character EncodingAESKey, and
/// the key never without the token; with `pair`, the token never without the key either
/// (WeCom always encrypts; the Official Account's plain mode has a token only).
pub fn check_callback_keys(
    cx: &mut crate::channels::Check<'_>,
    token: (&mut Option<Secret>, &Option<std::path::PathBuf>),
    aes_key: (&mut Option<Secret>, &Option<std::path::PathBuf>),
    pair: bool,
) {
    let at = cx.at.clone();
    cx.secret("callback_token", token.0, token.1, false);
    cx.secret("callback_aes_key", aes_key.0, aes_key.1, false);
    if let Some(k) = aes_key.0.as_ref()
        && decode_aes_key(k.expose()).is_err()
    {
        let key = if aes_key.1.is_some() {
            "callback_aes_key_file"
        } else {
            "callback_aes_key"
        };
        cx.report(
            format!("{at}.{key}"),
            "must be the 43-character EncodingAESKey shown in the callback settings".into(),
        );
    }
    let given = |v: &Option<Secret>, f: &Option<std::path::PathBuf>| v.is_some() || f.is_some();
    match (given(token.0, token.1), given(aes_key.0, aes_key.1)) {
        (false, true) => cx.report(
            at,
            "callback_aes_key needs callback_token (both come from the same callback settings)"
                .into(),
        ),
        (true, false) if pair => cx.report(
            at,
            "callback_token needs callback_aes_key (both come from the same callback settings)"
                .into(),
        ),
        _ => {}
    }
}

/// The text of the direct child element `name` of a flat XML document's root
/// (`<xml><Name><![CDATA[v]]></Name>…</xml>` or `<Name>v</Name>`), entities unescaped outside
/// CDATA. Enough for the fixed, shallow documents WeChat sends; nested children are skipped
/// whole, so a value inside another element's CDATA is never mistaken for a field.
pub fn xml_field(doc: &str, name: &str) -> Option<String> {
    let body = doc.trim();
    let body = body.strip_prefix("<?xml").map_or(body, |rest| {
        rest.find("?>").map_or(rest, |i| rest[i + 2..].trim_start())
    });
    let inner = body.strip_prefix("<xml>")?;
    let inner = inner.trim_end().strip_suffix("</xml>")?;
    let mut rest = inner;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return None;
        }
        let open_end = rest.find('>')?;
        let tag = rest.strip_prefix('<')?.get(..open_end - 1)?;
        if tag.starts_with('/') || tag.is_empty() {
            return None;
        }
        let (tag, self_closing) = match tag.strip_suffix('/') {
            Some(t) => (t.trim(), true),
            None => (tag.trim(), false),
        };
        rest = &rest[open_end + 1..];
        if self_closing {
            if tag == name {
                return Some(String::new());
            }
            continue;
        }
        let close = format!("</{tag}>");
        let (value, after) = if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let end = cdata.find("]]>")?;
            let after = cdata[end + 3..].trim_start().strip_prefix(close.as_str())?;
            (cdata[..end].to_string(), after)
        } else {
            let end = rest.find(close.as_str())?;
            (unescape(&rest[..end]), &rest[end + close.len()..])
        };
        if tag == name {
            return Some(value);
        }
        rest = after;
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    // WeCom's own sample (WXBizMsgCrypt3.py's Sample.py).
    const TOKEN: &str = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo";
    const KEY: &str = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt";
    const CORP: &str = "ww1436e0e65a779aee";
    const ECHO: &str =
        "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==";
    const POST_ENCRYPT: &str = "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+";

    fn crypt() -> MsgCrypt {
        MsgCrypt::new(Secret::new(TOKEN), &Secret::new(KEY), CORP).unwrap()
    }

    #[test]
    fn the_sample_key_is_not_canonical_base64_and_decodes_leniently() {
        let strict = base64::engine::general_purpose::STANDARD.decode(format!("{KEY}="));
        assert!(
            strict.is_err(),
            "the sample key's last character has trailing bits"
        );
        assert_eq!(decode_aes_key(KEY).unwrap().len(), 32);
        assert_eq!(decode_aes_key("short"), Err(CryptoError::BadKey));
    }

    #[test]
    fn url_check_vector_verifies_and_decrypts() {
        let c = crypt();
        assert!(c.verify(
            "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
            "1476416373",
            "47744683",
            ECHO
        ));
        assert!(!c.verify(
            "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebec",
            "1476416373",
            "47744683",
            ECHO
        ));
        assert_eq!(c.decrypt(ECHO).unwrap(), b"1288432023552776189");
    }

    #[test]
    fn post_vector_verifies_and_decrypts_with_22_bytes_of_padding() {
        let c = crypt();
        assert!(c.verify(
            "0c3914025cb4b4d68103f6bfc8db550f79dcf48e",
            "1476422779",
            "1597212914",
            POST_ENCRYPT
        ));
        let msg = String::from_utf8(c.decrypt(POST_ENCRYPT).unwrap()).unwrap();
        assert_eq!(xml_field(&msg, "Content").as_deref(), Some("你好"));
        assert_eq!(xml_field(&msg, "ToUserName").as_deref(), Some(CORP));
        // The pad: 32 - (16 + 4 + len(msg) + len(corp)) % 32.
        let total = 16 + 4 + msg.len() + CORP.len();
        assert_eq!(32 - total % 32, 22);
    }

    #[test]
    fn another_corp_id_is_refused() {
        let other = MsgCrypt::new(Secret::new(TOKEN), &Secret::new(KEY), "ww0000").unwrap();
        assert_eq!(other.decrypt(ECHO), Err(CryptoError::ReceiveId));
    }

    #[test]
    fn round_trip_pads_to_32_byte_blocks_including_a_full_block() {
        let c = crypt();
        for len in [0usize, 1, 11, 12, 13, 44, 100] {
            let msg = vec![b'a'; len];
            let enc = c.encrypt(&msg);
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&enc)
                .unwrap();
            assert_eq!(raw.len() % 32, 0);
            assert_eq!(c.decrypt(&enc).unwrap(), msg);
        }
        // 16 + 4 + 12 + 18 = 50 → 14 of padding; 16 + 4 + 44 + 18 = 82 → 14; aligned → 32.
        let aligned = c.encrypt(&[b'x'; 26]);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&aligned)
            .unwrap();
        assert_eq!(
            raw.len(),
            96,
            "an aligned plaintext gets a whole block of padding"
        );
    }

    #[test]
    fn tampered_ciphertext_is_refused_not_panicking() {
        let c = crypt();
        assert_eq!(c.decrypt("not base64!"), Err(CryptoError::Ciphertext));
        assert_eq!(c.decrypt("QUJD"), Err(CryptoError::Ciphertext));
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(ECHO)
            .unwrap();
        raw[40] ^= 1;
        let bad = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(c.decrypt(&bad).is_err());
    }

    #[test]
    fn xml_fields_skip_nested_elements_and_read_cdata_and_text() {
        let doc =
            "<xml><A><![CDATA[<B>no</B>]]></A><N><B>nested</B></N><B>yes &amp; more</B><E/></xml>";
        assert_eq!(xml_field(doc, "A").as_deref(), Some("<B>no</B>"));
        assert_eq!(xml_field(doc, "B").as_deref(), Some("yes & more"));
        assert_eq!(xml_field(doc, "E").as_deref(), Some(""));
        assert_eq!(xml_field(doc, "Z"), None);
        assert_eq!(xml_field("<notxml/>", "A"), None);
    }
}
