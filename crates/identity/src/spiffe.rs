//! SPIFFE IDs: `spiffe://<trust-domain>/agent/<agent>/task/<task>`.
//!
//! The rules are the SPIFFE ID standard's: a trust domain of lowercase letters, digits, `.`,
//! `-` and `_`; path segments of letters, digits, `.`, `-` and `_`, never empty, `.` or `..`;
//! no query, fragment, port or user info; at most 2048 bytes in all.

use std::fmt;

use crate::error::IdentityError;

/// The longest SPIFFE ID the standard allows, in bytes.
pub const MAX_LEN: usize = 2048;

/// A trust domain (`remit.local`, `example.org`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Check and wrap a trust domain name.
    pub fn new(name: &str) -> Result<TrustDomain, IdentityError> {
        let ok = !name.is_empty()
            && name.len() <= 255
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'_'
            });
        if !ok {
            return Err(IdentityError::BadTrustDomain(name.to_owned()));
        }
        Ok(TrustDomain(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `segment` is a valid SPIFFE path segment.
pub fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// A task's SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    agent: String,
    task: String,
}

impl SpiffeId {
    /// The ID of `task` run by `agent` in `trust_domain`.
    pub fn task(
        trust_domain: &TrustDomain,
        agent: &str,
        task: &str,
    ) -> Result<SpiffeId, IdentityError> {
        for (what, value) in [("agent", agent), ("task", task)] {
            if !valid_segment(value) {
                return Err(IdentityError::BadSegment(what, value.to_owned()));
            }
        }
        let id = SpiffeId {
            trust_domain: trust_domain.clone(),
            agent: agent.to_owned(),
            task: task.to_owned(),
        };
        if id.to_string().len() > MAX_LEN {
            return Err(IdentityError::BadSpiffeId(
                "longer than 2048 bytes".to_owned(),
            ));
        }
        Ok(id)
    }

    /// Parse `spiffe://<trust-domain>/agent/<agent>/task/<task>`.
    pub fn parse(text: &str) -> Result<SpiffeId, IdentityError> {
        let bad = |why: &str| IdentityError::BadSpiffeId(why.to_owned());
        if text.len() > MAX_LEN {
            return Err(bad("longer than 2048 bytes"));
        }
        let rest = text
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("it does not start with `spiffe://`"))?;
        let (domain, path) = rest.split_once('/').ok_or_else(|| bad("it has no path"))?;
        let trust_domain = TrustDomain::new(domain)?;
        let segments: Vec<&str> = path.split('/').collect();
        match segments.as_slice() {
            ["agent", agent, "task", task] => SpiffeId::task(&trust_domain, agent, task),
            _ => Err(bad("its path is not `/agent/<agent>/task/<task>`")),
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The agent's name.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The task id.
    pub fn task_id(&self) -> &str {
        &self.task
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/agent/{}/task/{}",
            self.trust_domain, self.agent, self.task
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let td = TrustDomain::new("remit.local").unwrap();
        let id = SpiffeId::task(&td, "ci-fixer", "01JCZ8Q6F3V4X2M8N9P0R1S2T3").unwrap();
        let text = id.to_string();
        assert_eq!(
            text,
            "spiffe://remit.local/agent/ci-fixer/task/01JCZ8Q6F3V4X2M8N9P0R1S2T3"
        );
        assert_eq!(SpiffeId::parse(&text).unwrap(), id);
        for bad in [
            "spiffe://Remit.local/agent/a/task/t",
            "spiffe://remit.local/agent/a/task/t/",
            "spiffe://remit.local/agent/../task/t",
            "spiffe://remit.local/agent//task/t",
            "spiffe://remit.local:8080/agent/a/task/t",
            "spiffe://remit.local/agent/a/task/t?x=1",
            "https://remit.local/agent/a/task/t",
            "spiffe://remit.local/workload/a",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
        assert!(SpiffeId::task(&td, "a b", "t").is_err());
        assert!(TrustDomain::new("").is_err());
    }
}
