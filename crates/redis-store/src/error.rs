//! Errors of connecting to Redis. Operations of a connected store fail with
//! [`metrics_model::store::StoreError`].

use metrics_model::store::StoreError;

/// Why [`crate::RedisStore::connect`] failed. Messages never contain a
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisStoreError {
    /// The options are wrong (URL form, scope); fix the configuration.
    #[error("{0}")]
    Config(String),
    /// Redis could not be reached or did not answer in time; retrying later
    /// may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// Redis answered but is not usable: too old, or its data has a key
    /// layout this version does not understand. Retrying will not help.
    #[error("{0}")]
    Incompatible(String),
    /// Any other failure (authentication refused, permission missing…).
    #[error("{0}")]
    Redis(String),
}

impl From<RedisStoreError> for StoreError {
    fn from(e: RedisStoreError) -> Self {
        match e {
            RedisStoreError::Unavailable(m) => StoreError::Unavailable(m),
            RedisStoreError::Incompatible(m) => StoreError::Incompatible(m),
            RedisStoreError::Config(m) | RedisStoreError::Redis(m) => StoreError::Other(m),
        }
    }
}
