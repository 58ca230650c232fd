//! `remit identity jwks|discovery|verify|configure`: task identities for third parties.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use remit_identity::{
    DEFAULT_ISSUER, DEFAULT_TRUST_DOMAIN, Expectations, Identity, Jwks, SystemClock, TrustDomain,
    Verified, verify_with_jwks,
};
use zeroize::Zeroizing;

use crate::cmd::secret::home_and_user;
use crate::exit::Outcome;

/// `remit identity` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Print the JWK Set that verifies task tokens (what `remit serve` publishes).
    Jwks,
    /// Print the OIDC discovery document.
    Discovery,
    /// Verify a task token: signature, issuer, audience, expiry, and (unless `--jwks`) that
    /// its task was not ended or killed. Exit 1 when refused.
    Verify {
        /// The token, or `-` to read it from standard input (keeps it out of `ps`).
        token: String,
        /// An audience the token must name.
        #[arg(long)]
        audience: Option<String>,
        /// Verify offline against this JWKS file, as a third party would (no revocation).
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
        /// With `--jwks`: the issuer to expect.
        #[arg(long, requires = "jwks", default_value = DEFAULT_ISSUER)]
        issuer: String,
        /// With `--jwks`: the trust domain to expect.
        #[arg(long, requires = "jwks", default_value = DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// Print the claims as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or change the trust domain and issuer of task identities.
    Configure {
        /// The trust domain (`example.org`).
        #[arg(long)]
        trust_domain: Option<String>,
        /// The issuer URL (`https://remit.example.org`).
        #[arg(long)]
        issuer: Option<String>,
    },
}

fn open() -> anyhow::Result<Identity> {
    let (home, _) = home_and_user();
    Ok(Identity::open_home(&home, Arc::new(SystemClock))?)
}

fn read_token(arg: &str) -> anyhow::Result<Zeroizing<String>> {
    if arg != "-" {
        return Ok(Zeroizing::new(arg.to_owned()));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        bail!("pipe the token in: `remit identity verify - < token`");
    }
    let mut text = Zeroizing::new(String::new());
    stdin
        .lock()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .context("cannot read standard input")?;
    Ok(Zeroizing::new(text.trim().to_owned()))
}

fn print(verified: &Verified, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&verified.claims)?);
        return Ok(());
    }
    let c = &verified.claims;
    println!("valid: {}", c.sub);
    println!("agent: {}  task: {}", c.agent, c.task);
    println!("owner: {}  requester: {}", c.owner, c.requester);
    println!("remit: {}", c.remit_hash);
    println!("audience: {}", c.aud.0.join(", "));
    println!(
        "expires: {}  key: {}",
        remit_identity::clock::rfc3339(remit_identity::clock::from_unix_seconds(c.exp)),
        verified.kid
    );
    Ok(())
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Jwks => {
            println!("{}", serde_json::to_string_pretty(&open()?.jwks()?)?);
        }
        Command::Discovery => {
            println!("{}", serde_json::to_string_pretty(&open()?.discovery())?);
        }
        Command::Configure {
            trust_domain,
            issuer,
        } => {
            let identity = open()?;
            let settings = identity.configure(trust_domain.as_deref(), issuer.as_deref())?;
            println!("trust domain: {}", settings.trust_domain);
            println!("issuer: {}", settings.issuer);
            println!("jwks: {}", settings.jwks_uri());
        }
        Command::Verify {
            token,
            audience,
            jwks,
            issuer,
            trust_domain,
            json,
        } => {
            let token = read_token(&token)?;
            let result = match jwks {
                Some(path) => {
                    let text = std::fs::read(&path)
                        .with_context(|| format!("cannot read `{}`", path.display()))?;
                    let set: Jwks = serde_json::from_slice(&text)
                        .with_context(|| format!("`{}` is not a JWK Set", path.display()))?;
                    let expect = Expectations {
                        issuer: remit_identity::identity::check_issuer(&issuer)?,
                        trust_domain: TrustDomain::new(&trust_domain)?,
                        audience,
                    };
                    verify_with_jwks(&token, &set, &expect, std::time::SystemTime::now())
                }
                None => open()?.verify(&token, audience.as_deref()),
            };
            match result {
                Ok(verified) => print(&verified, json)?,
                Err(refused) => {
                    eprintln!("remit: token refused: {refused}");
                    return Ok(Outcome::Denied);
                }
            }
        }
    }
    Ok(Outcome::Success)
}
