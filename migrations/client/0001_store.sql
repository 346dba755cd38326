-- The device's local store: every document as a log of chunks (local edits and what arrived
-- from the server), compacted now and then into one full save; the sync state shared with the
-- server per document; and a few settings (server URL, token, store ID).
CREATE TABLE documents (
    id          TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE chunks (
    document_id  TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    data         BLOB NOT NULL,
    PRIMARY KEY (document_id, seq)
);

CREATE TABLE sync_states (
    document_id  TEXT PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    state        BLOB NOT NULL
);

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
