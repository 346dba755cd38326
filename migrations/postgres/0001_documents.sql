-- Documents are stored as an append-only log of change chunks plus a compacted snapshot.
-- `last_seq` is bumped under the row lock of the document, so chunk sequence numbers of one
-- document are dense and in commit order even when several server processes append at once.
CREATE TABLE documents (
    id            TEXT PRIMARY KEY,
    last_seq      BIGINT NOT NULL DEFAULT 0,
    snapshot      BYTEA,
    snapshot_seq  BIGINT NOT NULL DEFAULT 0,
    size_bytes    BIGINT NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE document_changes (
    document_id  TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    data         BYTEA NOT NULL,
    peer_key     TEXT,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, seq)
);

-- What the server knows it shares with one device for one document (automerge sync state,
-- essentially the shared heads), so that a reconnecting device exchanges only what is new.
CREATE TABLE sync_states (
    peer_key     TEXT NOT NULL,
    document_id  TEXT NOT NULL,
    state        BYTEA NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (peer_key, document_id)
);

CREATE TABLE server_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
