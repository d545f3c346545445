//! Connecting: the fred client configuration from [`RedisOptions`] (the
//! URL's standalone, cluster and sentinel forms, TLS with an optional
//! private CA), the first connection within the connect timeout, and the
//! mapping of client errors to [`RedisStoreError`] that never shows the
//! password ([`scrub`]).

use std::sync::Arc;

use fred::prelude::*;
use metrics_model::RedisUrl;

use crate::error::RedisStoreError;
use crate::options::RedisOptions;

/// A client for `opts.url`, connected within `opts.connect_timeout`. On
/// failure the client is stopped (it would otherwise keep reconnecting).
pub(crate) async fn connect_client(opts: &RedisOptions) -> Result<Client, RedisStoreError> {
    let url = &opts.url;
    let client = build_client(opts)?;
    let connected = tokio::time::timeout(opts.connect_timeout, client.init()).await;
    let failure = match connected {
        Ok(Ok(_task)) => None,
        Ok(Err(e)) => Some(connect_error(&e, url)),
        Err(_) => Some(RedisStoreError::Unavailable(format!(
            "redis {url}: no connection within {:?}",
            opts.connect_timeout
        ))),
    };
    if let Some(err) = failure {
        let _ = tokio::time::timeout(opts.command_timeout, client.quit()).await;
        return Err(err);
    }
    Ok(client)
}

/// The (not yet connected) client: the URL's configuration, the TLS CA
/// file if any, the timeouts and the reconnect policy.
fn build_client(opts: &RedisOptions) -> Result<Client, RedisStoreError> {
    let url = &opts.url;
    let mut config = Config::from_url(url.expose()).map_err(|e| {
        RedisStoreError::Config(format!("REDIS_URL {url}: {}", scrub(e.details(), url)))
    })?;
    if let Some(ca) = &opts.tls_ca_file {
        if config.tls.is_none() {
            return Err(RedisStoreError::Config(format!(
                "REDIS_URL {url}: a TLS CA file ({}) is set but the URL is not rediss://",
                ca.display()
            )));
        }
        config.tls = Some(tls_with_ca(ca)?);
    }
    Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = opts.connect_timeout;
            c.internal_command_timeout = opts.command_timeout;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = opts.command_timeout;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2))
        .build()
        .map_err(|e| {
            RedisStoreError::Config(format!("REDIS_URL {url}: {}", scrub(e.details(), url)))
        })
}

/// A rustls client configuration trusting the CA certificates of the PEM
/// file `ca` (instead of the system's roots, like `redis-cli --cacert`).
fn tls_with_ca(ca: &std::path::Path) -> Result<fred::types::config::TlsConfig, RedisStoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let bad =
        |what: String| RedisStoreError::Config(format!("TLS CA file {}: {what}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no PEM certificate in the file".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(fred::types::config::TlsConnector::from(config).into())
}

/// Whether `e` means Redis cannot answer for now (connection lost, timeout,
/// loading, cluster down, failover): retrying later may succeed.
pub(crate) fn is_unavailable(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Backpressure
            | ErrorKind::Cluster
    ) || e.details().starts_with("LOADING")
        || e.details().starts_with("CLUSTERDOWN")
        || e.details().starts_with("TRYAGAIN")
        || e.details().starts_with("MASTERDOWN")
}

/// Maps a client error met while connecting (or checking at start-up) to
/// a [`RedisStoreError`], with a hint for TLS and authentication failures.
pub(crate) fn connect_error(e: &Error, url: &RedisUrl) -> RedisStoreError {
    let text = e.to_string();
    let msg = format!("redis {url}: {}", scrub(&text, url));
    if matches!(e.kind(), ErrorKind::Tls) || text.contains("InvalidCertificate") {
        return RedisStoreError::Config(format!(
            "{msg} (TLS: the server's certificate is not trusted for this host; check the host name, or give the CA file)"
        ));
    }
    match e.kind() {
        ErrorKind::Auth => {
            RedisStoreError::Redis(format!("{msg} (check the user and password in REDIS_URL)"))
        }
        _ if is_unavailable(e) => RedisStoreError::Unavailable(msg),
        ErrorKind::Config | ErrorKind::Url => RedisStoreError::Config(msg),
        _ => RedisStoreError::Redis(msg),
    }
}

/// Removes the URL's credentials from `text` (defence in depth: client
/// errors should not contain them, but a message must never leak one).
pub(crate) fn scrub(text: &str, url: &RedisUrl) -> String {
    url.scrub(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing() {
        let u = RedisUrl::parse("redis://bob:p%40ss@h:1/0").unwrap();
        assert_eq!(
            scrub("failed for redis://bob:p%40ss@h:1/0 p%40ss", &u),
            "failed for redis://bob:***@h:1/0 ***"
        );
        let u = RedisUrl::parse("redis://h:1").unwrap();
        assert_eq!(scrub("x", &u), "x");
        let u = RedisUrl::parse("redis://u@h:1?password=s3cret").unwrap();
        assert_eq!(
            scrub("failed for redis://u@h:1?password=s3cret (s3cret)", &u),
            "failed for redis://u@h:1?password=*** (***)"
        );
    }
}
