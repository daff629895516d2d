-- The tamper-evident audit log (see the `cloister-audit` crate). Entries
-- are append-only leaves of an RFC 6962 Merkle tree, stored as their
-- canonical JSON; checkpoints are the signed notes over the tree.
CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY,
    entry TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    tree_size BIGINT NOT NULL,
    note TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX audit_checkpoints_size ON audit_checkpoints (tree_size);
