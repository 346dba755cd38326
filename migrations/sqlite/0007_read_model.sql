-- Same shape as migrations/postgres/0007_read_model.sql; see the comments there. SQLite has one
-- writer at a time, so `id` order is commit order and `tx` stays 0.

CREATE TABLE households (
    document_id     TEXT PRIMARY KEY,
    seq             INTEGER NOT NULL,
    area            TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    address         TEXT NOT NULL,
    residents       TEXT NOT NULL,
    resident_count  INTEGER NOT NULL
);
CREATE INDEX households_area ON households (area);

CREATE TABLE visits (
    document_id       TEXT PRIMARY KEY,
    seq               INTEGER NOT NULL,
    area              TEXT NOT NULL,
    created_by        TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    household         TEXT NOT NULL,
    visit_date        TEXT NOT NULL,
    visitors          TEXT NOT NULL,
    heard             TEXT NOT NULL,
    people_received   INTEGER NOT NULL,
    requests          TEXT NOT NULL,
    on_listening_day  BOOLEAN NOT NULL
);
CREATE INDEX visits_area ON visits (area, visit_date);

CREATE TABLE requests (
    document_id   TEXT PRIMARY KEY,
    seq           INTEGER NOT NULL,
    area          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    origin        TEXT NOT NULL,
    household     TEXT,
    visit         TEXT,
    category      TEXT NOT NULL,
    description   TEXT NOT NULL,
    status        TEXT NOT NULL,
    track         TEXT,
    department    TEXT,
    satisfaction  TEXT,
    collected_at  INTEGER,
    triaged_at    INTEGER,
    resolved_at   INTEGER,
    closed_at     INTEGER,
    due_at        INTEGER
);
CREATE INDEX requests_area ON requests (area, collected_at);

CREATE TABLE request_events (
    document_id   TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    event_type    TEXT NOT NULL,
    at            INTEGER NOT NULL,
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
    seq           INTEGER NOT NULL,
    area          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    requester     TEXT NOT NULL,
    service_kind  TEXT NOT NULL,
    window_start  INTEGER NOT NULL,
    window_end    INTEGER NOT NULL,
    place         TEXT NOT NULL,
    status        TEXT NOT NULL,
    assignee      TEXT,
    claim_count   INTEGER NOT NULL,
    taken_at      INTEGER
);
CREATE INDEX orders_area ON orders (area, created_at);

CREATE TABLE station_logs (
    document_id  TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL,
    area         TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    station      TEXT NOT NULL,
    log_date     TEXT NOT NULL
);
CREATE INDEX station_logs_area ON station_logs (area, log_date);

CREATE TABLE station_log_entries (
    document_id    TEXT NOT NULL,
    idx            INTEGER NOT NULL,
    service_kind   TEXT NOT NULL,
    people_served  INTEGER NOT NULL,
    served_by      TEXT NOT NULL,
    PRIMARY KEY (document_id, idx)
);

CREATE TABLE change_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tx           INTEGER NOT NULL DEFAULT 0,
    document_id  TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT,
    area         TEXT,
    user_id      TEXT NOT NULL,
    device_id    TEXT,
    role         TEXT,
    changes      INTEGER NOT NULL,
    client_time  INTEGER,
    server_time  INTEGER NOT NULL,
    summary      TEXT NOT NULL
);
CREATE INDEX change_log_feed ON change_log (tx, id);
CREATE INDEX change_log_document ON change_log (document_id, seq);
CREATE INDEX change_log_area ON change_log (area, server_time);
