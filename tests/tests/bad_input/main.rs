//! Bad input, on SQLite and PostgreSQL: every refused request gets the
//! exact status and Matrix `errcode` (with an `error` message), and none of
//! them changes anything. Each scenario takes a snapshot of what the users
//! can see (room history and state, profiles, account data, devices, keys,
//! media, joined rooms) before the bad requests and compares it afterwards.
//!
//! Covered: malformed JSON, wrong types, numbers outside canonical JSON,
//! request bodies, event contents and uploads beyond their limits (also a
//! chunked upload without a length), unknown rooms and users, missing and
//! bad access tokens, other users' devices and data, unknown endpoints and
//! methods, invalid sync and pagination tokens, path traversal on media
//! downloads, and rate limiting.

mod common;
mod json;
mod nul;
mod rate;
mod sizes;
mod snapshot;
mod targets;

use cloister_tests::both_backends;

use json::malformed;
use nul::nul_bytes;
use rate::rate_limits;
use sizes::limits;
use targets::wrong_targets;

both_backends!(
    bad_json, malformed;
    bad_sizes, limits;
    bad_targets, wrong_targets;
    bad_rate, rate_limits;
    bad_nul_bytes, nul_bytes;
);
