//! End-to-end-encryption key endpoints over HTTP, on SQLite and PostgreSQL:
//! validated `/keys/upload`, `/keys/query` (contents, display names,
//! cross-signing keys and who sees which signatures), contended
//! `/keys/claim`, `/keys/changes`, cross-signing upload with and without
//! user-interactive auth, `/keys/signatures/upload`, `device_lists` in
//! `/sync`, a reused device id, send-to-device, and server-side key backup.
//!
//! Ported from the key endpoints' scratch test onto the harness; every one
//! of its assertions is kept. Where it reached into the store (shared rooms,
//! key counts, pending to-device messages, device deletion) the same facts
//! are now checked through the API a client would use.

mod backup;
mod common;
mod to_device;
mod upload_query;

use cloister_tests::both_backends;

use backup::backup_flow;
use to_device::to_device_flow;
use upload_query::keys_flow;

both_backends!(
    keys_upload_query_cross_signing, keys_flow;
    keys_to_device, to_device_flow;
    keys_backup, backup_flow;
);
