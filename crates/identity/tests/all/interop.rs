//! Interoperability: remit's tokens verify with an independent JOSE library (Python's
//! `joserfc`, installed from PyPI by `.ci/run`), given only the published JWKS.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use remit_identity::{Identity, SystemClock, TaskIdentityRequest};

const VERIFY: &str = r#"
import json, sys
from joserfc import jwt
from joserfc.jwk import KeySet
keys = KeySet.import_key_set(json.load(open(sys.argv[1])))
issuer, audience = sys.argv[3], sys.argv[4]
for line in open(sys.argv[2]):
    token, sub = line.split()
    try:
        t = jwt.decode(token, keys, algorithms=["ES256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True, "value": sub},
            exp={"essential": True},
        ).validate(t.claims)
        print("ok", t.header["kid"], t.claims["agent"], t.claims["remit_hash"])
    except Exception as e:
        print("refused", type(e).__name__)
"#;

fn request<'a>(task: &'a str, audience: &'a [String]) -> TaskIdentityRequest<'a> {
    TaskIdentityRequest {
        agent: "ci-fixer",
        task,
        owner: "alice@example.com",
        requester: "alice",
        remit_hash: "sha256:4f2a",
        audience,
        lifetime: Duration::from_secs(600),
    }
}

#[test]
fn joserfc_verifies_remit_tokens_from_the_jwks() {
    let python = Command::new("python3")
        .args(["-c", "import joserfc"])
        .output();
    assert!(
        python.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs python3 with joserfc: `pip install joserfc` (.ci/run installs it)"
    );
    let home = tempfile::tempdir().unwrap();
    let identity = Identity::open_home(home.path(), Arc::new(SystemClock)).unwrap();
    let audience = vec!["sts.example.com".to_owned()];
    let elsewhere = vec!["other.example.com".to_owned()];
    let before = identity.mint(&request("TASK-A", &audience)).unwrap();
    identity.rotate().unwrap();
    let after = identity.mint(&request("TASK-B", &audience)).unwrap();
    let wrong_audience = identity.mint(&request("TASK-C", &elsewhere)).unwrap();
    let parts: Vec<&str> = after.expose().split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["agent"] = "intruder".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    );

    let jwks = home.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_vec(&identity.jwks().unwrap()).unwrap(),
    )
    .unwrap();
    let tokens = home.path().join("tokens");
    let lines = [
        (before.expose(), before.spiffe_id.to_string()),
        (after.expose(), after.spiffe_id.to_string()),
        (
            wrong_audience.expose(),
            wrong_audience.spiffe_id.to_string(),
        ),
        (tampered.as_str(), after.spiffe_id.to_string()),
    ]
    .iter()
    .map(|(t, s)| format!("{t} {s}\n"))
    .collect::<String>();
    std::fs::write(&tokens, lines).unwrap();
    let out = Command::new("python3")
        .args(["-c", VERIFY])
        .arg(&jwks)
        .arg(&tokens)
        .args(["https://remit.local", "sts.example.com"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        answers[0],
        format!("ok {} ci-fixer sha256:4f2a", before.kid),
        "a token of the retired key verifies"
    );
    assert_eq!(answers[1], format!("ok {} ci-fixer sha256:4f2a", after.kid));
    assert!(answers[2].starts_with("refused"), "{}", answers[2]);
    assert!(answers[3].starts_with("refused"), "{}", answers[3]);
}
