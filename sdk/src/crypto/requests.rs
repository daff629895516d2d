//! Requests the core asks the application to send, and the bookkeeping that
//! ties each response back to the state it changes.
//!
//! Requests stay queued until [`OlmMachine::mark_request_as_sent`] is called
//! for them, so an application whose HTTP call failed simply sends the same
//! request again: to-device messages keep their transaction id (the server
//! deduplicates them) and a `/keys/claim` is never issued twice for the same
//! device, which would burn one-time keys.
//!
//! [`OlmMachine::mark_request_as_sent`]: super::OlmMachine::mark_request_as_sent

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use cloister_proto::keys::{KeysClaimResponse, KeysQueryResponse, KeysUploadResponse};
// The key request bodies are the protocol crate's, which the server reads.
pub use cloister_proto::keys::{KeysClaimRequest, KeysQueryRequest, KeysUploadRequest};

/// The `timeout` of `/keys/query` and `/keys/claim`: how long the server may
/// wait for remote servers.
pub(crate) const KEYS_TIMEOUT_MS: Option<u64> = Some(cloister_proto::keys::DEFAULT_KEYS_TIMEOUT_MS);

/// A request for the application to send to the homeserver.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingRequest {
    /// Pass this back to `mark_request_as_sent` with the response body.
    pub request_id: String,
    /// What to send.
    pub body: RequestBody,
}

/// The typed body of an [`OutgoingRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// Upload this device's keys, one-time keys or fallback key.
    KeysUpload(KeysUploadRequest),
    /// Fetch other devices' keys.
    KeysQuery(KeysQueryRequest),
    /// Claim one-time keys to start Olm sessions.
    KeysClaim(KeysClaimRequest),
    /// Send to-device messages (room keys, key requests, verification).
    ToDevice(ToDeviceRequest),
    /// Publish cross-signing signatures.
    SignaturesUpload(SignaturesUploadRequest),
    /// `PUT /_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}`:
    /// an unencrypted room event (in-room verification).
    RoomEvent {
        /// The room.
        room_id: String,
        /// The event type.
        event_type: String,
        /// The transaction id: the same on a retry.
        txn_id: String,
        /// The event content.
        content: Value,
    },
    /// `PUT /_matrix/client/v3/room_keys/keys?version=…`: sessions for the
    /// key backup.
    BackupKeys {
        /// The backup version.
        version: String,
        /// `{"rooms": {room: {"sessions": {id: key data}}}}`.
        body: Value,
    },
}

/// `POST /_matrix/client/v3/keys/signatures/upload`: user id → key id (a
/// device id, or a master key in unpadded base64) → the signed object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignaturesUploadRequest(pub BTreeMap<String, BTreeMap<String, Value>>);

/// `PUT /_matrix/client/v3/sendToDevice/{event_type}/{txn_id}`: the path
/// parameters, and a body shaped as
/// [`SendToDeviceRequest`](cloister_proto::to_device::SendToDeviceRequest)
/// (written by this type's own `Serialize`, to avoid copying `messages`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToDeviceRequest {
    /// The event type (path parameter), e.g. `m.room.encrypted`.
    #[serde(skip)]
    pub event_type: String,
    /// The transaction id (path parameter): the same on a retry, so the
    /// server drops duplicates.
    #[serde(skip)]
    pub txn_id: String,
    /// User id → device id (or `*`) → event content.
    pub messages: BTreeMap<String, BTreeMap<String, Value>>,
}

impl ToDeviceRequest {
    /// Number of device messages in this request.
    pub fn message_count(&self) -> usize {
        self.messages.values().map(BTreeMap::len).sum()
    }
}

