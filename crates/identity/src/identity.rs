//! The task identity authority of one remit home: mints, verifies and revokes task tokens,
//! keeps and rotates the signing keys, publishes them.
//!
//! ```text
//! $REMIT_HOME/master.key              the master key (0600) that seals the signing keys
//! $REMIT_HOME/identity/identity.db    settings, sealed signing keys, tokens minted,
//!                                     revoked tasks (SQLite, WAL, 0600)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::clock::{Clock, from_unix_seconds, rfc3339, unix_seconds};
use crate::error::{IdentityError, Result, TokenError};
use crate::jws::{self, EcSigner, Jwk, Jwks};
use crate::process::ProcessIdentity;
use crate::seal::{MasterKey, master_key_path, random_bytes};
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::sqlite::{self, Durability};

/// The trust domain a new home starts with.
pub const DEFAULT_TRUST_DOMAIN: &str = "remit.local";
/// The issuer a new home starts with.
pub const DEFAULT_ISSUER: &str = "https://remit.local";
/// How far `iat` may be ahead of the verifier's clock.
pub const IAT_LEEWAY: Duration = Duration::from_secs(60);
/// The longest lifetime a task token may be minted with.
pub const MAX_LIFETIME: Duration = Duration::from_secs(31 * 24 * 3600);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    kid TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'retired')),
    retired INTEGER,
    max_exp INTEGER NOT NULL DEFAULT 0,
    public_jwk TEXT NOT NULL,
    sealed BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_one_active ON keys (state) WHERE state = 'active';
CREATE TABLE IF NOT EXISTS tokens (
    jti TEXT PRIMARY KEY,
    kid TEXT NOT NULL,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    iat INTEGER NOT NULL,
    exp INTEGER NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_start INTEGER NOT NULL,
    owner_boot TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_task ON tokens (task);
CREATE INDEX IF NOT EXISTS tokens_agent ON tokens (agent, exp);
CREATE INDEX IF NOT EXISTS tokens_exp ON tokens (exp);
CREATE TABLE IF NOT EXISTS revoked_tasks (
    task TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
-- Tasks with tokens that no end or revocation has closed yet, each with the process that
-- minted them: what crash recovery reads at every start, so its cost follows the tasks
-- running now rather than every token minted in the last day.
CREATE TABLE IF NOT EXISTS open_tasks (
    task TEXT NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_start INTEGER NOT NULL,
    owner_boot TEXT NOT NULL,
    PRIMARY KEY (task, owner_pid, owner_start, owner_boot)
) WITHOUT ROWID;
-- Kept by the database itself, so that every writer keeps it, an earlier version of remit
-- sharing the home included: a token opens its task, a revocation closes it.
CREATE TRIGGER IF NOT EXISTS tokens_open_task AFTER INSERT ON tokens
BEGIN
    INSERT OR IGNORE INTO open_tasks (task, owner_pid, owner_start, owner_boot)
    VALUES (NEW.task, NEW.owner_pid, NEW.owner_start, NEW.owner_boot);
END;
CREATE TRIGGER IF NOT EXISTS revoked_tasks_close_task AFTER INSERT ON revoked_tasks
BEGIN
    DELETE FROM open_tasks WHERE task = NEW.task;
END;
"#;

/// The layout version (`PRAGMA user_version`) this code writes. 2: `open_tasks` and the
/// triggers that keep it, filled from `tokens` once when a store made before is opened.
const LAYOUT_VERSION: i64 = 2;

/// The home's identity settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// The trust domain of task SPIFFE IDs.
    pub trust_domain: TrustDomain,
    /// The issuer (`iss`), an `https://` URL; JWKS and discovery are published under it.
    pub issuer: String,
}

impl Settings {
    /// Where the JWKS is published (`<issuer>/.well-known/jwks.json`).
    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.issuer)
    }
}

/// Check an issuer URL; returns it without a trailing `/`.
pub fn check_issuer(issuer: &str) -> Result<String> {
    let trimmed = issuer.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !trimmed.contains(['?', '#', ' ', '"', '\\']) =>
        {
            Ok(trimmed.to_owned())
        }
        _ => Err(IdentityError::BadIssuer(issuer.to_owned())),
    }
}

