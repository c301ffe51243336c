//! The PostgreSQL backend against a real server (see `support::postgres`): connecting,
//! migrating (also by several nodes at once), and the errors of a bad or unreachable URL.

mod support;

use scrapyd_rs::storage::StorageError;
use scrapyd_rs::storage::postgres::{MIGRATIONS, Postgres};

#[tokio::test]
async fn a_new_database_is_migrated_once_even_by_nodes_starting_together() {
    let url = support::postgres::database();
    let connects: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Postgres::connect(&url, "node-1").await })
        })
        .collect();
    let mut dbs = Vec::new();
    for c in connects {
        dbs.push(c.await.unwrap().expect("every node connects"));
    }
    let known = MIGRATIONS.last().unwrap().version;
    for db in &dbs {
        assert_eq!(db.schema_version().await.unwrap(), known);
    }
    let name = url.rsplit('/').next().unwrap();
    let applied = support::postgres::server().psql_in(
        name,
        "SELECT count(*), count(DISTINCT version) FROM schema_migrations",
    );
    assert_eq!(applied, format!("{known}|{known}"));
    // Connecting again changes nothing.
    Postgres::connect(&url, "node-1").await.unwrap();
    assert_eq!(
        support::postgres::server().psql_in(name, "SELECT count(*) FROM schema_migrations"),
        known.to_string()
    );
}

#[tokio::test]
async fn a_database_of_a_newer_scrapyd_rs_is_refused_with_its_version() {
    let url = support::postgres::database();
    Postgres::connect(&url, "node-1").await.unwrap();
    let name = url.rsplit('/').next().unwrap();
    support::postgres::server().psql_in(name, "INSERT INTO schema_migrations VALUES (999)");
    let e = Postgres::connect(&url, "node-1")
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, StorageError::Internal(_)), "{e:?}");
    assert!(e.to_string().contains("schema version 999 is newer"), "{e}");
}

#[tokio::test]
async fn a_bad_or_unreachable_url_is_named_without_its_password() {
    let e = Postgres::connect("postgresql://u:secret@127.0.0.1:notaport/x", "node-1")
        .await
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(text.contains("is not a PostgreSQL URL"), "{text}");
    assert!(
        text.contains("postgresql://u:***@127.0.0.1:notaport/x"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");

    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://u:secret@127.0.0.1:{port}/x");
    let e = Postgres::connect(&url, "node-1")
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "cannot reach PostgreSQL at postgresql://u:***@127.0.0.1:{port}/x"
        )),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");

    // A database that does not exist on a running server.
    let missing = support::postgres::server().url("no_such_database");
    let e = Postgres::connect(&missing, "node-1")
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("no_such_database"), "{e}");
}
