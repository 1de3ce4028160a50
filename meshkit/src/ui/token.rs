//! [`Token`]: the secret that lets a person act (and, beyond loopback, look).

use std::fmt;

use subtle::ConstantTimeEq;

use super::UiError;

/// The secret the web view asks for before any action, sent by the page in an
/// `Authorization: Bearer` header (never a cookie, so another site cannot make a
/// user's browser send it). Compared in constant time. Its `Debug` form hides it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// A new random token: 32 bytes from the operating system, as 64 hex digits.
    pub fn generate() -> Result<Self, UiError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| UiError::Random(e.to_string()))?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// A token chosen by the user (e.g. from `MESHKIT_UI_TOKEN`): 16-256 characters,
    /// letters, digits and `-._~` only (so it fits a header and a link as it is).
    pub fn new(token: impl Into<String>) -> Result<Self, UiError> {
        let token = token.into();
        let ok_chars = token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
        if !(16..=256).contains(&token.len()) || !ok_chars {
            return Err(UiError::Token(
                "a token must be 16-256 characters of letters, digits and -._~".into(),
            ));
        }
        Ok(Self(token))
    }

    /// The token itself, to put in a link or hand to a person.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token, in time that does not depend on where they
    /// differ.
    pub fn matches(&self, given: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(given).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_long_random_and_hidden() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_eq!(a.reveal().len(), 64);
        assert_ne!(a.reveal(), b.reveal());
        assert!(a.matches(a.reveal().as_bytes()));
        assert!(!a.matches(b.reveal().as_bytes()));
        assert!(!a.matches(&a.reveal().as_bytes()[..63]));
        assert!(!a.matches(b""));
        assert_eq!(format!("{a:?}"), "Token(…)");
    }

    #[test]
    fn given_tokens_are_checked() {
        for bad in [
            "short",
            "has space in it 1234",
            "quote\"quote\"quote\"",
            &"x".repeat(257),
        ] {
            assert!(Token::new(bad).is_err(), "{bad}");
        }
        let t = Token::new("correct-horse.battery~staple").unwrap();
        assert!(t.matches(b"correct-horse.battery~staple"));
    }
}