/// What a task's identity is minted from.
#[derive(Debug, Clone)]
pub struct TaskIdentityRequest<'a> {
    /// The agent's name.
    pub agent: &'a str,
    /// The task id.
    pub task: &'a str,
    /// The human accountable for the agent.
    pub owner: &'a str,
    /// Who started the task.
    pub requester: &'a str,
    /// The remit's hash (`sha256:<hex>`).
    pub remit_hash: &'a str,
    /// Audiences (`aud`); empty: the issuer.
    pub audience: &'a [String],
    /// How long the token is valid: the task's lifetime.
    pub lifetime: Duration,
}

/// `aud`: one string or an array of strings on the wire; always a list here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Audience(pub Vec<String>);

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(Audience(match Raw::deserialize(deserializer)? {
            Raw::One(one) => vec![one],
            Raw::Many(many) => many,
        }))
    }
}

/// The claims of a remit task token (a JWT-SVID with remit's claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// The task's SPIFFE ID.
    pub sub: String,
    /// Audiences.
    pub aud: Audience,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Token id.
    pub jti: String,
    /// The agent.
    pub agent: String,
    /// The task.
    pub task: String,
    /// The agent's owner.
    pub owner: String,
    /// Who started the task.
    pub requester: String,
    /// The remit's hash (`sha256:<hex>`).
    pub remit_hash: String,
}

/// A minted token. The token string is zeroed when dropped and never shown by `Debug`.
pub struct TaskToken {
    /// The task's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The token id.
    pub jti: String,
    /// The signing key's id.
    pub kid: String,
    /// When it was issued.
    pub issued: SystemTime,
    /// When it expires.
    pub expires: SystemTime,
    token: Zeroizing<String>,
}

impl std::fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskToken")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("jti", &self.jti)
            .field("kid", &self.kid)
            .field("expires", &rfc3339(self.expires))
            .finish_non_exhaustive()
    }
}

impl TaskToken {
    /// The compact JWS (handle with care: it is a bearer credential).
    pub fn expose(&self) -> &str {
        &self.token
    }
}

/// What a verifier checks besides the signature.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// The issuer the token must name.
    pub issuer: String,
    /// The trust domain its subject must be in.
    pub trust_domain: TrustDomain,
    /// An audience the token must name (`None`: any, as long as there is one).
    pub audience: Option<String>,
}

/// A token that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its claims.
    pub claims: Claims,
    /// The subject, parsed.
    pub spiffe_id: SpiffeId,
    /// The key that signed it.
    pub kid: String,
}

/// Verify `token` against a key set, as any third party would: signature, `alg`, `iss`,
/// `aud`, `exp`, `iat`, and a `sub` that is a task SPIFFE ID matching the `agent` and `task`
/// claims. No revocation check: that needs remit's own store ([`Identity::verify`]).
pub fn verify_with_jwks(
    token: &str,
    jwks: &Jwks,
    expect: &Expectations,
    now: SystemTime,
) -> Result<Verified, TokenError> {
    let parsed = jws::parse(token)?;
    let kid = parsed.header.kid.clone().ok_or(TokenError::MissingKid)?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
    parsed.verify(jwk)?;
    let claims: Claims = serde_json::from_slice(&parsed.payload)
        .map_err(|e| TokenError::Malformed(format!("the claims do not parse: {e}")))?;
    let now_s = unix_seconds(now);
    if claims.exp <= now_s {
        return Err(TokenError::Expired(rfc3339(from_unix_seconds(claims.exp))));
    }
    if claims.iat > now_s + IAT_LEEWAY.as_secs() as i64 {
        return Err(TokenError::IssuedInFuture(rfc3339(from_unix_seconds(
            claims.iat,
        ))));
    }
    if claims.iss != expect.issuer {
        return Err(TokenError::WrongIssuer {
            got: claims.iss.clone(),
            want: expect.issuer.clone(),
        });
    }
    if claims.aud.0.is_empty() {
        return Err(TokenError::WrongAudience(
            expect.audience.clone().unwrap_or_default(),
        ));
    }
    if let Some(audience) = &expect.audience
        && !claims.aud.0.iter().any(|a| a == audience)
    {
        return Err(TokenError::WrongAudience(audience.clone()));
    }
    let spiffe_id =
        SpiffeId::parse(&claims.sub).map_err(|e| TokenError::BadSubject(e.to_string()))?;
    if spiffe_id.trust_domain() != &expect.trust_domain {
        return Err(TokenError::BadSubject(format!(
            "trust domain `{}` is not `{}`",
            spiffe_id.trust_domain(),
            expect.trust_domain
        )));
    }
    if spiffe_id.agent() != claims.agent || spiffe_id.task_id() != claims.task {
        return Err(TokenError::BadSubject(
            "`sub` does not match the `agent` and `task` claims".into(),
        ));
    }
    Ok(Verified {
        claims,
        spiffe_id,
        kid,
    })
}

