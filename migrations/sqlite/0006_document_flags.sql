-- See migrations/postgres/0006_document_flags.sql.
CREATE TABLE document_flags (
    document_id  TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    flag         TEXT NOT NULL,
    detail       TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    flagged_at   TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (document_id, seq, flag)
);
