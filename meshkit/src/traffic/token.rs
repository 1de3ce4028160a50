//! Idempotency tokens for writes, within every backend's limit.

/// The longest token meshkit sends: App Mesh's `clientToken` limit, the strictest of
/// the backends meshkit supports.
pub const MAX_TOKEN_LEN: usize = 36;

/// An idempotency token for one write: `{scope}-{step}` when that fits in
/// [`MAX_TOKEN_LEN`] characters, else the first characters of `scope` and a 64-bit
/// digest of the whole. The same inputs always give the same token (so a retry of a
/// write reuses it); different steps give different tokens. Characters outside
/// `[A-Za-z0-9_-]` are replaced by `_`.
///
/// ```
/// use meshkit::traffic::{MAX_TOKEN_LEN, client_token};
///
/// assert_eq!(client_token("mk0123456789abcdef", "3"), "mk0123456789abcdef-3");
/// let long = client_token("a-rollout-id-of-32-characters-xx", "rollback");
/// assert!(long.len() <= MAX_TOKEN_LEN);
/// assert_ne!(long, client_token("a-rollout-id-of-32-characters-xx", "final"));
/// ```
pub fn client_token(scope: &str, step: &str) -> String {
    let plain: String = format!("{scope}-{step}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if plain.len() <= MAX_TOKEN_LEN {
        return plain;
    }
    // FNV-1a over the unabridged text: stable across runs and builds.
    let mut h = super::Fnv::default();
    h.eat(scope.bytes().chain([0]).chain(step.bytes()));
    let h = h.0;
    let keep = MAX_TOKEN_LEN - 17;
    let head: String = plain.chars().take(keep).collect();
    format!("{head}-{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_fit_and_differ() {
        let id = "x".repeat(32);
        let mut seen = std::collections::HashSet::new();
        for step in [
            "0",
            "1",
            "12",
            "rollback",
            "final",
            "retire",
            "manual-100-1764500000",
        ] {
            for scope in [id.as_str(), "mk0123456789abcdef", "a"] {
                let t = client_token(scope, step);
                assert!(t.len() <= MAX_TOKEN_LEN, "{t}");
                assert!(
                    t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                );
                assert_eq!(t, client_token(scope, step));
                assert!(seen.insert(t), "{scope} {step}");
            }
        }
        assert_eq!(client_token("a b", "1"), "a_b-1");
    }
}