/// A signing key as `remit keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// `active` (signs new tokens) or `retired` (verifies until its tokens expire).
    pub state: String,
    /// Created (RFC 3339).
    pub created: String,
    /// Retired (RFC 3339), if it was.
    pub retired: Option<String>,
    /// The last expiry of a token it signed (RFC 3339), if any: a retired key is published
    /// until then.
    pub verifies_until: Option<String>,
}

/// What `remit keys rotate` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rotation {
    /// The new active key.
    pub active: String,
    /// The key it replaced, kept for verification until its tokens expire.
    pub retired: Option<String>,
    /// Retired keys whose tokens have all expired, removed.
    pub pruned: Vec<String>,
}

/// The OIDC discovery document (`/.well-known/openid-configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discovery {
    /// The issuer.
    pub issuer: String,
    /// Where the JWKS is.
    pub jwks_uri: String,
    /// `["id_token"]`.
    pub response_types_supported: Vec<String>,
    /// `["public"]`.
    pub subject_types_supported: Vec<String>,
    /// `["ES256"]`.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// The claims a task token carries.
    pub claims_supported: Vec<String>,
}

/// The identity authority of one remit home. One per process; it is `Sync`.
pub struct Identity {
    path: PathBuf,
    conn: Mutex<Connection>,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    settings: Mutex<Settings>,
    signer: Mutex<Option<Arc<EcSigner>>>,
    owner: ProcessIdentity,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `$REMIT_HOME/identity/identity.db`.
pub fn identity_db_path(home: &Path) -> PathBuf {
    home.join("identity").join("identity.db")
}

impl Identity {
    /// Open the identity authority of `home`, creating the master key and the first signing
    /// key when there are none.
    pub fn open_home(home: &Path, clock: Arc<dyn Clock>) -> Result<Identity> {
        let master = MasterKey::load_or_create(&master_key_path(home))?;
        Identity::open(&identity_db_path(home), master, clock)
    }

