//! JWS compact serialization, as narrow as JWT-SVID allows: ES256 tokens signed and verified
//! with a P-256 key identified by its RFC 7638 thumbprint; RS256 signing for the JWTs that
//! GitHub Apps present.
//!
//! Verification is strict: exactly three base64url parts without padding, a header holding
//! only `alg`, `kid` and `typ` (JWT-SVID forbids every other header, which also rules out
//! `jku`, `x5u`, `crit` and embedded keys), `alg` = `ES256`, a 64-byte `r || s` signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::SystemRandom;
use ring::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RsaKeyPair, UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{IdentityError, Result, TokenError};

/// The only algorithm remit signs task tokens with.
pub const ES256: &str = "ES256";

/// The longest token the verifier reads, in bytes.
pub const MAX_TOKEN_LEN: usize = 8192;

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

fn b64url_decode(text: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    B64URL
        .decode(text)
        .map_err(|_| TokenError::Malformed(format!("the {what} is not base64url")))
}

/// A public key as a JSON Web Key. Only EC P-256 keys are used; other fields are kept for
/// display and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type (`EC`).
    pub kty: String,
    /// Curve (`P-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// X coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// Y coordinate, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Key id (the RFC 7638 thumbprint for remit's keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm (`ES256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Use (`sig`).
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    fn ec_p256(point: &[u8]) -> Result<Jwk> {
        if point.len() != 65 || point[0] != 4 {
            return Err(IdentityError::Crypto(
                "unexpected P-256 public key encoding".into(),
            ));
        }
        let mut jwk = Jwk {
            kty: "EC".into(),
            crv: Some("P-256".into()),
            x: Some(b64url(&point[1..33])),
            y: Some(b64url(&point[33..65])),
            kid: None,
            alg: Some(ES256.into()),
            use_: Some("sig".into()),
        };
        jwk.kid = Some(jwk.thumbprint().map_err(IdentityError::Token)?);
        Ok(jwk)
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256(`{"crv":…,"kty":"EC","x":…,"y":…}`)).
    pub fn thumbprint(&self) -> Result<String, TokenError> {
        let (crv, x, y) = self.ec_parts()?;
        let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#);
        Ok(b64url(&Sha256::digest(canonical.as_bytes())))
    }

    fn ec_parts(&self) -> Result<(&str, &str, &str), TokenError> {
        match (&self.kty[..], &self.crv, &self.x, &self.y) {
            ("EC", Some(crv), Some(x), Some(y)) if crv == "P-256" => {
                let plain = |s: &str| {
                    s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                };
                if plain(x) && plain(y) {
                    Ok((crv, x, y))
                } else {
                    Err(TokenError::Malformed(
                        "the key's coordinates are not base64url".into(),
                    ))
                }
            }
            _ => Err(TokenError::Malformed("not an EC P-256 key".into())),
        }
    }

    /// The uncompressed point `0x04 || x || y`.
    pub fn public_point(&self) -> Result<Vec<u8>, TokenError> {
        let (_, x, y) = self.ec_parts()?;
        let x = b64url_decode(x, "key's x")?;
        let y = b64url_decode(y, "key's y")?;
        if x.len() != 32 || y.len() != 32 {
            return Err(TokenError::Malformed(
                "the key's coordinates are not 32 bytes".into(),
            ));
        }
        let mut point = Vec::with_capacity(65);
        point.push(4);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Ok(point)
    }
}

/// A JWK Set: what `remit identity jwks` prints and a verifier trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The key with id `kid` whose id is its own thumbprint (a key that lies about its id,
    /// as in a tampered set, is never used).
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid) && k.thumbprint().ok().as_deref() == Some(kid))
    }
}

