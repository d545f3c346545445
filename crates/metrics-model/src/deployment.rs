//! How the environment selects the mode. One rule for every binary:
//! cluster mode when `REDIS_URL` is set, standalone when it is not, and
//! `CLUSTER_ENABLED=false` with `REDIS_URL` set forces standalone (with a
//! warning saying so). `BP_REDIS_SCOPE` prefixes every Redis key.
//!
//! Callers read the variables and pass their values in; this module does no IO.

use std::fmt;

use url::Url;

/// Standalone (in-memory, one process) or cluster (Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything in one process for the local machine, in-memory store.
    Standalone,
    /// Collectors and alerters share a Redis.
    Cluster,
}

/// The default key prefix.
pub const DEFAULT_SCOPE: &str = "bp";

/// The resolved deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The mode.
    pub mode: Mode,
    /// The Redis to use; `Some` exactly in cluster mode.
    pub redis_url: Option<RedisUrl>,
    /// The key prefix (`BP_REDIS_SCOPE`, default `bp`).
    pub scope: String,
    /// Things the operator should know (for example a forced standalone
    /// mode), to be logged as warnings.
    pub warnings: Vec<String>,
}

impl Default for Deployment {
    /// Standalone mode with the default scope (no environment read).
    fn default() -> Self {
        Deployment {
            mode: Mode::Standalone,
            redis_url: None,
            scope: "bp".to_owned(),
            warnings: Vec::new(),
        }
    }
}

/// A bad environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct DeploymentError {
    /// The variable's name.
    pub var: &'static str,
    /// What is wrong (never contains a password).
    pub message: String,
}

impl Deployment {
    /// Resolves the mode from this process's environment: `REDIS_URL`,
    /// `CLUSTER_ENABLED` and `BP_REDIS_SCOPE` (what every binary does).
    pub fn from_env() -> Result<Self, DeploymentError> {
        let var = |k: &str| std::env::var(k).ok();
        Deployment::from_env_values(
            var("REDIS_URL").as_deref(),
            var("CLUSTER_ENABLED").as_deref(),
            var("BP_REDIS_SCOPE").as_deref(),
        )
    }

    /// Resolves the mode from the values of `REDIS_URL`, `CLUSTER_ENABLED`
    /// and `BP_REDIS_SCOPE` (`None` or empty = unset).
    pub fn from_env_values(
        redis_url: Option<&str>,
        cluster_enabled: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Self, DeploymentError> {
        let scope = match nonempty(scope) {
            None => DEFAULT_SCOPE.to_owned(),
            Some(s) if is_valid_scope(s) => s.to_owned(),
            Some(s) => {
                return Err(DeploymentError {
                    var: "BP_REDIS_SCOPE",
                    message: format!("{s:?} is not a valid scope: use 1-64 of A-Z a-z 0-9 _ - ."),
                });
            }
        };
        let enabled = match nonempty(cluster_enabled) {
            None => None,
            Some(v) => Some(parse_bool(v).ok_or_else(|| DeploymentError {
                var: "CLUSTER_ENABLED",
                message: format!("{v:?} is not a boolean; use true or false"),
            })?),
        };
        let mut warnings = Vec::new();
        let url = match nonempty(redis_url) {
            Some(u) => Some(RedisUrl::parse(u).map_err(|message| DeploymentError {
                var: "REDIS_URL",
                message,
            })?),
            None => None,
        };
        let (mode, redis_url) = match (url, enabled) {
            (Some(_), Some(false)) => {
                warnings.push(
                    "CLUSTER_ENABLED=false: REDIS_URL is set but ignored; running standalone with an in-memory store"
                        .to_owned(),
                );
                (Mode::Standalone, None)
            }
            (Some(u), _) => (Mode::Cluster, Some(u)),
            (None, Some(true)) => {
                warnings.push(
                    "CLUSTER_ENABLED=true but REDIS_URL is not set; running standalone with an in-memory store"
                        .to_owned(),
                );
                (Mode::Standalone, None)
            }
            (None, _) => (Mode::Standalone, None),
        };
        Ok(Deployment {
            mode,
            redis_url,
            scope,
            warnings,
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn nonempty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// Whether `s` may prefix Redis keys: 1–64 of `A–Z a–z 0–9 _ - .`.
pub fn is_valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The schemes `REDIS_URL` accepts.
pub const REDIS_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis-cluster",
    "rediss-cluster",
    "redis-sentinel",
    "rediss-sentinel",
];

/// A Redis URL whose credentials never show: `Display` and `Debug` write
/// `redis://user:***@host:port/db`, with every credential-bearing query
/// parameter (`password=`, `pass=`, `sentinelPassword=`, any key naming a
/// password, secret, token or auth value) written `***` too.
/// [`RedisUrl::expose`] gives the full text for connecting, and nothing
/// else should call it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    full: String,
    redacted: String,
    /// Every secret of the URL, as written and percent-decoded, longest
    /// first (what [`RedisUrl::scrub`] removes from other texts).
    secrets: Vec<String>,
}

/// Whether a query parameter named `key` carries a credential.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "auth", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

impl RedisUrl {
    /// Parses and checks the scheme. The error never contains a credential.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| {
            format!("not a valid URL ({e}); expected redis://[user:pass@]host:port[/db]")
        })?;
        if !REDIS_SCHEMES.contains(&url.scheme()) {
            return Err(format!(
                "unsupported scheme {:?}; expected one of {}",
                url.scheme(),
                REDIS_SCHEMES
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(
                "the URL has no host; expected redis://[user:pass@]host:port[/db]".to_owned(),
            );
        }
        let mut secrets = Vec::new();
        let mut shown = url.clone();
        if let Some(p) = url.password() {
            secrets.push(p.to_owned());
            // Cannot fail: the URL has a host.
            let _ = shown.set_password(Some("***"));
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    if is_secret_key(&k) {
                        secrets.push(v.clone().into_owned());
                        (k.into_owned(), "***".to_owned())
                    } else {
                        (k.into_owned(), v.into_owned())
                    }
                })
                .collect();
            // The raw text of each secret value too, as written in the query.
            if let Some(q) = url.query() {
                for part in q.split('&') {
                    if let Some((k, v)) = part.split_once('=')
                        && is_secret_key(k)
                    {
                        secrets.push(v.to_owned());
                    }
                }
            }
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let mut decoded: Vec<String> = secrets
            .iter()
            .filter_map(|s| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            })
            .collect();
        secrets.append(&mut decoded);
        secrets.retain(|s| !s.is_empty() && s != "***");
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Ok(RedisUrl {
            full: text.to_owned(),
            redacted: shown.to_string(),
            secrets,
        })
    }

