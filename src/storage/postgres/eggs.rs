//! The eggs of a cluster on PostgreSQL ([`EggTables`]): bytes by SHA-256, versions with their
//! spider lists, extra eggs. Every change moves `change_feed.eggs` (and wakes the other nodes)
//! in its transaction; blobs no version or extra egg uses go in the same transaction.

use super::Postgres;
use super::tx::{PgTx, Result};
use crate::storage::model::{EggIndex, SharedEgg, SharedExtraEgg};
use tokio_postgres::types::Json;

/// The cluster's egg tables (a handle on the database; see [`crate::eggs`] for the mirror
/// each node keeps).
#[derive(Clone)]
pub struct EggTables(pub(super) Postgres);

/// An egg being stored: its bytes and their hash.
pub struct EggBytes<'a> {
    pub sha256: String,
    pub data: &'a [u8],
}

impl PgTx<'_> {
    fn put_blob(&self, blob: &EggBytes<'_>) -> Result<()> {
        self.exec(
            "INSERT INTO egg_blobs (sha256, data) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&blob.sha256, &blob.data],
        )?;
        Ok(())
    }

    /// Moves the egg version, drops unused blobs, and tells the other nodes.
    fn eggs_changed(&self) -> Result<()> {
        self.exec(
            "DELETE FROM egg_blobs b WHERE NOT EXISTS (SELECT 1 FROM eggs e WHERE e.sha256 = b.sha256)
             AND NOT EXISTS (SELECT 1 FROM extra_eggs x WHERE x.sha256 = b.sha256)",
            &[],
        )?;
        let version: i64 = self
            .one("UPDATE change_feed SET eggs = eggs + 1 RETURNING eggs", &[])?
            .get(0);
        let payload = format!("eggs {version}");
        self.query("SELECT pg_notify('scrapyd_changes', $1)", &[&payload])?;
        Ok(())
    }
}

impl EggTables {
    /// The egg tables of this database.
    pub fn new(db: Postgres) -> EggTables {
        EggTables(db)
    }

    /// The egg version (moves with every change).
    pub async fn version(&self) -> Result<u64> {
        self.0
            .transact_pg(true, |tx| {
                Ok(tx
                    .one("SELECT eggs FROM change_feed", &[])?
                    .get::<_, i64>(0) as u64)
            })
            .await
    }

    /// Every egg and extra egg, as of one moment.
    pub async fn index(&self) -> Result<EggIndex> {
        self.0
            .transact_pg(true, |tx| {
                let version: i64 = tx.one("SELECT eggs FROM change_feed", &[])?.get(0);
                let eggs = tx
                    .query(
                        "SELECT project, version, sha256, spiders FROM eggs ORDER BY project, version",
                        &[],
                    )?
                    .iter()
                    .map(|r| SharedEgg {
                        project: r.get(0),
                        version: r.get(1),
                        sha256: r.get(2),
                        spiders: serde_json::from_value(r.get(3)).unwrap_or_default(),
                    })
                    .collect();
                let extras = tx
                    .query(
                        "SELECT project, name, version, sha256 FROM extra_eggs ORDER BY project, name",
                        &[],
                    )?
                    .iter()
                    .map(|r| SharedExtraEgg {
                        project: r.get(0),
                        name: r.get(1),
                        version: r.get(2),
                        sha256: r.get(3),
                    })
                    .collect();
                Ok(EggIndex {
                    version: version as u64,
                    eggs,
                    extras,
                })
            })
            .await
    }

    /// The bytes of an egg, by hash.
    pub async fn data(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let sha = sha256.to_owned();
        self.0
            .transact_pg(true, move |tx| {
                Ok(tx
                    .opt("SELECT data FROM egg_blobs WHERE sha256 = $1", &[&sha])?
                    .map(|r| r.get(0)))
            })
            .await
    }

