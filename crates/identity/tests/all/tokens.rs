//! Minting and verifying; every wrong token is refused with its reason.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use remit_identity::Clock as _;
use remit_identity::jws::{self, Jwks};
use remit_identity::{
    Expectations, Identity, IdentityError, MasterKey, TokenError, TrustDomain, master_key_path,
    verify_with_jwks,
};

use crate::common::{TASK, identity, request};

#[test]
fn a_token_carries_the_task_and_verifies() {
    let home = tempfile::tempdir().unwrap();
    let (identity, _clock) = identity(home.path());
    let token = identity
        .mint(&request(TASK, Duration::from_secs(45 * 60)))
        .unwrap();
    assert_eq!(
        token.spiffe_id.to_string(),
        format!("spiffe://remit.local/agent/ci-fixer/task/{TASK}")
    );
    assert!(!format!("{token:?}").contains(token.expose()));

    let parsed = jws::parse(token.expose()).unwrap();
    assert_eq!(parsed.header.alg, "ES256");
    assert_eq!(parsed.header.typ.as_deref(), Some("JWT"));
    assert_eq!(parsed.header.kid.as_deref(), Some(token.kid.as_str()));

    let verified = identity.verify(token.expose(), None).unwrap();
    let c = &verified.claims;
    assert_eq!(c.sub, token.spiffe_id.to_string());
    assert_eq!(c.iss, "https://remit.local");
    assert_eq!(c.aud.0, vec!["https://remit.local".to_owned()]);
    assert_eq!(c.exp - c.iat, 45 * 60);
    assert_eq!((c.agent.as_str(), c.task.as_str()), ("ci-fixer", TASK));
    assert_eq!(c.owner, "alice@example.com");
    assert_eq!(c.requester, "alice");
    assert_eq!(c.remit_hash, "sha256:4f2a");
    assert_eq!(c.jti, token.jti);

    // Audience named by the remit.
    let audience = vec!["sts.amazonaws.com".to_owned()];
    let mut req = request(TASK, Duration::from_secs(60));
    req.audience = &audience;
    let token = identity.mint(&req).unwrap();
    identity
        .verify(token.expose(), Some("sts.amazonaws.com"))
        .unwrap();
    assert_eq!(
        identity.verify(token.expose(), Some("https://remit.local")),
        Err(TokenError::WrongAudience("https://remit.local".into()))
    );
}

#[test]
fn wrong_expired_and_forged_tokens_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let (identity, clock) = identity(home.path());
    let token = identity
        .mint(&request(TASK, Duration::from_secs(600)))
        .unwrap();
    let text = token.expose().to_owned();
    let parts: Vec<&str> = text.split('.').collect();

    // A claim changed: the signature no longer matches.
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["agent"] = "other".into();
    claims["sub"] = format!("spiffe://remit.local/agent/other/task/{TASK}").into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(
        identity.verify(&forged, None),
        Err(TokenError::BadSignature)
    );

    // A flipped signature bit.
    let mut sig = B64.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], B64.encode(&sig));
    assert_eq!(
        identity.verify(&flipped, None),
        Err(TokenError::BadSignature)
    );

    // alg none, HS256 with the public key as secret: refused before any key is used.
    for header in [r#"{"alg":"none"}"#, r#"{"alg":"HS256","kid":"x"}"#] {
        let t = format!("{}.{}.", B64.encode(header), parts[1]);
        assert!(matches!(
            identity.verify(&t, None),
            Err(TokenError::Header(_))
        ));
    }
    assert!(matches!(
        identity.verify("not a token", None),
        Err(TokenError::Malformed(_))
    ));

    // A token of another remit home (another key).
    let other_home = tempfile::tempdir().unwrap();
    let (other, _) = crate::common::identity(other_home.path());
    let foreign = other
        .mint(&request(TASK, Duration::from_secs(600)))
        .unwrap();
    assert!(matches!(
        identity.verify(foreign.expose(), None),
        Err(TokenError::UnknownKey(_))
    ));

    // Expired.
    clock.advance(Duration::from_secs(601));
    assert!(matches!(
        identity.verify(&text, None),
        Err(TokenError::Expired(_))
    ));

    // Another issuer configured: old tokens no longer verify.
    let fresh = identity
        .mint(&request(TASK, Duration::from_secs(600)))
        .unwrap();
    identity
        .configure(None, Some("https://remit.example.com/"))
        .unwrap();
    assert!(matches!(
        identity.verify(fresh.expose(), None),
        Err(TokenError::WrongIssuer { .. })
    ));
    assert!(identity.configure(Some("Bad Domain"), None).is_err());
    assert!(identity.configure(None, Some("ftp://x")).is_err());
    // Nonsense lifetimes.
    assert!(matches!(
        identity.mint(&request(TASK, Duration::ZERO)),
        Err(IdentityError::BadLifetime(_))
    ));
    assert!(matches!(
        identity.mint(&request("a/b", Duration::from_secs(1))),
        Err(IdentityError::BadSegment(..))
    ));
}

