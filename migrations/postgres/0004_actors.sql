-- Each Automerge actor ID is bound, at its first accepted change, to the user and device that
-- sent it. A change from an actor bound to someone else is refused, which is what makes the
-- trace of who did what (人过留痕) trustworthy.
CREATE TABLE actors (
    actor_id   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    bound_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
