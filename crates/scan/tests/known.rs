//! The known-secret matcher: every encoding, every alignment.

use base64::Engine as _;
use remit_scan::{Encoding, KnownSecrets};

const SECRET: &str = "pa$$w0rd/with+odd=chars";

#[test]
fn raw_base64_url_hex_and_json_forms_are_found() {
    let known = KnownSecrets::new([SECRET, "another-long-secret"]).expect("build");
    let find = |hay: &[u8]| known.find(hay).map(|m| (m.secret, m.encoding));
    assert_eq!(
        find(format!("x {SECRET} y").as_bytes()),
        Some((0, Encoding::Raw))
    );
    for prefix in ["", "a", "ab", "{\"k\":\""] {
        let plain = format!("{prefix}{SECRET}\"}}");
        let std = base64::engine::general_purpose::STANDARD.encode(&plain);
        assert_eq!(
            find(std.as_bytes()),
            Some((0, Encoding::Base64)),
            "prefix {prefix:?}"
        );
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&plain);
        assert!(
            find(url.as_bytes()).is_some(),
            "url-safe, prefix {prefix:?}"
        );
    }
    assert_eq!(
        find(b"q=pa%24%24w0rd%2Fwith%2Bodd%3Dchars&x"),
        Some((0, Encoding::UrlEncoded))
    );
    assert_eq!(
        find(b"q=pa%24%24w0rd%2fwith%2bodd%3dchars&x"),
        Some((0, Encoding::UrlEncoded))
    );
    let hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(find(hex.as_bytes()), Some((0, Encoding::Hex)));
    assert_eq!(
        find(hex.to_uppercase().as_bytes()),
        Some((0, Encoding::Hex))
    );
    assert_eq!(
        find(br#"{"p":"pa$$w0rd\/with+odd=chars"}"#),
        Some((0, Encoding::JsonEscaped))
    );
    assert_eq!(find(b"another-long-secret"), Some((1, Encoding::Raw)));
    assert_eq!(find(b"nothing to see here"), None);
}

#[test]
fn short_values_are_ignored_and_reported() {
    let known = KnownSecrets::new(["abc", "long-enough-secret"]).expect("build");
    assert_eq!(known.ignored(), &[0]);
    assert_eq!(known.len(), 2);
    assert!(known.find(b"abc abc").is_none());
    assert!(!format!("{known:?}").contains("long-enough-secret"));
}

#[test]
fn many_secrets_build_quickly_and_all_match() {
    let values: Vec<String> = (0..2000)
        .map(|i| format!("secret-value-number-{i:05}-x"))
        .collect();
    let known = KnownSecrets::new(&values).expect("build");
    for (i, v) in values.iter().enumerate().step_by(97) {
        let m = known.find(format!("..{v}..").as_bytes()).expect("found");
        assert_eq!(m.secret, i);
    }
}
