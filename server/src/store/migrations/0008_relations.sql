-- Threads, edits, references and reactions are read through the event they
-- point at. `m.relates_to` stays outside the ciphertext of encrypted events
-- (the spec keeps it there so that servers can do this), so the columns
-- hold no more than the content already shows the server. Existing rows are
-- filled in by the migration's Rust step (store::relations::backfill).
ALTER TABLE events ADD COLUMN relates_to TEXT;
ALTER TABLE events ADD COLUMN rel_type TEXT;
CREATE INDEX events_relates_to ON events (relates_to, rel_type, stream_pos);
