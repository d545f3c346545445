//! Globs matched against a whole name: `*` matches any run of characters
//! (also none), `?` exactly one character (one Unicode scalar value), every
//! other character itself. Rules' `hosts` patterns use [`Glob::new`] (host
//! names hold no `*`, `?` or `\`, so no escape is needed); silences use
//! [`Glob::with_escapes`] (`\*`, `\?`, `\\` match a literal `*`, `?`, `\`; a
//! backslash before any other character or at the end is itself literal).
//!
//! Matching is the classic two-pointer algorithm with one backtrack point:
//! O(pattern × name) at worst, no recursion, no allocation.

use std::fmt;

/// One element of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*`.
    Star,
    /// `?`.
    One,
    /// A literal character.
    Char(char),
}

/// A compiled glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.text)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Glob {
    /// `*` and `?` are wildcards; every other character is literal.
    pub fn new(pattern: &str) -> Glob {
        let tokens = pattern
            .chars()
            .map(|c| match c {
                '*' => Token::Star,
                '?' => Token::One,
                c => Token::Char(c),
            })
            .collect();
        Glob {
            text: pattern.to_owned(),
            tokens,
        }
    }

    /// As [`Glob::new`], and `\*`, `\?`, `\\` are a literal `*`, `?`, `\`.
    pub fn with_escapes(pattern: &str) -> Glob {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Star,
                '?' => Token::One,
                '\\' => match chars.peek() {
                    Some(&n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        Token::Char(n)
                    }
                    _ => Token::Char('\\'),
                },
                c => Token::Char(c),
            });
        }
        Glob {
            text: pattern.to_owned(),
            tokens,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: &str = name;
        let p = &self.tokens;
        let (mut pi, mut ni) = (0usize, 0usize);
        // The last `*` seen and the name position it was tried at.
        let mut back: Option<(usize, usize)> = None;
        let bytes_at = |i: usize| name[i..].chars().next();
        loop {
            let c = bytes_at(ni);
            match (p.get(pi), c) {
                (Some(Token::Star), _) => {
                    back = Some((pi, ni));
                    pi += 1;
                }
                (Some(Token::One), Some(ch)) => {
                    pi += 1;
                    ni += ch.len_utf8();
                }
                (Some(Token::Char(want)), Some(ch)) if *want == ch => {
                    pi += 1;
                    ni += ch.len_utf8();
                }
                (None, None) => return true,
                _ => {
                    // Let the last `*` swallow one more character.
                    let Some((star, at)) = back else {
                        return false;
                    };
                    let Some(ch) = bytes_at(at) else {
                        return false;
                    };
                    let at = at + ch.len_utf8();
                    back = Some((star, at));
                    pi = star + 1;
                    ni = at;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        for (pattern, name, want) in [
            ("web-*", "web-1", true),
            ("web-*", "web-", true),
            ("web-*", "db-1", false),
            ("web-?", "web-10", false),
            ("web-?", "web-1", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("*-1", "web-1", true),
            ("*a*a*a*a*b", &"a".repeat(40), false),
            ("?", "é", true),
            ("??", "é", false),
            ("node-*.example", "node-7.example", true),
        ] {
            assert_eq!(
                Glob::new(pattern).matches(name),
                want,
                "{pattern:?} {name:?}"
            );
        }
    }

    #[test]
    fn escapes() {
        for (pattern, name, want) in [
            (r"\*", "*", true),
            (r"\*", "a", false),
            ("*", "*", true),
            (r"/data \(x\)\*\?", r"/data \(x\)*?", true),
            (r"a\?", "a?", true),
            (r"a\?", "ab", false),
            (r"a\\", r"a\", true),
            (r"a\b", r"a\b", true),
            ("a\\", "a\\", true),
            ("!x", "!x", true),
        ] {
            assert_eq!(
                Glob::with_escapes(pattern).matches(name),
                want,
                "{pattern:?} {name:?}"
            );
        }
    }
}