    /// Open the store at `path` with `master` sealing its keys.
    pub fn open(path: &Path, master: MasterKey, clock: Arc<dyn Clock>) -> Result<Identity> {
        let conn = sqlite::open(path, Durability::Normal).map_err(|e| match e {
            sqlite::OpenError::Create(p, e) => IdentityError::CreateDir(p, e),
            sqlite::OpenError::Sqlite(p, e) => IdentityError::Store(p, e),
        })?;
        let store = |e| IdentityError::Store(path.into(), e);
        upgrade(&conn).map_err(store)?;
        let settings = load_settings(&conn, path)?;
        let identity = Identity {
            path: path.to_owned(),
            conn: Mutex::new(conn),
            master,
            clock,
            settings: Mutex::new(settings),
            signer: Mutex::new(None),
            owner: ProcessIdentity::current(),
        };
        identity.active_signer()?;
        Ok(identity)
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        match self.conn.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn store_err(&self, e: rusqlite::Error) -> IdentityError {
        IdentityError::Store(self.path.clone(), e)
    }

    /// The trust domain and issuer.
    pub fn settings(&self) -> Settings {
        match self.settings.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Change the trust domain and/or the issuer (tokens already minted keep theirs and no
    /// longer verify once the issuer changes).
    pub fn configure(&self, trust_domain: Option<&str>, issuer: Option<&str>) -> Result<Settings> {
        let mut settings = self.settings();
        if let Some(td) = trust_domain {
            settings.trust_domain = TrustDomain::new(td)?;
        }
        if let Some(issuer) = issuer {
            settings.issuer = check_issuer(issuer)?;
        }
        {
            let conn = self.db();
            for (k, v) in [
                ("trust_domain", settings.trust_domain.as_str()),
                ("issuer", settings.issuer.as_str()),
            ] {
                conn.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![k, v],
                )
                .map_err(|e| self.store_err(e))?;
            }
        }
        if let Ok(mut s) = self.settings.lock() {
            *s = settings.clone();
        }
        Ok(settings)
    }

    /// The key that signs new tokens, loading or creating it.
    fn active_signer(&self) -> Result<Arc<EcSigner>> {
        if let Ok(guard) = self.signer.lock()
            && let Some(signer) = guard.as_ref()
        {
            return Ok(Arc::clone(signer));
        }
        let now = unix_seconds(self.clock.now());
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.store_err(e))?;
        let row: Option<(String, Vec<u8>)> = tx
            .query_row(
                "SELECT kid, sealed FROM keys WHERE state = 'active'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| IdentityError::Store(self.path.clone(), e))?;
        let signer = match row {
            Some((kid, sealed)) => {
                let pkcs8 = self.master.open(&format!("identity key {kid}"), &sealed)?;
                EcSigner::from_pkcs8(&pkcs8)?
            }
            None => {
                let signer = new_key(&tx, &self.master, now, &self.path)?;
                tx.commit()
                    .map_err(|e| IdentityError::Store(self.path.clone(), e))?;
                signer
            }
        };
        let signer = Arc::new(signer);
        if let Ok(mut guard) = self.signer.lock() {
            *guard = Some(Arc::clone(&signer));
        }
        Ok(signer)
    }

    fn forget_signer(&self) {
        if let Ok(mut guard) = self.signer.lock() {
            *guard = None;
        }
    }

    /// Mint the identity token of a task. Its lifetime is the task's; its record (not the
    /// token) is kept so remit can count and revoke it.
    pub fn mint(&self, request: &TaskIdentityRequest<'_>) -> Result<TaskToken> {
        let settings = self.settings();
        let spiffe_id = SpiffeId::task(&settings.trust_domain, request.agent, request.task)?;
        if request.lifetime.is_zero() || request.lifetime > MAX_LIFETIME {
            return Err(IdentityError::BadLifetime(
                humantime::format_duration(request.lifetime).to_string(),
            ));
        }
        let now = self.clock.now();
        let iat = unix_seconds(now);
        let exp = iat.saturating_add(request.lifetime.as_secs().max(1) as i64);
        let mut id = [0u8; 16];
        random_bytes(&mut id)?;
        let jti = jws::b64url(&id);
        let audience = if request.audience.is_empty() {
            vec![settings.issuer.clone()]
        } else {
            request.audience.to_vec()
        };
        let claims = Claims {
            iss: settings.issuer.clone(),
            sub: spiffe_id.to_string(),
            aud: Audience(audience),
            exp,
            iat,
            jti: jti.clone(),
            agent: request.agent.to_owned(),
            task: request.task.to_owned(),
            owner: request.owner.to_owned(),
            requester: request.requester.to_owned(),
            remit_hash: request.remit_hash.to_owned(),
        };
        let payload =
            serde_json::to_vec(&claims).map_err(|e| IdentityError::Crypto(e.to_string()))?;
        for _ in 0..3 {
            let signer = self.active_signer()?;
            if self.record_token(&signer, &claims)? {
                let token = signer.sign(&payload)?;
                return Ok(TaskToken {
                    spiffe_id,
                    jti,
                    kid: signer.kid().to_owned(),
                    issued: from_unix_seconds(iat),
                    expires: from_unix_seconds(exp),
                    token: Zeroizing::new(token),
                });
            }
            // Another process rotated the key: sign with the new one.
            self.forget_signer();
        }
        Err(IdentityError::Crypto(
            "the signing key kept changing while minting; try again".into(),
        ))
    }

    /// Record a token signed by `signer`; `false` when `signer` is no longer the active key.
    fn record_token(&self, signer: &EcSigner, claims: &Claims) -> Result<bool> {
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.store_err(e))?;
        let updated = tx
            .execute(
                "UPDATE keys SET max_exp = MAX(max_exp, ?1) WHERE kid = ?2 AND state = 'active'",
                params![claims.exp, signer.kid()],
            )
            .map_err(|e| IdentityError::Store(self.path.clone(), e))?;
        if updated == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO tokens (jti, kid, agent, task, iat, exp, owner_pid, owner_start, owner_boot)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                claims.jti,
                signer.kid(),
                claims.agent,
                claims.task,
                claims.iat,
                claims.exp,
                self.owner.pid,
                self.owner.start as i64,
                self.owner.boot
            ],
        )
        .map_err(|e| IdentityError::Store(self.path.clone(), e))?;
        tx.commit()
            .map_err(|e| IdentityError::Store(self.path.clone(), e))?;
        Ok(true)
    }

