//! A SCRAM-SHA-256 verifier, computed here so a role's password never reaches the server
//! (or its statement log) in clear: `CREATE ROLE … PASSWORD 'SCRAM-SHA-256$…'` stores it
//! as is (RFC 5802, RFC 7677; PostgreSQL's `pg_authid.rolpassword` format).

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};
use zeroize::Zeroizing;

/// PostgreSQL's default iteration count.
pub(crate) const ITERATIONS: u32 = 4096;

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
pub(crate) fn verifier(password: &[u8], salt: &[u8], iterations: u32) -> String {
    let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    let mut salted = Zeroizing::new([0u8; 32]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password,
        salted.as_mut(),
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, salted.as_ref());
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${}:{}${}:{}",
        iterations,
        B64.encode(salt),
        B64.encode(stored_key.as_ref()),
        B64.encode(server_key.as_ref())
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_an_independent_computation() {
        // RFC 7677's example user (`pencil`, this salt, 4096 rounds); the keys were computed
        // with Python's hashlib and hmac.
        use base64::Engine as _;
        let salt = super::B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        assert_eq!(
            super::verifier(b"pencil", &salt, 4096),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }
}
