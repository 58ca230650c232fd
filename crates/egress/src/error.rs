//! Errors of building and running the proxy.

/// A configuration that cannot be built. One line; secret values never appear.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The task CA or a TLS configuration could not be made.
    #[error("cannot set up tls interception: {0}")]
    Ca(String),
    /// A file of extra origin roots cannot be used.
    #[error("origin roots `{path}`: {reason}")]
    Roots {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A credential's environment variable is not set on the host.
    #[error("credential `{name}`: the environment variable `{var}` is not set on the host")]
    MissingEnv {
        /// The credential.
        name: String,
        /// The variable.
        var: String,
    },
    /// A credential's file cannot be read.
    #[error("credential `{name}`: cannot read `{path}`: {reason}")]
    ReadFile {
        /// The credential.
        name: String,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A credential's value cannot be used.
    #[error("credential `{name}`: {reason}")]
    BadCredential {
        /// The credential.
        name: String,
        /// Why, without the value.
        reason: String,
    },
    /// The secret matcher could not be built.
    #[error("cannot build the secret matcher: {0}")]
    Matcher(String),
    /// The built-in publish endpoint table is invalid.
    #[error("publish endpoints: {0}")]
    Publish(String),
    /// The `[network]` section is invalid.
    #[error("{0}")]
    Network(String),
}

/// Why [`crate::Egress::serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener failed in a way that will not pass.
    #[error("egress listener failed: {0}")]
    Accept(std::io::Error),
}