    /// The keys a verifier may trust now: the active key and every retired key that signed
    /// a token not yet expired.
    pub fn jwks(&self) -> Result<Jwks> {
        let now = unix_seconds(self.clock.now());
        let conn = self.db();
        let mut stmt = conn
            .prepare_cached(
                "SELECT public_jwk FROM keys WHERE state = 'active' OR max_exp > ?1
                 ORDER BY state, created DESC",
            )
            .map_err(|e| self.store_err(e))?;
        let rows = stmt
            .query_map([now], |r| r.get::<_, String>(0))
            .map_err(|e| self.store_err(e))?;
        let mut keys = Vec::new();
        for row in rows {
            let text = row.map_err(|e| self.store_err(e))?;
            let jwk: Jwk = serde_json::from_str(&text)
                .map_err(|e| IdentityError::Corrupt(self.path.clone(), e.to_string()))?;
            keys.push(jwk);
        }
        Ok(Jwks { keys })
    }

    /// The OIDC discovery document.
    pub fn discovery(&self) -> Discovery {
        let settings = self.settings();
        Discovery {
            jwks_uri: settings.jwks_uri(),
            issuer: settings.issuer,
            response_types_supported: vec!["id_token".into()],
            subject_types_supported: vec!["public".into()],
            id_token_signing_alg_values_supported: vec![jws::ES256.into()],
            claims_supported: [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "jti",
                "agent",
                "task",
                "owner",
                "requester",
                "remit_hash",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }

    /// Verify a token as remit does: everything [`verify_with_jwks`] checks, and that its
    /// task was not ended or killed.
    pub fn verify(&self, token: &str, audience: Option<&str>) -> Result<Verified, TokenError> {
        let settings = self.settings();
        let jwks = self
            .jwks()
            .map_err(|e| TokenError::Malformed(format!("cannot read the trusted keys: {e}")))?;
        let verified = verify_with_jwks(
            token,
            &jwks,
            &Expectations {
                issuer: settings.issuer,
                trust_domain: settings.trust_domain,
                audience: audience.map(str::to_owned),
            },
            self.clock.now(),
        )?;
        let revoked: Option<String> = self
            .db()
            .query_row(
                "SELECT reason FROM revoked_tasks WHERE task = ?1",
                [&verified.claims.task],
                |r| r.get(0),
            )
            .optional()
            // Fail closed: a store we cannot read revokes everything.
            .map_err(|e| TokenError::Revoked {
                task: verified.claims.task.clone(),
                reason: format!("the revocation list cannot be read: {e}"),
            })?;
        if let Some(reason) = revoked {
            return Err(TokenError::Revoked {
                task: verified.claims.task.clone(),
                reason,
            });
        }
        Ok(verified)
    }

    /// Revoke every token of `task` (kill, agent suspended or revoked). Durable when it
    /// returns. Returns the number of its tokens that had not expired.
    pub fn revoke_task(&self, task: &str, reason: &str) -> Result<u64> {
        self.revoke_task_with(task, reason, true)
    }

    /// Revoke every token of `task` at its normal end, without waiting for the disk: if the
    /// write is lost in a crash, [`Identity::recover_orphans`] revokes the tokens at the next
    /// start (their owner process is gone). Returns the number of tokens that had not expired.
    pub fn end_task(&self, task: &str) -> Result<u64> {
        self.revoke_task_with(task, "task_end", false)
    }

    fn revoke_task_with(&self, task: &str, reason: &str, durable: bool) -> Result<u64> {
        let now = unix_seconds(self.clock.now());
        let mut conn = self.db();
        if durable {
            conn.execute_batch("PRAGMA synchronous = FULL")
                .map_err(|e| self.store_err(e))?;
        }
        let result = (|| {
            // One transaction: one commit (and one `fsync` when durable).
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO revoked_tasks (task, reason, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (task) DO NOTHING",
                params![task, reason, now],
            )?;
            // The insert's trigger closes the task; a task revoked before and minted for
            // again since is closed here.
            tx.execute("DELETE FROM open_tasks WHERE task = ?1", [task])?;
            let live = tx.query_row(
                "SELECT COUNT(*) FROM tokens WHERE task = ?1 AND exp > ?2",
                params![task, now],
                |r| r.get::<_, i64>(0),
            )?;
            tx.commit()?;
            Ok(live)
        })();
        let _ = conn.execute_batch("PRAGMA synchronous = NORMAL");
        result
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.store_err(e))
    }

    /// Revoke the tokens of every task of `agent` that has unexpired tokens (agent suspended
    /// or revoked). Returns the tasks revoked.
    pub fn revoke_agent(&self, agent: &str, reason: &str) -> Result<Vec<String>> {
        let now = unix_seconds(self.clock.now());
        let tasks: Vec<String> = {
            let conn = self.db();
            let mut stmt = conn
                .prepare(
                    "SELECT DISTINCT task FROM tokens WHERE agent = ?1 AND exp > ?2
                     AND task NOT IN (SELECT task FROM revoked_tasks)",
                )
                .map_err(|e| self.store_err(e))?;
            let rows = stmt
                .query_map(params![agent, now], |r| r.get(0))
                .map_err(|e| self.store_err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.store_err(e))?
        };
        for task in &tasks {
            self.revoke_task(task, reason)?;
        }
        Ok(tasks)
    }

    /// Revoke the tokens of tasks whose supervisor died without ending them (crash
    /// recovery; call at supervisor start). Returns the tasks revoked.
    pub fn recover_orphans(&self) -> Result<Vec<String>> {
        // Only tasks not yet ended are read: a start costs the same after a million tasks.
        // A task whose tokens look expired is revoked all the same rather than forgotten: a
        // clock briefly ahead must not leave tokens that verify again once it is right.
        let owners: Vec<(String, ProcessIdentity)> = {
            let conn = self.db();
            let mut stmt = conn
                .prepare("SELECT task, owner_pid, owner_start, owner_boot FROM open_tasks")
                .map_err(|e| self.store_err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        ProcessIdentity {
                            pid: r.get(1)?,
                            start: r.get::<_, i64>(2)?.max(0) as u64,
                            boot: r.get(3)?,
                        },
                    ))
                })
                .map_err(|e| self.store_err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.store_err(e))?
        };
        let mut revoked = Vec::new();
        for (task, owner) in owners {
            if !owner.is_alive() && !revoked.contains(&task) {
                self.revoke_task(&task, "recovered_after_crash")?;
                revoked.push(task);
            }
        }
        Ok(revoked)
    }

    /// Unexpired, unrevoked tokens (of `agent`, or of every agent).
    pub fn outstanding(&self, agent: Option<&str>) -> Result<u64> {
        let now = unix_seconds(self.clock.now());
        let conn = self.db();
        let sql = "SELECT COUNT(*) FROM tokens WHERE exp > ?1 AND (?2 IS NULL OR agent = ?2)
                   AND task NOT IN (SELECT task FROM revoked_tasks)";
        conn.query_row(sql, params![now, agent], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.store_err(e))
    }

    /// The signing keys.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        let conn = self.db();
        let mut stmt = conn
            .prepare(
                "SELECT kid, state, created, retired, max_exp FROM keys ORDER BY state, created DESC",
            )
            .map_err(|e| self.store_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let max_exp: i64 = r.get(4)?;
                Ok(KeyInfo {
                    kid: r.get(0)?,
                    state: r.get(1)?,
                    created: rfc3339(from_unix_seconds(r.get(2)?)),
                    retired: r
                        .get::<_, Option<i64>>(3)?
                        .map(|t| rfc3339(from_unix_seconds(t))),
                    verifies_until: (max_exp > 0).then(|| rfc3339(from_unix_seconds(max_exp))),
                })
            })
            .map_err(|e| self.store_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.store_err(e))
    }

    /// Rotate the signing key: a new key signs from now on; the old one is kept (and
    /// published) until the last token it signed expires; retired keys past that point, and
    /// records of expired tokens, are removed.
    pub fn rotate(&self) -> Result<Rotation> {
        let now = unix_seconds(self.clock.now());
        let rotation = {
            let mut conn = self.db();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.store_err(e))?;
            let store = |e| IdentityError::Store(self.path.clone(), e);
            let retired: Option<String> = tx
                .query_row("SELECT kid FROM keys WHERE state = 'active'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(store)?;
            tx.execute(
                "UPDATE keys SET state = 'retired', retired = ?1 WHERE state = 'active'",
                [now],
            )
            .map_err(store)?;
            let signer = new_key(&tx, &self.master, now, &self.path)?;
            let pruned: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT kid FROM keys WHERE state = 'retired' AND max_exp <= ?1")
                    .map_err(store)?;
                let rows = stmt.query_map([now], |r| r.get(0)).map_err(store)?;
                rows.collect::<rusqlite::Result<_>>().map_err(store)?
            };
            tx.execute(
                "DELETE FROM keys WHERE state = 'retired' AND max_exp <= ?1",
                [now],
            )
            .map_err(store)?;
            // A token's record (and with it its task's revocation) goes only with its key:
            // read with a clock ahead, `exp` would drop the revocation of a token that
            // verifies again once the clock is right; without its key, it never does.
            tx.execute(
                "DELETE FROM tokens WHERE exp <= ?1 AND kid NOT IN (SELECT kid FROM keys)",
                [now],
            )
            .map_err(store)?;
            tx.execute(
                "DELETE FROM revoked_tasks WHERE task NOT IN (SELECT task FROM tokens)",
                [],
            )
            .map_err(store)?;
            tx.execute(
                "DELETE FROM open_tasks WHERE task NOT IN (SELECT task FROM tokens)",
                [],
            )
            .map_err(store)?;
            tx.commit().map_err(store)?;
            Rotation {
                active: signer.kid().to_owned(),
                retired,
                pruned,
            }
        };
        self.forget_signer();
        Ok(rotation)
    }
}

