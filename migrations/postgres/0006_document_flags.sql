-- What the field rules noticed about accepted changes without refusing them: a visit not on a
-- listening day, timeline events ignored where they landed. For supervisors' views and audits.
CREATE TABLE document_flags (
    document_id  TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    flag         TEXT NOT NULL,
    detail       TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    flagged_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, seq, flag)
);
