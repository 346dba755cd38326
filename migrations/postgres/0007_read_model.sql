-- The supervisor read model: every typed document's merged state projected into typed rows, and
-- the log of accepted changes that is both the audit trail and the changes feed. Both are
-- written in the transaction that stores the change, so a query never sees a state the
-- document store does not have. `lianxin-server reproject` rebuilds the projections from the
-- stored documents. `seq` is the document's `last_seq` the row was projected at: a row is only
-- ever replaced by one projected at the same or a later sequence number.
--
-- Times are milliseconds since the Unix epoch (device clocks for what devices record); dates
-- are local `YYYY-MM-DD` text; lists are JSON text.

CREATE TABLE households (
    document_id     TEXT PRIMARY KEY,
    seq             BIGINT NOT NULL,
    area            TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    address         TEXT NOT NULL,
    residents       TEXT NOT NULL,
    resident_count  INTEGER NOT NULL
);
CREATE INDEX households_area ON households (area text_pattern_ops);

CREATE TABLE visits (
    document_id       TEXT PRIMARY KEY,
    seq               BIGINT NOT NULL,
    area              TEXT NOT NULL,
    created_by        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    household         TEXT NOT NULL,
    visit_date        TEXT NOT NULL,
    visitors          TEXT NOT NULL,
    heard             TEXT NOT NULL,
    people_received   BIGINT NOT NULL,
    requests          TEXT NOT NULL,
    on_listening_day  BOOLEAN NOT NULL
);
CREATE INDEX visits_area ON visits (area text_pattern_ops, visit_date);

CREATE TABLE requests (
    document_id   TEXT PRIMARY KEY,
    seq           BIGINT NOT NULL,
    area          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    origin        TEXT NOT NULL,
    household     TEXT,
    visit         TEXT,
    category      TEXT NOT NULL,
    description   TEXT NOT NULL,
    status        TEXT NOT NULL,
    track         TEXT,
    department    TEXT,
    satisfaction  TEXT,
    collected_at  BIGINT,
    triaged_at    BIGINT,
    resolved_at   BIGINT,
    closed_at     BIGINT,
    due_at        BIGINT
);
CREATE INDEX requests_area ON requests (area text_pattern_ops, collected_at);

-- A request's timeline, one row per event in timeline order; `ignored` marks events the state
-- machine ignored where they landed.
CREATE TABLE request_events (
    document_id   TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    event_type    TEXT NOT NULL,
    at            BIGINT NOT NULL,
    by_user       TEXT NOT NULL,
    device        TEXT,
    note          TEXT,
    track         TEXT,
    department    TEXT,
    satisfaction  TEXT,
    ignored       BOOLEAN NOT NULL,
    PRIMARY KEY (document_id, idx)
);

CREATE TABLE orders (
    document_id   TEXT PRIMARY KEY,
    seq           BIGINT NOT NULL,
    area          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    requester     TEXT NOT NULL,
    service_kind  TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    window_end    BIGINT NOT NULL,
    place         TEXT NOT NULL,
    status        TEXT NOT NULL,
    assignee      TEXT,
    claim_count   INTEGER NOT NULL,
    taken_at      BIGINT
);
CREATE INDEX orders_area ON orders (area text_pattern_ops, created_at);

CREATE TABLE station_logs (
    document_id  TEXT PRIMARY KEY,
    seq          BIGINT NOT NULL,
    area         TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    station      TEXT NOT NULL,
    log_date     TEXT NOT NULL
);
CREATE INDEX station_logs_area ON station_logs (area text_pattern_ops, log_date);

CREATE TABLE station_log_entries (
    document_id    TEXT NOT NULL,
    idx            INTEGER NOT NULL,
    service_kind   TEXT NOT NULL,
    people_served  BIGINT NOT NULL,
    served_by      TEXT NOT NULL,
    PRIMARY KEY (document_id, idx)
);

-- One row per accepted chunk of changes: who (user, device, role), when (the devices' clock
-- and the server's), and a readable summary. The audit trail reads it by document or area; the
-- changes feed reads it in (tx, id) order, where `tx` is the writing transaction's ID: the feed
-- only serves rows whose transaction is below the oldest one still running
-- (`pg_snapshot_xmin`), so a transaction that commits late can never land behind a cursor that
-- has moved on (see `storage::read_model`).
CREATE TABLE change_log (
    id           BIGSERIAL PRIMARY KEY,
    tx           BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    document_id  TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    kind         TEXT,
    area         TEXT,
    user_id      TEXT NOT NULL,
    device_id    TEXT,
    role         TEXT,
    changes      INTEGER NOT NULL,
    client_time  BIGINT,
    server_time  BIGINT NOT NULL,
    summary      TEXT NOT NULL
);
CREATE INDEX change_log_feed ON change_log (tx, id);
CREATE INDEX change_log_document ON change_log (document_id, seq);
CREATE INDEX change_log_area ON change_log (area text_pattern_ops, server_time);