/// Create the tables a store lacks and bring a store made by an earlier version up to
/// [`LAYOUT_VERSION`], in one transaction (concurrent openers wait for each other). A store
/// already at that version is left alone: no write lock, no statements to compile.
fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    let version = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
    };
    if version(conn)? == LAYOUT_VERSION {
        return Ok(());
    }
    conn.execute_batch(&format!("BEGIN IMMEDIATE;{SCHEMA}"))?;
    let result = (|| {
        let version = version(conn)?;
        if version < 2 {
            // A store from before `open_tasks` and its triggers: the tasks its tokens leave
            // open (also those an earlier version minted for while the table had no
            // triggers).
            // Expired or not, as recovery treats them (the clock may be wrong today).
            conn.execute(
                "INSERT OR IGNORE INTO open_tasks (task, owner_pid, owner_start, owner_boot)
                 SELECT DISTINCT task, owner_pid, owner_start, owner_boot FROM tokens
                 WHERE task NOT IN (SELECT task FROM revoked_tasks)",
                [],
            )?;
        }
        if version < LAYOUT_VERSION {
            conn.execute_batch(&format!("PRAGMA user_version = {LAYOUT_VERSION}"))?;
        }
        conn.execute_batch("COMMIT")
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

fn new_key(
    tx: &rusqlite::Transaction<'_>,
    master: &MasterKey,
    now: i64,
    path: &Path,
) -> Result<EcSigner> {
    let pkcs8 = EcSigner::generate_pkcs8()?;
    let signer = EcSigner::from_pkcs8(&pkcs8)?;
    let sealed = master.seal(&format!("identity key {}", signer.kid()), &pkcs8)?;
    let jwk =
        serde_json::to_string(signer.jwk()).map_err(|e| IdentityError::Crypto(e.to_string()))?;
    tx.execute(
        "INSERT INTO keys (kid, created, state, public_jwk, sealed) VALUES (?1, ?2, 'active', ?3, ?4)",
        params![signer.kid(), now, jwk, sealed],
    )
    .map_err(|e| IdentityError::Store(path.into(), e))?;
    Ok(signer)
}

fn load_settings(conn: &Connection, path: &Path) -> Result<Settings> {
    let get = |key: &str| -> Result<Option<String>> {
        conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| IdentityError::Store(path.into(), e))
    };
    let trust_domain = get("trust_domain")?.unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.into());
    let issuer = get("issuer")?.unwrap_or_else(|| DEFAULT_ISSUER.into());
    Ok(Settings {
        trust_domain: TrustDomain::new(&trust_domain)
            .map_err(|e| IdentityError::Corrupt(path.into(), e.to_string()))?,
        issuer: check_issuer(&issuer)
            .map_err(|e| IdentityError::Corrupt(path.into(), e.to_string()))?,
    })
}
