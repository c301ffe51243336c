-- Collections: one row per project, type and name (with its id and last purge time), and
-- the records by collection and key (current value, write time in ms, older versions).
CREATE TABLE IF NOT EXISTS cloud_collection (
    project TEXT, name TEXT, type TEXT, id INTEGER NOT NULL,
    purged INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project, name, type)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cloud_collection_record (
    collection INTEGER, key TEXT, ts INTEGER NOT NULL, value TEXT NOT NULL, older TEXT,
    PRIMARY KEY (collection, key));
