//! An access token (the dashboard's `BP_API_TOKEN`, the collector's
//! `BP_COLLECTOR_TOKEN`): never shown by `Debug`, compared in time
//! independent of where a guess differs.

/// A non-empty secret. Its `Debug` form is `Token(<redacted>)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token; `None` when `text` is empty.
    pub fn new(text: &str) -> Option<Token> {
        (!text.is_empty()).then(|| Token(text.to_owned()))
    }

    /// The secret itself, to send it (never log it).
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the token, compared in constant time (for the
    /// token's length: every byte is looked at whatever differs).
    pub fn matches(&self, given: &[u8]) -> bool {
        let want = self.0.as_bytes();
        let mut diff = want.len() ^ given.len();
        for (i, w) in want.iter().enumerate() {
            diff |= usize::from(w ^ given.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn matches_and_never_shows() {
        let t = Token::new("s3cret").unwrap();
        assert!(t.matches(b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"s3cres"] {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert!(Token::new("").is_none());
    }
}