    /// Stores a version (replacing one of the same name) with its spider list and the extra
    /// eggs uploaded with it (replacing those of the same names), in one transaction.
    pub async fn store(
        &self,
        project: &str,
        version: &str,
        egg: EggBytes<'_>,
        spiders: &[String],
        extras: Vec<(SharedExtraEgg, EggBytes<'_>)>,
    ) -> Result<()> {
        let (project, version) = (project.to_owned(), version.to_owned());
        let egg = (egg.sha256, egg.data.to_vec());
        let spiders = spiders.to_vec();
        let extras: Vec<(SharedExtraEgg, String, Vec<u8>)> = extras
            .into_iter()
            .map(|(x, b)| (x, b.sha256, b.data.to_vec()))
            .collect();
        self.0
            .transact_pg(false, move |tx| {
                for (x, sha256, data) in &extras {
                    tx.put_blob(&EggBytes {
                        sha256: sha256.clone(),
                        data,
                    })?;
                    tx.exec(
                        "INSERT INTO extra_eggs (project, name, version, sha256) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (project, name)
                         DO UPDATE SET version = excluded.version, sha256 = excluded.sha256",
                        &[&project, &x.name, &x.version, sha256],
                    )?;
                }
                tx.put_blob(&EggBytes {
                    sha256: egg.0.clone(),
                    data: &egg.1,
                })?;
                tx.exec(
                    "INSERT INTO eggs (project, version, sha256, spiders) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (project, version)
                     DO UPDATE SET sha256 = excluded.sha256, spiders = excluded.spiders,
                                   added = now()",
                    &[&project, &version, &egg.0, &Json(&spiders)],
                )?;
                tx.eggs_changed()
            })
            .await
    }

    /// Adds (or replaces) an extra egg of a project.
    pub async fn store_extra(&self, extra: SharedExtraEgg, data: &[u8]) -> Result<()> {
        let data = data.to_vec();
        self.0
            .transact_pg(false, move |tx| {
                tx.put_blob(&EggBytes {
                    sha256: extra.sha256.clone(),
                    data: &data,
                })?;
                tx.exec(
                    "INSERT INTO extra_eggs (project, name, version, sha256) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (project, name)
                     DO UPDATE SET version = excluded.version, sha256 = excluded.sha256",
                    &[&extra.project, &extra.name, &extra.version, &extra.sha256],
                )?;
                tx.eggs_changed()
            })
            .await
    }

    /// Removes an extra egg; whether it existed.
    pub async fn delete_extra(&self, project: &str, name: &str) -> Result<bool> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.0
            .transact_pg(false, move |tx| {
                let n = tx.exec(
                    "DELETE FROM extra_eggs WHERE project = $1 AND name = $2",
                    &[&project, &name],
                )?;
                if n > 0 {
                    tx.eggs_changed()?;
                }
                Ok(n > 0)
            })
            .await
    }

    /// Removes a version (the project goes with its last version, its extra eggs too);
    /// whether it existed.
    pub async fn delete_version(&self, project: &str, version: &str) -> Result<bool> {
        let (project, version) = (project.to_owned(), version.to_owned());
        self.0
            .transact_pg(false, move |tx| {
                let n = tx.exec(
                    "DELETE FROM eggs WHERE project = $1 AND version = $2",
                    &[&project, &version],
                )?;
                if n == 0 {
                    return Ok(false);
                }
                tx.exec(
                    "DELETE FROM extra_eggs WHERE project = $1
                     AND NOT EXISTS (SELECT 1 FROM eggs WHERE project = $1)",
                    &[&project],
                )?;
                tx.eggs_changed()?;
                Ok(true)
            })
            .await
    }

    /// Removes every version and extra egg of a project; whether it had any.
    pub async fn delete_project(&self, project: &str) -> Result<bool> {
        let project = project.to_owned();
        self.0
            .transact_pg(false, move |tx| {
                let n = tx.exec("DELETE FROM eggs WHERE project = $1", &[&project])?
                    + tx.exec("DELETE FROM extra_eggs WHERE project = $1", &[&project])?;
                if n > 0 {
                    tx.eggs_changed()?;
                }
                Ok(n > 0)
            })
            .await
    }
}
