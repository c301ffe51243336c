-- Collections: one row per project, type and name (with its id and last purge time), and
-- the records by collection and key (current value, write time in ms, older versions).
-- Keys compare bytewise (COLLATE "C"), as SQLite's do, so scans page in the same order.
CREATE TABLE cloud_collection (
    project text,
    name text,
    type text,
    id bigint NOT NULL UNIQUE,
    purged bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (project, name, type)
);
CREATE SEQUENCE cloud_collection_ids OWNED BY cloud_collection.id;
CREATE TABLE cloud_collection_record (
    collection bigint,
    key text COLLATE "C",
    ts bigint NOT NULL,
    value text NOT NULL,
    older text,
    PRIMARY KEY (collection, key)
);
