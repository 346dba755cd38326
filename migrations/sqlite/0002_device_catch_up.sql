-- See migrations/postgres/0002_device_catch_up.sql.
ALTER TABLE sync_states ADD COLUMN synced_seq INTEGER NOT NULL DEFAULT 0;
