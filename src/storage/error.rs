//! The one error type of the storage layer. Callers see what went wrong in their terms (the
//! database cannot be reached, a row is missing, a write conflicts); each backend maps its own
//! errors into it, and [`crate::error`] maps it once to the answers of the APIs.

/// Why a storage method failed. A failed method changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be used now (it is not reachable, locked, full, or the storage
    /// thread has stopped because the daemon is shutting down); the same call may succeed
    /// later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// What the call names does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The write conflicts with what is stored (a unique key, a row changed meanwhile).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database refused the call or holds what this version cannot read.
    #[error("database error: {0}")]
    Internal(String),
}

impl StorageError {
    /// The storage thread (or pool) is gone: the daemon is shutting down.
    pub fn closed() -> StorageError {
        StorageError::Unavailable("the database thread has stopped".into())
    }
}