/// The protected header remit writes and accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Algorithm.
    pub alg: String,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Type (`JWT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

/// A token split into its parts, header parsed, nothing verified yet.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The header.
    pub header: Header,
    /// The payload bytes (JSON, unverified).
    pub payload: Vec<u8>,
    signing_input: String,
    signature: Vec<u8>,
}

/// Split and decode a compact JWS, checking its header (not its signature).
pub fn parse(token: &str) -> Result<Parsed, TokenError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong(MAX_TOKEN_LEN));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "a token has three parts separated by `.`".into(),
        ));
    };
    let header_bytes = b64url_decode(h, "header")?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|e| {
        if e.to_string().contains("unknown field") {
            TokenError::Header(
                "only `alg`, `kid` and `typ` are allowed in a JWT-SVID header".into(),
            )
        } else {
            TokenError::Malformed("the header is not a JSON object with `alg`".into())
        }
    })?;
    if header.alg != ES256 {
        return Err(TokenError::Header(format!(
            "algorithm `{}` is not accepted (only `ES256`)",
            header.alg
        )));
    }
    if let Some(typ) = &header.typ
        && typ != "JWT"
        && typ != "JOSE"
    {
        return Err(TokenError::Header(format!("type `{typ}` is not `JWT`")));
    }
    let payload = b64url_decode(p, "payload")?;
    let signature = b64url_decode(s, "signature")?;
    Ok(Parsed {
        header,
        payload,
        signing_input: format!("{h}.{p}"),
        signature,
    })
}

impl Parsed {
    /// Check the signature with `jwk`.
    pub fn verify(&self, jwk: &Jwk) -> Result<(), TokenError> {
        if self.signature.len() != 64 {
            return Err(TokenError::BadSignature);
        }
        let point = jwk.public_point()?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| TokenError::BadSignature)
    }
}

/// A P-256 signing key (ES256).
pub struct EcSigner {
    pair: EcdsaKeyPair,
    jwk: Jwk,
    kid: String,
    header: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for EcSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcSigner({})", self.kid)
    }
}

impl EcSigner {
    /// A fresh key as a PKCS#8 document (zeroed when dropped).
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| IdentityError::Crypto("cannot generate a signing key".into()))?;
        Ok(Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// Load a key from PKCS#8.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<EcSigner> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| IdentityError::Crypto(format!("not a P-256 signing key: {e}")))?;
        let jwk = Jwk::ec_p256(pair.public_key().as_ref())?;
        let kid = jwk.kid.clone().unwrap_or_default();
        let header = b64url(
            serde_json::to_string(&Header {
                alg: ES256.into(),
                kid: Some(kid.clone()),
                typ: Some("JWT".into()),
            })
            .map_err(|e| IdentityError::Crypto(e.to_string()))?
            .as_bytes(),
        );
        Ok(EcSigner {
            pair,
            jwk,
            kid,
            header,
            rng,
        })
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Sign `payload` (JSON claims) as a compact JWS.
    pub fn sign(&self, payload: &[u8]) -> Result<String> {
        let mut out = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        out.push_str(&self.header);
        out.push('.');
        out.push_str(&b64url(payload));
        let signature = self
            .pair
            .sign(&self.rng, out.as_bytes())
            .map_err(|_| IdentityError::Crypto("cannot sign".into()))?;
        out.push('.');
        out.push_str(&b64url(signature.as_ref()));
        Ok(out)
    }
}

/// An RSA signing key (RS256), for JWTs presented to services that require RSA (GitHub Apps).
pub struct RsaSigner {
    pair: RsaKeyPair,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner(..)")
    }
}

impl RsaSigner {
    /// Load a PEM private key: PKCS#1 (`RSA PRIVATE KEY`, what GitHub hands out) or PKCS#8
    /// (`PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<RsaSigner> {
        let bad = |why: &str| IdentityError::Crypto(format!("not an RSA private key: {why}"));
        let text = std::str::from_utf8(pem).map_err(|_| bad("not PEM text"))?;
        let (label, body) = pem_body(text).ok_or_else(|| bad("no PEM block"))?;
        let der = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|_| bad("the PEM body is not base64"))?,
        );
        let pair = match label.as_str() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            _ => return Err(bad("expected `RSA PRIVATE KEY` or `PRIVATE KEY`")),
        }
        .map_err(|e| bad(&e.to_string()))?;
        Ok(RsaSigner { pair })
    }

    /// The public key (DER `RSAPublicKey`), for verifiers.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.public().as_ref().to_vec()
    }

    /// Sign `payload` (JSON claims) as a compact JWS with `{"alg":"RS256","typ":"JWT"}`.
    pub fn sign(&self, payload: &[u8]) -> Result<String> {
        let mut out = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
        out.push('.');
        out.push_str(&b64url(payload));
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                out.as_bytes(),
                &mut signature,
            )
            .map_err(|_| IdentityError::Crypto("cannot sign".into()))?;
        out.push('.');
        out.push_str(&b64url(&signature));
        Ok(out)
    }
}

/// Verify an RS256 compact JWS against a DER `RSAPublicKey`; returns the payload.
pub fn verify_rs256(token: &str, public_key_der: &[u8]) -> Result<Vec<u8>, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three parts".into()));
    };
    let header: serde_json::Value = serde_json::from_slice(&b64url_decode(h, "header")?)
        .map_err(|_| TokenError::Malformed("bad header".into()))?;
    if header["alg"] != "RS256" {
        return Err(TokenError::Header("not RS256".into()));
    }
    let signature = b64url_decode(s, "signature")?;
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(format!("{h}.{p}").as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)?;
    b64url_decode(p, "payload")
}

fn pem_body(text: &str) -> Option<(String, String)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let end_marker = format!("-----END {label}-----");
    let body_start = label_end + 5;
    let end = rest.find(&end_marker)?;
    let body: String = rest
        .get(body_start..end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Some((label, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_strictness() {
        let pkcs8 = EcSigner::generate_pkcs8().unwrap();
        let signer = EcSigner::from_pkcs8(&pkcs8).unwrap();
        let token = signer.sign(br#"{"sub":"x"}"#).unwrap();
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.header.kid.as_deref(), Some(signer.kid()));
        parsed.verify(signer.jwk()).unwrap();
        let jwks = Jwks {
            keys: vec![signer.jwk().clone()],
        };
        assert!(jwks.find(signer.kid()).is_some());

        // Another key does not verify it.
        let other = EcSigner::from_pkcs8(&EcSigner::generate_pkcs8().unwrap()).unwrap();
        assert_eq!(parsed.verify(other.jwk()), Err(TokenError::BadSignature));
        // A key that claims another's kid is never found.
        let mut liar = other.jwk().clone();
        liar.kid = Some(signer.kid().to_owned());
        assert!(Jwks { keys: vec![liar] }.find(signer.kid()).is_none());

        // alg none, extra headers, bad shapes.
        let payload = token.split('.').nth(1).unwrap();
        for header in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS256","kid":"k"}"#,
            r#"{"alg":"ES256","kid":"k","jku":"https://evil"}"#,
            r#"{"alg":"ES256","typ":"at+jwt"}"#,
        ] {
            let forged = format!("{}.{payload}.", b64url(header.as_bytes()));
            assert!(parse(&forged).is_err(), "{header}");
        }
        assert!(parse("a.b").is_err());
        assert!(parse(&format!("{token}.x")).is_err());
        assert!(parse(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }
}
