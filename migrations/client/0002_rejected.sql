-- Changes the server refused, set aside for the app to show: removed from the document (with
-- everything that depends on them) so the rest keeps syncing, but never silently lost.
CREATE TABLE rejected_changes (
    document_id  TEXT NOT NULL,
    hash         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    data         BLOB NOT NULL,
    rejected_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (document_id, hash)
);
