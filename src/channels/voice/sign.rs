//! The two vendors' request signatures, written from their documentation (no SDK):
//! Aliyun's `ACS3-HMAC-SHA256` (V3) and Tencent Cloud's `TC3-HMAC-SHA256`. Both are checked
//! against the worked examples the vendors publish.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// RFC 3986 percent-encoding: unreserved `A-Za-z0-9-_.~` kept, everything else `%XX`
/// (space is `%20`, `*` is `%2A`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An Aliyun V3 request to sign: the query parameters and the headers to sign (`host`, the
/// `x-acs-*` ones, `content-type` if sent), by lower-case name.
pub struct AcsRequest<'a> {
    pub method: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The canonical query string: names and values encoded, sorted by name.
pub fn acs_canonical_query(query: &[(String, String)]) -> String {
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    q.sort();
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `(hex(sha256(CanonicalRequest)), Authorization)` for Aliyun's `ACS3-HMAC-SHA256`.
pub fn acs3(
    req: &AcsRequest<'_>,
    access_key_id: &str,
    access_key_secret: &str,
) -> (String, String) {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{}\n/\n{}\n{}\n{}\n{}",
        req.method,
        acs_canonical_query(req.query),
        canonical_headers,
        signed,
        sha256_hex(req.body)
    );
    let hashed = sha256_hex(canonical.as_bytes());
    let to_sign = format!("ACS3-HMAC-SHA256\n{hashed}");
    let signature = hex::encode(hmac(access_key_secret.as_bytes(), to_sign.as_bytes()));
    (
        hashed,
        format!(
            "ACS3-HMAC-SHA256 Credential={access_key_id},SignedHeaders={signed},Signature={signature}"
        ),
    )
}

/// A Tencent Cloud API 3.0 request to sign (`POST /`, no query string).
pub struct Tc3Request<'a> {
    pub service: &'a str,
    /// Signed headers by lower-case name; values are lower-cased too, as TC3 asks.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
    pub timestamp: i64,
}

/// `(hex(sha256(CanonicalRequest)), Authorization)` for `TC3-HMAC-SHA256`.
pub fn tc3(req: &Tc3Request<'_>, secret_id: &str, secret_key: &str) -> (String, String) {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        sha256_hex(req.payload)
    );
    let hashed = sha256_hex(canonical.as_bytes());
    let date = chrono::DateTime::from_timestamp(req.timestamp, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let scope = format!("{date}/{}/tc3_request", req.service);
    let to_sign = format!("TC3-HMAC-SHA256\n{}\n{scope}\n{hashed}", req.timestamp);
    let k_date = hmac(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac(&k_date, req.service.as_bytes());
    let k_signing = hmac(&k_service, b"tc3_request");
    let signature = hex::encode(hmac(&k_signing, to_sign.as_bytes()));
    (
        hashed,
        format!(
            "TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// help.aliyun.com 2593177's worked example (RunInstances on ECS).
    #[test]
    fn aliyun_acs3_matches_the_published_example() {
        let query = vec![
            (
                "ImageId".to_string(),
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd".to_string(),
            ),
            ("RegionId".to_string(), "cn-shanghai".to_string()),
        ];
        let headers: Vec<(String, String)> = [
            ("host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", "2023-10-26T10:22:32Z"),
            ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
            (
                "x-acs-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (hashed, auth) = acs3(
            &AcsRequest {
                method: "POST",
                query: &query,
                headers: &headers,
                body: b"",
            },
            "YourAccessKeyId",
            "YourAccessKeySecret",
        );
        assert_eq!(
            hashed,
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            auth,
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    /// cloud.tencent.com 362/4208's worked example (DescribeInstances on CVM).
    #[test]
    fn tencent_tc3_matches_the_published_example() {
        let payload = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        assert_eq!(
            sha256_hex(payload),
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        let req = Tc3Request {
            service: "cvm",
            headers: &[
                ("content-type", "application/json; charset=utf-8"),
                ("host", "cvm.tencentcloudapi.com"),
            ],
            payload,
            timestamp: 1551113065,
        };
        let (hashed, auth) = tc3(
            &req,
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        );
        assert_eq!(
            hashed,
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            auth,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(percent_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
        assert_eq!(
            acs_canonical_query(&[("b".into(), "2".into()), ("a".into(), "{\"x\":1}".into())]),
            "a=%7B%22x%22%3A1%7D&b=2"
        );
    }
}
