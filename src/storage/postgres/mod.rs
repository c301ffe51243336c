//! The PostgreSQL backend, for several nodes sharing one database (issue 11, being built: every
//! storage method runs here, and the conformance suite holds it to SQLite's answers; until the
//! nodes and `database_url` land, no daemon opens this backend).
//!
//! - [`Postgres::connect`]: a pool of connections (`deadpool-postgres` over `tokio-postgres`,
//!   prepared statements cached per connection) to the URL, checked by one round trip, then
//!   migrated. Errors name the URL without its password.
//! - [`migrate`]: numbered SQL files (`storage/postgres/migrations/NNNN_*.sql`, embedded), all
//!   applied in one transaction that first takes a transaction-level advisory lock, so nodes
//!   starting at once against an empty database apply each migration once and wait for each
//!   other; a database written by a newer scrapyd-rs is refused with its version.
//! - [`Postgres::transact`]: a storage method as one transaction ([`tx::PgTx`], the row
//!   operations in `queue.rs`, `registry.rs` and `collections.rs`); writes at READ COMMITTED
//!   with row locks (`FOR UPDATE SKIP LOCKED` for the claim) and advisory locks (admission,
//!   ids) where two nodes could otherwise both act, reads at REPEATABLE READ so that a method
//!   that reads several tables answers as of one moment. The change feed (`change_feed`) moves
//!   in the transaction of every queue or job change, and `NOTIFY scrapyd_changes` tells the
//!   other nodes at commit.

mod collections;
mod eggs;
mod nodes;
mod queue;
mod registry;
mod tx;

use super::StorageError;
use super::migration::{Migration, TooNew, missing};
use super::rows::Rows;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
pub use eggs::{EggBytes, EggTables};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio_postgres::IsolationLevel;
use tokio_postgres::NoTls;
use tx::PgTx;

/// The migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("migrations/0001_jobs.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("migrations/0002_registry.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("migrations/0003_activity.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("migrations/0004_collections.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("migrations/0005_frontier.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("migrations/0006_changes.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("migrations/0007_eggs.sql"),
    },
];

/// The advisory lock key that serializes migrations (any fixed number no other program of the
/// database is likely to take: "scrapyd" in ASCII).
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"\0scrapyd");

/// Connections kept per node: the launcher, the listing and a burst of requests.
const POOL_SIZE: usize = 16;

/// How long a request waits for a connection (or for a new one to be made) before it is
/// answered `DatabaseError: … unavailable` instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A cheap, clonable handle to the pool.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// The connection settings (for the listening connection, outside the pool).
    config: Arc<tokio_postgres::Config>,
    /// The URL without its password, for messages.
    shown: Arc<str>,
    /// This node's name.
    node: Arc<str>,
    /// What this node last saw of the change feed, and its activity writes.
    seen: Arc<Seen>,
    /// This node's registration number (0 before it registers: it claims nothing).
    registration: Arc<AtomicI64>,
}

#[derive(Default)]
struct Seen {
    generation: AtomicU64,
    finished_version: AtomicU64,
    activity_writes: AtomicU64,
}

