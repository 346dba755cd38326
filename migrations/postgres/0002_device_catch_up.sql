-- The document's `last_seq` at the moment a device was last known to hold every change of it.
-- A document whose `last_seq` has moved past this has news for that device; comparing the two
-- is correct whatever order concurrent transactions commit in, because `last_seq` is bumped
-- under the document's row lock.
ALTER TABLE sync_states ADD COLUMN synced_seq BIGINT NOT NULL DEFAULT 0;
