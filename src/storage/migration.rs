//! What the backends' versioned migrations share: a migration is a number and its SQL
//! (embedded), and a database is at the number of the last one it has; one that is at a number
//! this scrapyd-rs does not know was written by a newer one and is refused.

/// One migration: its number and its SQL.
pub struct Migration {
    pub version: u32,
    pub sql: &'static str,
}

/// A newer scrapyd-rs wrote the database: this one does not know its tables.
#[derive(Debug, thiserror::Error)]
#[error("its schema version {found} is newer than this scrapyd-rs knows ({known})")]
pub struct TooNew {
    pub found: u32,
    pub known: u32,
}

/// The migrations a database at version `found` lacks, in order.
pub fn missing(all: &[Migration], found: u32) -> Result<&[Migration], TooNew> {
    let known = all.last().map_or(0, |m| m.version);
    if found > known {
        return Err(TooNew { found, known });
    }
    Ok(&all[all.partition_point(|m| m.version <= found)..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Migration] = &[
        Migration {
            version: 1,
            sql: "a",
        },
        Migration {
            version: 2,
            sql: "b",
        },
    ];

    #[test]
    fn a_database_gets_the_migrations_after_its_version_and_a_newer_one_is_refused() {
        let versions = |found| -> Vec<u32> {
            missing(ALL, found)
                .unwrap()
                .iter()
                .map(|m| m.version)
                .collect()
        };
        assert_eq!(versions(0), [1, 2]);
        assert_eq!(versions(1), [2]);
        assert!(versions(2).is_empty());
        let e = missing(ALL, 3).err().unwrap();
        assert_eq!(
            e.to_string(),
            "its schema version 3 is newer than this scrapyd-rs knows (2)"
        );
    }
}