    /// The full URL, credentials included. Only for handing to the client.
    pub fn expose(&self) -> &str {
        &self.full
    }

    /// The URL with every credential replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// `text` (a client's error message, say) with the full URL replaced by
    /// the redacted one and every credential of the URL by `***`: defence in
    /// depth, so that no message can leak one.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.full, &self.redacted);
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: Option<&str>, enabled: Option<&str>) -> (Mode, usize) {
        let d = Deployment::from_env_values(url, enabled, None).unwrap();
        (d.mode, d.warnings.len())
    }

    #[test]
    fn modes() {
        assert_eq!(mode(None, None), (Mode::Standalone, 0));
        assert_eq!(mode(Some(""), None), (Mode::Standalone, 0));
        assert_eq!(
            mode(Some("redis://localhost:6379"), None),
            (Mode::Cluster, 0)
        );
        assert_eq!(
            mode(Some("redis://localhost:6379"), Some("true")),
            (Mode::Cluster, 0)
        );
        assert_eq!(
            mode(Some("redis://localhost:6379"), Some("false")),
            (Mode::Standalone, 1)
        );
        assert_eq!(mode(None, Some("true")), (Mode::Standalone, 1));
        let e = Deployment::from_env_values(None, Some("maybe"), None).unwrap_err();
        assert!(
            e.to_string().starts_with("CLUSTER_ENABLED: \"maybe\""),
            "{e}"
        );
        let e = Deployment::from_env_values(None, None, Some("a{b}")).unwrap_err();
        assert!(e.to_string().starts_with("BP_REDIS_SCOPE"), "{e}");
        assert_eq!(
            Deployment::from_env_values(None, None, None).unwrap().scope,
            "bp"
        );
    }

    #[test]
    fn passwords_never_show() {
        let u = RedisUrl::parse("redis://alice:s3cret@db.local:6380/2").unwrap();
        assert_eq!(u.to_string(), "redis://alice:***@db.local:6380/2");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.expose(), "redis://alice:s3cret@db.local:6380/2");
        let d = Deployment::from_env_values(Some("rediss://:s3cret@h:1"), None, None).unwrap();
        assert!(!format!("{d:?}").contains("s3cret"));
        // Every credential form of the URL: query parameters too.
        for (url, shown) in [
            (
                "redis://u@127.0.0.1:6501?password=s3cret",
                "redis://u@127.0.0.1:6501?password=***",
            ),
            (
                "redis://127.0.0.1:6501/0?pass=s3cret&x=1",
                "redis://127.0.0.1:6501/0?pass=***&x=1",
            ),
            (
                "redis-sentinel://:s3cret@h:26379?sentinelServiceName=m&sentinelPassword=s3cret%21",
                "redis-sentinel://:***@h:26379?sentinelServiceName=m&sentinelPassword=***",
            ),
            (
                "rediss://h:1?authToken=s3cret&PWD=s3cret",
                "rediss://h:1?authToken=***&PWD=***",
            ),
        ] {
            let u = RedisUrl::parse(url).unwrap();
            assert_eq!(u.to_string(), shown, "{url}");
            assert!(!format!("{u:?}").contains("s3cret"), "{url}");
            assert_eq!(u.expose(), url);
            let scrubbed = u.scrub(&format!("error at {url}: auth s3cret! s3cret%21 failed"));
            assert!(!scrubbed.contains("s3cret"), "{scrubbed}");
        }
        for bad in [
            "http://u:s3cret@h",
            "redis://u:s3cret@",
            "s3cret",
            "redis://u:s3cret@h:99999",
        ] {
            let e = Deployment::from_env_values(Some(bad), None, None)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("REDIS_URL: ") && !e.contains("s3cret"), "{e}");
        }
    }
}
