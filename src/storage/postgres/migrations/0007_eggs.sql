-- The eggs of a cluster: each egg's bytes once (`egg_blobs`, by SHA-256), the versions of each
-- project with their spider lists, and each project's extra eggs (dependencies). Every node
-- mirrors them into its own eggs_dir; `change_feed.eggs` moves with every change, so a node
-- knows when its mirror is behind.
ALTER TABLE change_feed ADD COLUMN eggs bigint NOT NULL DEFAULT 0;
CREATE TABLE egg_blobs (
    sha256 text PRIMARY KEY,
    data bytea NOT NULL
);
CREATE TABLE eggs (
    project text,
    version text,
    sha256 text NOT NULL REFERENCES egg_blobs,
    spiders json NOT NULL,
    added timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, version)
);
CREATE TABLE extra_eggs (
    project text,
    name text,
    version text NOT NULL,
    sha256 text NOT NULL REFERENCES egg_blobs,
    PRIMARY KEY (project, name)
);
