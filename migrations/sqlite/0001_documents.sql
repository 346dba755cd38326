-- Same shape as migrations/postgres/0001_documents.sql; see the comments there.
CREATE TABLE documents (
    id            TEXT PRIMARY KEY,
    last_seq      INTEGER NOT NULL DEFAULT 0,
    snapshot      BLOB,
    snapshot_seq  INTEGER NOT NULL DEFAULT 0,
    size_bytes    INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE document_changes (
    document_id  TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    data         BLOB NOT NULL,
    peer_key     TEXT,
    received_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (document_id, seq)
);

CREATE TABLE sync_states (
    peer_key     TEXT NOT NULL,
    document_id  TEXT NOT NULL,
    state        BLOB NOT NULL,
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (peer_key, document_id)
);

CREATE TABLE server_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