impl Postgres {
    /// Connects to `url` (`postgresql://user:password@host:port/db`), checks that the server
    /// answers, and brings the database's schema up to date.
    pub async fn connect(url: &str, node: &str) -> Result<Postgres, StorageError> {
        let shown = without_password(url);
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StorageError::Internal(format!("database_url {shown} is not a PostgreSQL URL: {e}"))
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("scrapyd-rs");
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StorageError::Internal(format!("database_url {shown}: {e}")))?;
        let db = Postgres {
            pool,
            config: Arc::new(config),
            shown: shown.into(),
            node: node.into(),
            seen: Default::default(),
            registration: Default::default(),
        };
        let mut client = db.client().await?;
        migrate(&mut client)
            .await
            .map_err(|e| db.error("cannot migrate the database", e))?;
        Ok(db)
    }

    /// A connection from the pool.
    async fn client(&self) -> Result<deadpool_postgres::Object, StorageError> {
        self.pool.get().await.map_err(|e| {
            StorageError::Unavailable(format!("cannot reach PostgreSQL at {}: {e}", self.shown))
        })
    }

    /// A database error, in the storage layer's terms.
    fn error(&self, doing: &str, e: MigrateError) -> StorageError {
        match e {
            MigrateError::TooNew(_) => StorageError::Internal(format!("{}: {e}", self.shown)),
            MigrateError::Postgres(e) => from_postgres(&self.shown, doing, &e),
        }
    }

    /// The write generation as this node last saw it (by its own transactions; see the
    /// module's documentation for the feed).
    pub fn generation(&self) -> u64 {
        self.seen.generation.load(Ordering::Acquire)
    }

    /// The finished version as this node last saw it.
    pub fn finished_version(&self) -> u64 {
        self.seen.finished_version.load(Ordering::Acquire)
    }

    fn saw(&self, (generation, finished): (u64, u64)) {
        self.seen.generation.fetch_max(generation, Ordering::AcqRel);
        self.seen
            .finished_version
            .fetch_max(finished, Ordering::AcqRel);
    }

    /// Runs a method that writes, as one transaction.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Rows) -> Result<R, StorageError> + Send + 'static,
    {
        self.transact_pg(false, move |tx| f(tx)).await
    }

    /// Runs a method that reads, as of one moment; returns its result with the write
    /// generation of that moment.
    pub async fn read<R, F>(&self, f: F) -> Result<(u64, R), StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Rows) -> Result<R, StorageError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.transact(true, move |tx| f(tx)))
            .await
            .map_err(|_| StorageError::closed())?
    }

    /// Runs `f` as one transaction on a blocking thread (see [`Postgres::transact`]).
    async fn transact_pg<R, F>(&self, read: bool, f: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut PgTx<'_>) -> Result<R, StorageError> + Send + 'static,
    {
        let db = self.clone();
        let (_, r) = tokio::task::spawn_blocking(move || db.transact(read, f))
            .await
            .map_err(|_| StorageError::closed())??;
        Ok(r)
    }

    /// Runs `f` in one transaction on a blocking thread (REPEATABLE READ when it only reads):
    /// committed when it returns `Ok`, rolled back otherwise. Answers the write generation
    /// the transaction ends at.
    fn transact<R>(
        &self,
        read: bool,
        f: impl FnOnce(&mut PgTx<'_>) -> Result<R, StorageError>,
    ) -> Result<(u64, R), StorageError> {
        let rt = tokio::runtime::Handle::current();
        let mut client = rt.block_on(self.client())?;
        let fail =
            |e: tokio_postgres::Error| from_postgres(&self.shown, "a transaction failed", &e);
        let level = if read {
            IsolationLevel::RepeatableRead
        } else {
            IsolationLevel::ReadCommitted
        };
        let tx = rt
            .block_on(client.build_transaction().isolation_level(level).start())
            .map_err(fail)?;
        let mut t = PgTx {
            tx,
            rt: rt.clone(),
            node: &self.node,
            registration: self.registration.load(Ordering::Acquire),
            shown: &self.shown,
            jobs_changed: false,
            finished: Vec::new(),
            activity_writes: &self.seen.activity_writes,
        };
        // A read sees the feed as of its snapshot (taken by its first statement).
        let before = if read { Some(t.versions()?) } else { None };
        let value = f(&mut t)?;
        let published = t.publish()?;
        rt.block_on(t.tx.commit()).map_err(fail)?;
        let versions = match (published, before) {
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => (self.generation(), self.finished_version()),
        };
        self.saw(versions);
        Ok((versions.0, value))
    }

    /// Reads the change feed, so that [`Postgres::generation`] and
    /// [`Postgres::finished_version`] are at least what was committed before this call.
    pub async fn refresh_versions(&self) -> Result<(), StorageError> {
        self.transact_pg(true, |_| Ok(())).await
    }

    /// Listens for the other nodes' changes (`NOTIFY scrapyd_changes`) until `stop`: each one
    /// moves the generation this node knows and calls `on_change` (the launcher's wake-up).
    /// A lost connection is made again after a second; meanwhile the launcher's poll and the
    /// listing's reads of the feed keep everything correct, only slower.
    pub fn listen(
        &self,
        on_change: impl Fn() + Send + Sync + 'static,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let db = self.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Err(e) = db.listen_once(&on_change, &stop).await {
                    tracing::warn!("not listening to the other nodes' changes: {e}");
                }
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    async fn listen_once(
        &self,
        on_change: &(impl Fn() + Send + Sync),
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(), StorageError> {
        let fail = |e: tokio_postgres::Error| from_postgres(&self.shown, "cannot listen", &e);
        let (client, mut connection) = self.config.connect(NoTls).await.map_err(fail)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        let _ = tx.send(n.payload().parse::<u64>().unwrap_or(0));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
        let listening = client.batch_execute("LISTEN scrapyd_changes").await;
        if let Err(e) = listening {
            driver.abort();
            return Err(fail(e));
        }
        // What changed before the LISTEN took effect.
        on_change();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                generation = rx.recv() => match generation {
                    Some(g) => {
                        self.seen.generation.fetch_max(g, Ordering::AcqRel);
                        on_change();
                    }
                    None => break,
                },
            }
        }
        driver.abort();
        Ok(())
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<u32, StorageError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(|e| from_postgres(&self.shown, "cannot read the schema version", &e))?;
        Ok(row.get::<_, i32>(0).max(0) as u32)
    }
}

