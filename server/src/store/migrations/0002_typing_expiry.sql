-- Whether a typing notice's expiry has been announced through /sync: a
-- notice that simply times out needs a stream position of its own, or
-- clients would show "typing…" until something else happens in the room.
ALTER TABLE typing ADD COLUMN expiry_announced BIGINT NOT NULL DEFAULT 0;