#[test]
fn a_killed_tasks_token_is_rejected_by_remit() {
    let home = tempfile::tempdir().unwrap();
    let (identity, clock) = identity(home.path());
    let killed = identity
        .mint(&request(TASK, Duration::from_secs(3600)))
        .unwrap();
    let other = identity
        .mint(&request(
            "01JCZ8Q6F3V4X2M8N9P0R1S2T4",
            Duration::from_secs(3600),
        ))
        .unwrap();
    assert_eq!(identity.outstanding(Some("ci-fixer")).unwrap(), 2);
    assert_eq!(identity.revoke_task(TASK, "killed").unwrap(), 1);
    assert_eq!(
        identity.verify(killed.expose(), None),
        Err(TokenError::Revoked {
            task: TASK.into(),
            reason: "killed".into()
        })
    );
    identity.verify(other.expose(), None).unwrap();
    assert_eq!(identity.outstanding(Some("ci-fixer")).unwrap(), 1);
    // A third party holding only the JWKS cannot know: the token is valid until it
    // expires, as documented.
    let expect = Expectations {
        issuer: "https://remit.local".into(),
        trust_domain: TrustDomain::new("remit.local").unwrap(),
        audience: None,
    };
    verify_with_jwks(
        killed.expose(),
        &identity.jwks().unwrap(),
        &expect,
        clock.now(),
    )
    .unwrap();
    // The revocation is seen by another handle on the same home (another process).
    let (second, _) = crate::common::identity(home.path());
    assert!(matches!(
        second.verify(killed.expose(), None),
        Err(TokenError::Revoked { .. })
    ));
    // Revoking an agent revokes all its tasks' tokens at once.
    assert_eq!(
        identity.revoke_agent("ci-fixer", "agent_revoked").unwrap(),
        vec!["01JCZ8Q6F3V4X2M8N9P0R1S2T4".to_owned()]
    );
    assert!(identity.verify(other.expose(), None).is_err());
    assert_eq!(identity.outstanding(None).unwrap(), 0);
}

#[test]
fn a_tampered_jwks_verifies_nothing() {
    let home = tempfile::tempdir().unwrap();
    let (identity, clock) = identity(home.path());
    let token = identity
        .mint(&request(TASK, Duration::from_secs(600)))
        .unwrap();
    let now = clock.now();
    let expect = Expectations {
        issuer: "https://remit.local".into(),
        trust_domain: TrustDomain::new("remit.local").unwrap(),
        audience: None,
    };
    let jwks = identity.jwks().unwrap();
    verify_with_jwks(token.expose(), &jwks, &expect, now).unwrap();

    // A coordinate changed: the key no longer matches its id, so it is never used.
    let mut tampered: Jwks = jwks.clone();
    let x = tampered.keys[0].x.clone().unwrap();
    let mut raw = B64.decode(&x).unwrap();
    raw[5] ^= 0x40;
    tampered.keys[0].x = Some(B64.encode(&raw));
    assert!(matches!(
        verify_with_jwks(token.expose(), &tampered, &expect, now),
        Err(TokenError::UnknownKey(_))
    ));

    // An attacker's key under the real key's id: refused the same way.
    let other_home = tempfile::tempdir().unwrap();
    let (attacker, _) = crate::common::identity(other_home.path());
    let mut swapped = attacker.jwks().unwrap();
    swapped.keys[0].kid = jwks.keys[0].kid.clone();
    assert!(matches!(
        verify_with_jwks(token.expose(), &swapped, &expect, now),
        Err(TokenError::UnknownKey(_))
    ));
    // And a token the attacker signs does not verify with the real set.
    let forged = attacker
        .mint(&request(TASK, Duration::from_secs(600)))
        .unwrap();
    assert!(verify_with_jwks(forged.expose(), &jwks, &expect, now).is_err());
    // Wrong trust domain expected.
    let elsewhere = Expectations {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        ..expect
    };
    assert!(matches!(
        verify_with_jwks(token.expose(), &jwks, &elsewhere, now),
        Err(TokenError::BadSubject(_))
    ));
}

#[test]
fn keys_are_sealed_and_a_wrong_master_key_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let (identity, _) = identity(home.path());
    drop(identity);
    let db = remit_identity::identity_db_path(home.path());
    assert_eq!(
        std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Replace the master key: the store opens no key and says why.
    std::fs::remove_file(master_key_path(home.path())).unwrap();
    MasterKey::generate()
        .unwrap()
        .save_new(&master_key_path(home.path()))
        .unwrap();
    let err = Identity::open_home(
        home.path(),
        std::sync::Arc::new(remit_identity::SystemClock),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("wrong key file"), "{err}");
}

#[test]
fn discovery_names_the_jwks() {
    let home = tempfile::tempdir().unwrap();
    let (identity, _) = identity(home.path());
    let d = serde_json::to_value(identity.discovery()).unwrap();
    assert_eq!(d["issuer"], "https://remit.local");
    assert_eq!(d["jwks_uri"], "https://remit.local/.well-known/jwks.json");
    assert_eq!(d["id_token_signing_alg_values_supported"][0], "ES256");
    let jwks = serde_json::to_value(identity.jwks().unwrap()).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none());
}
