-- See migrations/postgres/0004_actors.sql.
CREATE TABLE actors (
    actor_id   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    bound_at   TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