impl OutgoingRequest {
    /// The HTTP method.
    pub fn method(&self) -> &'static str {
        match self.body {
            RequestBody::ToDevice(_)
            | RequestBody::BackupKeys { .. }
            | RequestBody::RoomEvent { .. } => "PUT",
            _ => "POST",
        }
    }

    /// The path below the homeserver's base URL, segments percent-encoded.
    pub fn path(&self) -> String {
        match &self.body {
            RequestBody::KeysUpload(_) => "/_matrix/client/v3/keys/upload".to_owned(),
            RequestBody::KeysQuery(_) => "/_matrix/client/v3/keys/query".to_owned(),
            RequestBody::KeysClaim(_) => "/_matrix/client/v3/keys/claim".to_owned(),
            RequestBody::SignaturesUpload(_) => {
                "/_matrix/client/v3/keys/signatures/upload".to_owned()
            }
            RequestBody::RoomEvent {
                room_id,
                event_type,
                txn_id,
                ..
            } => format!(
                "/_matrix/client/v3/rooms/{}/send/{}/{}",
                percent_encode(room_id),
                percent_encode(event_type),
                percent_encode(txn_id)
            ),
            RequestBody::BackupKeys { version, .. } => format!(
                "/_matrix/client/v3/room_keys/keys?version={}",
                percent_encode(version)
            ),
            RequestBody::ToDevice(r) => format!(
                "/_matrix/client/v3/sendToDevice/{}/{}",
                percent_encode(&r.event_type),
                percent_encode(&r.txn_id)
            ),
        }
    }

    /// The JSON request body.
    pub fn json_body(&self) -> Value {
        let result = match &self.body {
            RequestBody::KeysUpload(r) => serde_json::to_value(r),
            RequestBody::KeysQuery(r) => serde_json::to_value(r),
            RequestBody::KeysClaim(r) => serde_json::to_value(r),
            RequestBody::ToDevice(r) => serde_json::to_value(r),
            RequestBody::SignaturesUpload(r) => serde_json::to_value(r),
            RequestBody::BackupKeys { body, .. } => Ok(body.clone()),
            RequestBody::RoomEvent { content, .. } => Ok(content.clone()),
        };
        // These types hold only strings, integers and JSON values, whose
        // serialization cannot fail.
        result.unwrap_or(Value::Null)
    }
}

pub(crate) fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A (user id, device id) pair.
pub(crate) type DeviceRef = (String, String);

/// What a queued request will change once its response arrives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum PendingKind {
    Upload,
    /// The invalidation counter of each queried user when the query was
    /// made: a user invalidated again meanwhile stays marked for re-query.
    Query {
        generations: HashMap<String, u64>,
    },
    Claim {
        devices: BTreeSet<DeviceRef>,
    },
    /// `room_key` names the outbound session whose key this request carries.
    ToDevice {
        room_key: Option<(String, String)>,
    },
    /// Signatures on `user_id`'s keys, who is queried again afterwards.
    Signatures {
        user_id: String,
    },
    /// A room event; for an in-room verification request, the provisional
    /// flow id, renamed after the event id the server answers with.
    RoomEvent {
        verification_request: Option<String>,
    },
    /// These (room, session) go into the key backup.
    Backup {
        sessions: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub request: OutgoingRequest,
    pub kind: PendingKind,
}

/// The requests handed out and not yet acknowledged.
pub(crate) struct RequestQueue {
    pub(crate) id_prefix: String,
    pub(crate) counter: u64,
    pub(crate) pending: BTreeMap<String, Pending>,
}

impl RequestQueue {
    pub(crate) fn new() -> Self {
        // A random prefix keeps transaction ids unique across restarts of
        // the same device; a reused txn id would make the server drop the
        // new to-device message as a duplicate.
        let mut bytes = [0u8; 9];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let id_prefix = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self {
            id_prefix,
            counter: 0,
            pending: BTreeMap::new(),
        }
    }

