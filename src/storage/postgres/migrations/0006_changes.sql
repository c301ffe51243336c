-- The change feed: a write generation that moves (in the same transaction) whenever a queue
-- or job row changes, and a version of the finished jobs with the changes it numbers, so a
-- listing cached on any node can tell it is current and follow what changed. The feed's one
-- row is updated last in a transaction, so versions are taken in commit order.
CREATE TABLE change_feed (
    id integer PRIMARY KEY CHECK (id = 1),
    generation bigint NOT NULL,
    finished_version bigint NOT NULL,
    -- How many finished job rows there are, kept in the transactions that change them, so the
    -- retention (`finished_to_keep`) deletes the oldest without counting them.
    finished_count bigint NOT NULL DEFAULT 0
);
INSERT INTO change_feed (id, generation, finished_version) VALUES (1, 0, 0);
-- One row per change to the finished jobs: a job row that finished (`added`) or was pruned
-- (`removed`); the newest few thousand are kept.
CREATE TABLE finished_changes (
    version bigint PRIMARY KEY,
    added bigint,
    removed bigint
);
