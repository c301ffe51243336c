-- Frontier slots (with their batch counter), their fingerprints and their queued requests
-- (by priority, batch and position: the queue order).
CREATE TABLE IF NOT EXISTS cloud_frontier_slot (
    project TEXT, frontier TEXT, slot TEXT, id INTEGER NOT NULL,
    next_batch INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (project, frontier, slot)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cloud_frontier_fingerprint (
    slot INTEGER, fp TEXT, fdata TEXT,
    PRIMARY KEY (slot, fp)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cloud_frontier_request (
    slot INTEGER, priority INTEGER, batch INTEGER, n INTEGER, fp TEXT NOT NULL, qdata TEXT,
    PRIMARY KEY (slot, priority, batch, n)) WITHOUT ROWID;
