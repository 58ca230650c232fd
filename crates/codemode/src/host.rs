//! What a binding call asks of the world: the [`Host`] trait. The isolate knows nothing of
//! tasks or gates; a host does (the task's host in [`crate::task`], a test double, a
//! benchmark's no-op).

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::tools::Call;

/// A future a host answers with later.
pub type Pending = Pin<Box<dyn Future<Output = Result<serde_json::Value, CallError>> + Send>>;

/// A host's answer to one call.
pub enum Reply {
    /// Answered now (no effect outside the process, or a refusal decided at once).
    Ready(Result<serde_json::Value, CallError>),
    /// Answered when the future resolves (it runs on the host's runtime, not the isolate's
    /// thread).
    Later(Pending),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Reply::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// Why a call failed, as the script (or an MCP client) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line, for the agent: what happened and what it may do instead.
    pub message: String,
    /// The policy that refused, for `denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The approval to wait for, for `pending`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

/// A [`CallError`]'s kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorCode {
    /// The remit refused.
    Denied,
    /// A human must approve first.
    Pending,
    /// Bad arguments.
    Invalid,
    /// Allowed, but it did not work.
    Failed,
    /// The task was stopped.
    Killed,
    /// A limit of the script was reached.
    Limit,
}

impl ErrorCode {
    /// Its name, as scripts see it in `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Denied => "denied",
            ErrorCode::Pending => "pending",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Failed => "failed",
            ErrorCode::Killed => "killed",
            ErrorCode::Limit => "limit",
        }
    }
}

impl CallError {
    /// A failure of some kind with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CallError {
        CallError {
            code,
            message: message.into(),
            policy: None,
            approval: None,
        }
    }

    /// Bad arguments.
    pub fn invalid(message: impl Into<String>) -> CallError {
        CallError::new(ErrorCode::Invalid, message)
    }

    /// It did not work.
    pub fn failed(message: impl Into<String>) -> CallError {
        CallError::new(ErrorCode::Failed, message)
    }

    /// The remit refused.
    pub fn denied(policy: &str, reason: &str) -> CallError {
        CallError {
            code: ErrorCode::Denied,
            message: format!("denied: {reason} (policy `{policy}`)"),
            policy: Some(policy.to_owned()),
            approval: None,
        }
    }

    /// A human must approve.
    pub fn pending(approval: &str) -> CallError {
        CallError {
            code: ErrorCode::Pending,
            message: format!(
                "pending approval {approval}: a human must run `remit approvals approve {approval}` on the host; ask again with the same arguments once it is approved"
            ),
            policy: None,
            approval: Some(approval.to_owned()),
        }
    }
}

/// What the isolate calls. Implementations decide and perform each call (or refuse it).
pub trait Host: Send + Sync + 'static {
    /// Perform one call made by the script whose digest is `script`.
    fn call(&self, script: &str, call: Call) -> Reply;

    /// Make text safe to hand back (the script's output and result): remove secrets.
    fn redact(&self, text: &str) -> String {
        text.to_owned()
    }
}
