-- Area sync (catch-up and bootstrap by area, see server/src/area_sync.rs): what a device may
-- read is decided from these columns, so documents are served from storage without being
-- loaded. kind, area and created_by never change once a document is typed; transferred_to is
-- the department a request is transferred to by its last valid triage. They are written with
-- each typed change and by `lianxin-server reproject` for documents stored before.
ALTER TABLE documents ADD COLUMN kind TEXT;
ALTER TABLE documents ADD COLUMN area TEXT;
ALTER TABLE documents ADD COLUMN created_by TEXT;
ALTER TABLE documents ADD COLUMN transferred_to TEXT;
-- Which transaction changed the document last (Postgres: its transaction ID; SQLite, where
-- writers are serialized: a counter). A catch-up from cursor C sends the documents with
-- changed_tx >= C, where C was the oldest transaction still running when the previous pass
-- began, so a transaction that commits late is never left behind the cursor.
ALTER TABLE documents ADD COLUMN changed_tx BIGINT NOT NULL DEFAULT 0;
CREATE INDEX documents_area ON documents (area text_pattern_ops, id);
CREATE INDEX documents_changed ON documents (changed_tx);
