//! [`RedisOptions`]: where the store connects and how patient it is.

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use metrics_model::RedisUrl;
use metrics_model::deployment::DEFAULT_SCOPE;

/// How to connect a [`crate::RedisStore`].
///
/// `url` accepts `redis://[user:pass@]host:port[/db]`, `rediss://…` (TLS,
/// rustls with the system's root certificates), the cluster form
/// `redis-cluster://[user:pass@]host:port?node=host2:port2&node=host3:port3`
/// (`rediss-cluster://` with TLS; one node is enough, the others are
/// discovered) and the sentinel form
/// `redis-sentinel://[user:pass@]host:26379/db?sentinelServiceName=NAME&node=host2:26379`.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// The Redis to use (the password never shows in logs or errors).
    pub url: RedisUrl,
    /// The key prefix (`BP_REDIS_SCOPE`, default `bp`).
    pub scope: String,
    /// How long one command (or one pipeline) may take before it fails with
    /// `StoreError::Unavailable`; also bounds waiting for a lost connection
    /// to come back. Default 3 s.
    pub command_timeout: StdDuration,
    /// How long [`crate::RedisStore::connect`] waits for the first
    /// connection. Default 5 s.
    pub connect_timeout: StdDuration,
    /// With a `rediss://` URL: a PEM file of the CA certificates to trust
    /// instead of the system's roots (a private CA, like
    /// `redis-cli --cacert`). `None` (the default) trusts the system's roots.
    pub tls_ca_file: Option<PathBuf>,
}

/// The default command timeout.
pub const DEFAULT_COMMAND_TIMEOUT: StdDuration = StdDuration::from_secs(3);
/// The default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: StdDuration = StdDuration::from_secs(5);

impl RedisOptions {
    /// Options with the default timeouts.
    pub fn new(url: RedisUrl, scope: impl Into<String>) -> RedisOptions {
        RedisOptions {
            url,
            scope: scope.into(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_ca_file: None,
        }
    }
}

impl Default for RedisOptions {
    /// `redis://127.0.0.1:6379`, scope `bp`, default timeouts.
    fn default() -> Self {
        let url = RedisUrl::parse("redis://127.0.0.1:6379")
            .unwrap_or_else(|_| unreachable!("a valid constant URL"));
        RedisOptions::new(url, DEFAULT_SCOPE)
    }
}
