//! Duo request signing (Admin, Auth and Accounts APIs), as `duo_client_python` does it.
//!
//! Pure functions: no I/O, no clock. The collector signs with them and the simulator verifies
//! with them, so both sides share one implementation that is pinned by Duo's own test vectors.

pub use crate::sig_version::SigVersion;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;
use sha2::{Digest, Sha512};

/// Python's `urllib.parse.quote(x, safe='~')`: everything but `A-Z a-z 0-9 - _ . ~` is escaped,
/// with upper-case hex.
const DUO_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// SHA-512 of the empty string: the body line of every GET in v5.
pub const EMPTY_SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

/// Everything a signature covers. `params` are the decoded (key, value) pairs, in any order.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    pub date: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub params: &'a [(String, String)],
    /// The raw request body (v5 only; empty for GET).
    pub body: &'a [u8],
    /// Every `X-Duo-*` header sent (v5 only), names in any case.
    pub x_duo_headers: &'a [(String, String)],
}

fn escape(s: &str) -> String {
    utf8_percent_encode(s, DUO_ESCAPE).to_string()
}

/// `duo_client.client.canon_params`: escape keys and values, sort by escaped key then value.
pub fn canon_params(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(k, v)| (escape(k), escape(v))).collect();
    encoded.sort();
    let mut out = String::with_capacity(encoded.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// SHA-512 hex of the NUL-joined, lower-cased, name-sorted `X-Duo-*` headers.
pub fn canon_x_duo_headers(headers: &[(String, String)]) -> String {
    let mut lowered: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    lowered.sort();
    let joined: Vec<&str> = lowered.iter().flat_map(|(k, v)| [k.as_str(), *v]).collect();
    sha512_hex(joined.join("\0").as_bytes())
}

pub fn sha512_hex(data: &[u8]) -> String {
    hex::encode(Sha512::digest(data))
}

/// The canonical string that is signed.
pub fn canonicalize(version: SigVersion, input: &SignInput<'_>) -> String {
    let mut lines = vec![
        input.date.to_string(),
        input.method.to_ascii_uppercase(),
        input.host.to_ascii_lowercase(),
        input.path.to_string(),
        canon_params(input.params),
    ];
    if version == SigVersion::V5 {
        lines.push(sha512_hex(input.body));
        lines.push(canon_x_duo_headers(input.x_duo_headers));
    }
    lines.join("\n")
}

/// Lower-case hex HMAC of the canonical string, keyed with the secret key.
pub fn signature_hex(version: SigVersion, skey: &[u8], input: &SignInput<'_>) -> String {
    let canonical = canonicalize(version, input);
    match version {
        SigVersion::V2Sha1 => {
            // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
            let mut mac = Hmac::<Sha1>::new_from_slice(skey).expect("HMAC takes any key length");
            mac.update(canonical.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        SigVersion::V2Sha512 | SigVersion::V5 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(skey).expect("HMAC takes any key length");
            mac.update(canonical.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
    }
}

/// `Basic base64(ikey:hexsig)`.
pub fn authorization_header(ikey: &str, signature_hex: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{ikey}:{signature_hex}"));
    format!("Basic {token}")
}

/// RFC 2822 date in the exact form `email.utils.formatdate()` produces.
pub fn rfc2822_date(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S -0000").to_string()
}

/// Constant-time comparison of two signatures, for the simulator's verifier.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const DOC_IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
    const DOC_SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";
    const DOC_HOST: &str = "api-XXXXXXXX.duosecurity.com";
    const DOC_DATE: &str = "Tue, 21 Aug 2012 17:29:18 -0000";

    fn input<'a>(
        method: &'a str,
        path: &'a str,
        params: &'a [(String, String)],
        body: &'a [u8],
    ) -> SignInput<'a> {
        SignInput {
            date: DOC_DATE,
            method,
            host: DOC_HOST,
            path,
            params,
            body,
            x_duo_headers: &[],
        }
    }

    // Vector A: the Duo documentation example.
    #[test]
    fn vector_a_docs_example() {
        let params = p(&[("realname", "First Last"), ("username", "root")]);
        let inp = input("POST", "/accounts/v1/account/list", &params, b"");
        assert_eq!(
            canonicalize(SigVersion::V2Sha1, &inp),
            "Tue, 21 Aug 2012 17:29:18 -0000\nPOST\napi-xxxxxxxx.duosecurity.com\n/accounts/v1/account/list\nrealname=First%20Last&username=root"
        );
        assert_eq!(
            signature_hex(SigVersion::V2Sha1, DOC_SKEY.as_bytes(), &inp),
            "2d97d6166319781b5a3a07af39d366f491234edc"
        );
        let sig512 = signature_hex(SigVersion::V2Sha512, DOC_SKEY.as_bytes(), &inp);
        assert_eq!(sig512, "1bffb8924348f7db7da9e7d7d749ded93aafd02d8e904960da7b96c57510220185a64a2827ee8f24ac5d30802a9ee97e59de44b304b18242f0d596d15a8122af");
        assert_eq!(
            authorization_header(DOC_IKEY, &sig512),
            "Basic RElXSjhYNkFFWU9SNU9NQzZUUTE6MWJmZmI4OTI0MzQ4ZjdkYjdkYTllN2Q3ZDc0OWRlZDkzYWFmZDAyZDhlOTA0OTYwZGE3Yjk2YzU3NTEwMjIwMTg1YTY0YTI4MjdlZThmMjRhYzVkMzA4MDJhOWVlOTdlNTlkZTQ0YjMwNGIxODI0MmYwZDU5NmQxNWE4MTIyYWY="
        );
    }

    // Vector B: v5 with a JSON body.
    #[test]
    fn vector_b_v5_json_body() {
        let params = p(&[("realname", "First Last")]);
        let body = br#"{"txid":"f22b1678-252a-4070-b176-0ca2be7319fd"}"#;
        let inp = input("POST", "/accounts/v1/account/list", &params, body);
        assert_eq!(
            signature_hex(SigVersion::V5, DOC_SKEY.as_bytes(), &inp),
            "78f4327f831173cc78d0907e913e3c5a28fe72dd4545a342586bb67181f2ba393d20911e870362f6faba3dc6f7e9db5e93aed2f3bfc110c6dadaff4dc6179e0b"
        );
    }

    fn unicode_params() -> Vec<(String, String)> {
        p(&[
            (
                "\u{469a}\u{287b}\u{35d0}\u{8ef3}\u{6727}\u{502a}\u{0810}\u{d091}\u{c8}\u{c170}",
                "\u{0f45}\u{1a76}\u{341a}\u{654c}\u{c23f}\u{9b09}\u{abe2}\u{8343}\u{1b27}\u{60d0}",
            ),
            (
                "\u{7449}\u{7e4b}\u{ccfb}\u{59ff}\u{fe5f}\u{83b7}\u{adcc}\u{900c}\u{cfd1}\u{7813}",
                "\u{8db7}\u{5022}\u{92d3}\u{42ef}\u{207d}\u{8730}\u{acfe}\u{5617}\u{0946}\u{4e30}",
            ),
            (
                "\u{7470}\u{9314}\u{901c}\u{9eae}\u{40d8}\u{4201}\u{82d8}\u{8c70}\u{1d31}\u{a042}",
                "\u{17d9}\u{0ba8}\u{9358}\u{aadf}\u{a42a}\u{48be}\u{fb96}\u{6fe9}\u{b7ff}\u{32f3}",
            ),
            (
                "\u{c2c5}\u{2c1d}\u{2620}\u{3617}\u{96b3}F\u{8605}\u{20e8}\u{ac21}\u{5934}",
                "\u{fba9}\u{41aa}\u{bd83}\u{840b}\u{2615}\u{3e6e}\u{652d}\u{a8b5}\u{d56b}U",
            ),
        ])
    }

    const UNICODE_CANON: &str = "%E4%9A%9A%E2%A1%BB%E3%97%90%E8%BB%B3%E6%9C%A7%E5%80%AA%E0%A0%90%ED%82%91%C3%88%EC%85%B0=%E0%BD%85%E1%A9%B6%E3%90%9A%E6%95%8C%EC%88%BF%E9%AC%89%EA%AF%A2%E8%8D%83%E1%AC%A7%E6%83%90&%E7%91%89%E7%B9%8B%EC%B3%BB%E5%A7%BF%EF%B9%9F%E8%8E%B7%EA%B7%8C%E9%80%8C%EC%BF%91%E7%A0%93=%E8%B6%B7%E5%80%A2%E9%8B%93%E4%8B%AF%E2%81%BD%E8%9C%B0%EA%B3%BE%E5%98%97%E0%A5%86%E4%B8%B0&%E7%91%B0%E9%8C%94%E9%80%9C%E9%BA%AE%E4%83%98%E4%88%81%E8%8B%98%E8%B1%B0%E1%B4%B1%EA%81%82=%E1%9F%99%E0%AE%A8%E9%8D%98%EA%AB%9F%EA%90%AA%E4%A2%BE%EF%AE%96%E6%BF%A9%EB%9F%BF%E3%8B%B3&%EC%8B%85%E2%B0%9D%E2%98%A0%E3%98%97%E9%9A%B3F%E8%98%85%E2%83%A8%EA%B0%A1%E5%A4%B4=%EF%AE%A9%E4%86%AA%EB%B6%83%E8%90%8B%E2%98%95%E3%B9%AE%E6%94%AD%EA%A2%B5%ED%95%ABU";

    // Vector C: duo_client_python tests/test_client.py.
    #[test]
    fn vector_c_python_client_tests() {
        let params = unicode_params();
        assert_eq!(canon_params(&params), UNICODE_CANON);
        let inp = SignInput {
            date: "Fri, 07 Dec 2012 17:18:00 -0000",
            method: "PoSt",
            host: "foO.BAr52.cOm",
            path: "/Foo/BaR2/qux",
            params: &params,
            body: b"",
            x_duo_headers: &[],
        };
        assert_eq!(
            canonicalize(SigVersion::V2Sha1, &inp),
            format!("Fri, 07 Dec 2012 17:18:00 -0000\nPOST\nfoo.bar52.com\n/Foo/BaR2/qux\n{UNICODE_CANON}")
        );
        let skey = b"gtdfxv9YgVBYcF6dl2Eq17KUQJN2PLM2ODVTkvoT";
        let sha1 = signature_hex(SigVersion::V2Sha1, skey, &inp);
        assert_eq!(sha1, "f01811cbbf9561623ab45b893096267fd46a5178");
        assert_eq!(
            authorization_header("test_ikey", &sha1),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode("test_ikey:f01811cbbf9561623ab45b893096267fd46a5178")
            )
        );
        assert_eq!(
            signature_hex(SigVersion::V2Sha512, skey, &inp),
            "0508065035a03b2a1de2f453e629e791d180329e157f65df6b3e0f08299d4321e1c5c7a7c7ee6b9e5fc80d1fb6fbf3ad5eb7c44dd3b3985a02c37aca53ec3698"
        );
    }

    #[test]
    fn vector_c_canonical_params_cases() {
        assert_eq!(canon_params(&[]), "");
        assert_eq!(
            canon_params(&p(&[("realname", "First Last")])),
            "realname=First%20Last"
        );
        assert_eq!(
            canon_params(&p(&[("foo_bar", "2"), ("foo", "1")])),
            "foo=1&foo_bar=2"
        );
        assert_eq!(
            canon_params(&p(&[
                ("words", "First Last"),
                ("success", "true"),
                ("digit", "5")
            ])),
            "digit=5&success=true&words=First%20Last"
        );
        assert_eq!(
            canon_params(&p(&[
                ("digits", "0123456789"),
                ("letters", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
                ("punctuation", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
                ("whitespace", "\t\n\x0b\x0c\r "),
            ])),
            "digits=0123456789&letters=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ&punctuation=%21%22%23%24%25%26%27%28%29%2A%2B%2C-.%2F%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E_%60%7B%7C%7D~&whitespace=%09%0A%0B%0C%0D%20"
        );
        assert_eq!(
            canon_params(&p(&[("password", "A(!'*)"), ("x", "H ell?o")])),
            "password=A%28%21%27%2A%29&x=H%20ell%3Fo"
        );
    }

    #[test]
    fn vector_c_v5_json_and_headers() {
        let body = br#"{"alpha":["a","b","c","d"],"data":"abc123","info":{"another":2,"test":1}}"#;
        let hashed_body = "c30ca4ffc7fe4272aa6ae7a3c94cf71c11ed8ae7aaa32e81a401a59f1cef0866ccb02304380cdc48a813b1566c457653fa62736022f0cfeadcec8cd7c6233480";
        assert_eq!(sha512_hex(body), hashed_body);
        let one = p(&[("X-Duo-Header-1", "header_value_1")]);
        let inp = SignInput {
            date: "Tue, 17 Nov 2020 14:12:00",
            method: "POST",
            host: "foO.BaR52.cOm",
            path: "/Foo/BaR2/qux",
            params: &[],
            body,
            x_duo_headers: &one,
        };
        assert_eq!(
            canonicalize(SigVersion::V5, &inp),
            format!("Tue, 17 Nov 2020 14:12:00\nPOST\nfoo.bar52.com\n/Foo/BaR2/qux\n\n{hashed_body}\n630b4bfe7e9abd03da2eee8f0a5d4e60a254ec880a839bcc2223bb5b9443e8ef24d58f0254f1f5934bf8c017ebd0fd5b1acf86766bdbe74185e712a4092df3ed")
        );
        let two = p(&[("x-duo-A", "header_value_1"), ("X-Duo-B", "header_value_2")]);
        assert_eq!(
            canon_x_duo_headers(&two),
            "60be11a30e0756f2ee2afdce1db849b987dcf86c1133394bd7bbbc9877920330c4d78aceacbb377ab8cbd9a8efe6a410fed4047376635ac71226ab46ca10d2b1"
        );
        assert_eq!(canon_x_duo_headers(&[]), EMPTY_SHA512);
    }

    // Vector D: duo_hmac_python, v5 with X-Duo-Date in the header hash.
    #[test]
    fn vector_d_duo_hmac_python() {
        let date = "Fri, 24 May 2024 12:00:00 -0000";
        let headers = p(&[("X-Duo-Date", date)]);
        assert_eq!(
            canon_x_duo_headers(&headers),
            "fa03691e132cfedf936dc9f9b86f7183697dd258d380fc55e3a91567a6cb4dac2ef24cac5df934ff39cd9fba99b3ed180a8a5cf234c27832b1c5660db2a9c15d"
        );
        let skey = b"testtesttesttesttesttesttesttesttesttest";
        let mk = |params: &'static [(String, String)]| SignInput {
            date,
            method: "GET",
            host: "api-xxxxxxxx.duosecurity.com",
            path: "/api/path",
            params,
            body: b"",
            x_duo_headers: &[],
        };
        let mut no_params = mk(&[]);
        no_params.x_duo_headers = &headers;
        let sig = signature_hex(SigVersion::V5, skey, &no_params);
        assert_eq!(
            authorization_header("DIABCDEFGHIJKLMNOPQR", &sig),
            "Basic RElBQkNERUZHSElKS0xNTk9QUVI6YzQ1NDYzOWQ3NWI0ZTNkOTliOGIxZDVlNDFjZDdiYjJkMmQ4YmE1NWY2ODExZjc4NmRmYjBlZGQ0ZmFjZDJmM2E1ZTZkNmM4MzdmMzFmNjgyNjcwNjMyNWI0ZWQ3ZGNkYzVmMTExNjQ5NDhlNTdhNzAzMmE1MjQ5OTBlMDE1ODM="
        );
        let foo = p(&[("foo", "bar")]);
        let mut with_foo = no_params;
        with_foo.params = &foo;
        assert_eq!(
            signature_hex(SigVersion::V5, skey, &with_foo),
            "88fe80f3b242b992f4b301408d524a886274d3ed0c4c7bd184e1b4ff378e68ea05d9433c09938078c49517a6c4264c950be9ff5cc28ad2d448cea24bc93887ca"
        );
    }

    // Vector E: log-request vectors computed with duo_client_python.
    #[test]
    fn vector_e_log_requests() {
        let skey = DOC_SKEY.as_bytes();
        let params = p(&[
            ("mintime", "1547486297000"),
            ("maxtime", "1547563184847"),
            ("limit", "1000"),
            ("sort", "ts:asc"),
            (
                "next_offset",
                "1547486297000,5bea5c1e-682c-4f1d-b3f0-75fd31385bd5",
            ),
        ]);
        assert_eq!(
            canon_params(&params),
            "limit=1000&maxtime=1547563184847&mintime=1547486297000&next_offset=1547486297000%2C5bea5c1e-682c-4f1d-b3f0-75fd31385bd5&sort=ts%3Aasc"
        );
        let auth = input("GET", "/admin/v2/logs/authentication", &params, b"");
        assert_eq!(
            signature_hex(SigVersion::V2Sha1, skey, &auth),
            "8e9ad3c22865c6db25a346248176f28d895b6d28"
        );
        assert_eq!(signature_hex(SigVersion::V2Sha512, skey, &auth), "b05d402155403ee2da89992efed3183bf9e0dc3c696bf5a0e838bb14ccdf80b1001954d2fe932b1937eb2acd2d49523c323d8467818deec85072e9934063e316");
        assert_eq!(signature_hex(SigVersion::V5, skey, &auth), "f22f40613c9822d3ddb57d76c1de8c53c28e6696baa3a69b96b191f4fe24d150869ba9c5151cd96a1d051f1407144f2725768d0cadaf90c6e30d008d2933276a");
        let date_header = p(&[("X-Duo-Date", DOC_DATE)]);
        let mut auth_x = auth;
        auth_x.x_duo_headers = &date_header;
        assert_eq!(signature_hex(SigVersion::V5, skey, &auth_x), "8c391ea9823750c95a038e74132bb3c282ab9bf7787fe045930b0cba87ef00bee68f286af0182280b8bc2dd705ccbe274fccd8124ca2d2dfc8e6768c9978e089");

        let check = input("GET", "/auth/v2/check", &[], b"");
        assert_eq!(
            signature_hex(SigVersion::V2Sha1, skey, &check),
            "7853b89caba1fc31caee236cdf1de4922fef899f"
        );
        assert_eq!(signature_hex(SigVersion::V5, skey, &check), "def3dd5beb009592aaa48072f086ab05547491e88c3afd99fa6177c0b697027e645df3a0580d41e9e62fbf503964079363491c744c4d574761f3cc9d3303ceda");
        let summary = input("GET", "/admin/v1/info/summary", &[], b"");
        assert_eq!(
            signature_hex(SigVersion::V2Sha1, skey, &summary),
            "3076d139beff62ea49c1b865acafde95f903acfb"
        );
        assert_eq!(signature_hex(SigVersion::V5, skey, &summary), "32718f7b8320c97439db05b5e64e021df0b2c203ae15e227fae11b78c0ebaa05403df56c6d84072d3b2799e2fb5f9cab3e917c0038aebf769dc00129d2977f03");
        let list = input("POST", "/accounts/v1/account/list", &[], b"{}");
        assert_eq!(signature_hex(SigVersion::V5, skey, &list), "54ce2eaf7fa8bfb045c46e96a844a9a17e6b5a733fe302b2c4397f4a7ce250e398f1f61fee257ec66f669e200061612448ea612ce2ed61890ff54dae7cb9ae84");
    }

    #[test]
    fn date_matches_python_formatdate() {
        use chrono::TimeZone;
        let at = chrono::Utc
            .with_ymd_and_hms(2012, 8, 21, 17, 29, 18)
            .unwrap();
        assert_eq!(rfc2822_date(at), DOC_DATE);
    }

    #[test]
    fn signature_comparison() {
        assert!(signatures_equal("abc", "abc"));
        assert!(!signatures_equal("abc", "abd"));
        assert!(!signatures_equal("abc", "ab"));
    }
}
