//! [`UiError`]: why the web view could not start.

/// Why [`Dashboard::start`](super::Dashboard::start) or a [`Token`](super::Token)
/// failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// The address could not be bound (in use, not this machine's, no permission).
    #[error("cannot listen on {addr}: {source} (choose another address or port)")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A token given is not acceptable.
    #[error("invalid token: {0}")]
    Token(String),
    /// The operating system gave no random bytes for a token.
    #[error("cannot generate a token: {0}")]
    Random(String),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}