/// Maps a PostgreSQL error: a lost or refused connection is `Unavailable` (the same call may
/// succeed later), a unique or serialization violation a `Conflict`, anything else `Internal`.
fn from_postgres(shown: &str, doing: &str, e: &tokio_postgres::Error) -> StorageError {
    use tokio_postgres::error::SqlState;
    // A server error's own message (the client's `Display` says only "db error").
    let message = match e.as_db_error() {
        Some(db) => format!("{doing} ({shown}): {} [{}]", db.message(), db.code().code()),
        None => format!("{doing} ({shown}): {e}"),
    };
    match e.code() {
        None => StorageError::Unavailable(message),
        Some(c)
            if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            StorageError::Conflict(message)
        }
        Some(c)
            if c.code().starts_with("08")
                || c.code().starts_with("57P")
                || *c == SqlState::TOO_MANY_CONNECTIONS =>
        {
            StorageError::Unavailable(message)
        }
        Some(_) => StorageError::Internal(message),
    }
}

/// `url` with its password replaced by `***` (a URL that cannot be read is shown as its scheme
/// and host part only, never whole).
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = path.split('?').next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let password = if user.contains(':') { ":***" } else { "" };
            let user = user.split(':').next().unwrap_or("");
            format!("{scheme}://{user}{password}@{host}{path}")
        }
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// Why the schema cannot be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    TooNew(#[from] TooNew),
}

/// Applies the migrations the database lacks, in one transaction under the migration lock.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             applied timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    for m in missing(MIGRATIONS, found.max(0) as u32)? {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(m.version as i32)],
        )
        .await?;
        tracing::info!(version = m.version, "migrated the PostgreSQL database");
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            without_password("postgresql://u:secret@db:5432/scrapyd"),
            "postgresql://u:***@db:5432/scrapyd"
        );
        assert_eq!(
            without_password("postgresql://u:p@ss@db/x?password=y"),
            "postgresql://u:***@db/x"
        );
        assert_eq!(without_password("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(without_password("postgresql://db"), "postgresql://db");
        assert_eq!(without_password("host=db password=x"), "(not a URL)");
    }

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
        }
    }
}