    /// A fresh unique id; ids sort in creation order.
    pub(crate) fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{}{:012}", self.id_prefix, self.counter)
    }

    pub(crate) fn push(&mut self, body: RequestBody, kind: PendingKind) -> OutgoingRequest {
        let request = OutgoingRequest {
            request_id: self.next_id(),
            body,
        };
        self.pending.insert(
            request.request_id.clone(),
            Pending {
                request: request.clone(),
                kind,
            },
        );
        request
    }

    pub(crate) fn get(&self, request_id: &str) -> Option<&Pending> {
        self.pending.get(request_id)
    }

    pub(crate) fn take(&mut self, request_id: &str) -> Option<Pending> {
        self.pending.remove(request_id)
    }

    pub(crate) fn all(&self) -> Vec<OutgoingRequest> {
        self.pending.values().map(|p| p.request.clone()).collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.pending.values()
    }

    pub(crate) fn has_backup(&self) -> bool {
        self.iter()
            .any(|p| matches!(p.kind, PendingKind::Backup { .. }))
    }

    /// Forget queued backup uploads (the backup changed or went away).
    pub(crate) fn drop_backups(&mut self) {
        self.pending
            .retain(|_, p| !matches!(p.kind, PendingKind::Backup { .. }));
    }

    pub(crate) fn has_upload(&self) -> bool {
        self.iter().any(|p| matches!(p.kind, PendingKind::Upload))
    }

    pub(crate) fn users_being_queried(&self) -> BTreeSet<String> {
        self.iter()
            .filter_map(|p| match &p.kind {
                PendingKind::Query { generations } => Some(generations.keys().cloned()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    pub(crate) fn devices_being_claimed(&self) -> BTreeSet<DeviceRef> {
        self.iter()
            .filter_map(|p| match &p.kind {
                PendingKind::Claim { devices } => Some(devices.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Queued requests of the given kind that touch any of `users` /
    /// `devices`, so a caller can be handed those instead of duplicates.
    pub(crate) fn queries_covering(&self, users: &BTreeSet<String>) -> Vec<OutgoingRequest> {
        self.iter()
            .filter(|p| match &p.kind {
                PendingKind::Query { generations } => generations.keys().any(|u| users.contains(u)),
                _ => false,
            })
            .map(|p| p.request.clone())
            .collect()
    }

    pub(crate) fn claims_covering(&self, devices: &BTreeSet<DeviceRef>) -> Vec<OutgoingRequest> {
        self.iter()
            .filter(|p| match &p.kind {
                PendingKind::Claim { devices: claimed } => {
                    claimed.iter().any(|d| devices.contains(d))
                }
                _ => false,
            })
            .map(|p| p.request.clone())
            .collect()
    }

    /// Queued to-device requests carrying the key of an outbound session.
    pub(crate) fn room_key_requests(
        &self,
        room_id: &str,
        session_id: &str,
    ) -> Vec<OutgoingRequest> {
        self.iter()
            .filter(|p| match &p.kind {
                PendingKind::ToDevice {
                    room_key: Some((room, session)),
                } => room == room_id && session == session_id,
                _ => false,
            })
            .map(|p| p.request.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_device_path_is_percent_encoded() {
        let request = OutgoingRequest {
            request_id: "r".into(),
            body: RequestBody::ToDevice(ToDeviceRequest {
                event_type: "m.room.encrypted".into(),
                txn_id: "a/b c".into(),
                messages: BTreeMap::new(),
            }),
        };
        assert_eq!(request.method(), "PUT");
        assert_eq!(
            request.path(),
            "/_matrix/client/v3/sendToDevice/m.room.encrypted/a%2Fb%20c"
        );
    }

    #[test]
    fn to_device_body_is_the_protocol_shape() {
        let messages = BTreeMap::from([(
            "@bob:x".to_owned(),
            BTreeMap::from([("*".to_owned(), serde_json::json!({"k": 1}))]),
        )]);
        let request = OutgoingRequest {
            request_id: "r".into(),
            body: RequestBody::ToDevice(ToDeviceRequest {
                event_type: "m.room_key_request".into(),
                txn_id: "t".into(),
                messages: messages.clone(),
            }),
        };
        let body = request.json_body();
        let parsed: cloister_proto::to_device::SendToDeviceRequest =
            serde_json::from_value(body.clone()).unwrap();
        assert_eq!(parsed.messages, messages);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), body);
    }

    /// Queued requests are stored with the crypto state: bodies written by
    /// the SDK's own request types, before cloister-proto's, must load and
    /// be sent unchanged.
    #[test]
    fn bodies_stored_by_earlier_versions_load_unchanged() {
        fn same<T: Serialize + serde::de::DeserializeOwned>(stored: Value) {
            let loaded: T = serde_json::from_value(stored.clone()).unwrap();
            assert_eq!(serde_json::to_value(loaded).unwrap(), stored);
        }
        let key = serde_json::json!({"key": "k", "signatures": {"@a:x": {"ed25519:D": "s"}}});
        same::<KeysUploadRequest>(serde_json::json!({
            "device_keys": {"user_id": "@a:x", "device_id": "D"},
            "one_time_keys": {"signed_curve25519:AAAAAQ": key},
            "fallback_keys": {"signed_curve25519:AAAAAg": key},
        }));
        same::<KeysUploadRequest>(
            serde_json::json!({"one_time_keys": {"signed_curve25519:A": key}}),
        );
        same::<KeysQueryRequest>(
            serde_json::json!({"device_keys": {"@a:x": []}, "timeout": 10000}),
        );
        same::<KeysClaimRequest>(serde_json::json!({
            "one_time_keys": {"@a:x": {"D": "signed_curve25519"}},
            "timeout": 10000,
        }));
    }

    #[test]
    fn ids_are_unique_and_ordered() {
        let mut queue = RequestQueue::new();
        let a = queue.next_id();
        let b = queue.next_id();
        assert!(a < b);
        assert_ne!(RequestQueue::new().next_id(), RequestQueue::new().next_id());
    }
}
