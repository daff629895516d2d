//! The crypto core's bookkeeping record (`crypto.state`): device lists,
//! queued requests and messages, and recovery timers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey};
use zeroize::Zeroizing;

use super::devices::{Device, LocalTrust, UserDevices};
use super::error::CryptoError;
use super::identities::UserIdentity;
use super::machine::{OlmMachine, OutgoingKeyRequest, QueuedOlmMessage};
use super::persist::{corrupt, to_vec_secret};
use super::requests::{
    DeviceRef, KeysClaimRequest, KeysQueryRequest, KeysUploadRequest, OutgoingRequest, Pending,
    PendingKind, RequestBody, RequestQueue, SignaturesUploadRequest, ToDeviceRequest,
};
use super::zeroize_json;

#[derive(Serialize, Deserialize)]
struct DeviceRecord {
    device_id: String,
    ed25519: String,
    curve25519: String,
    algorithms: Vec<String>,
    display_name: Option<String>,
    local_trust: LocalTrust,
    // Stores written before cross-signing lack these: read as not signed.
    #[serde(default)]
    cross_signed: bool,
}

/// A cross-signing identity: public keys (unpadded base64) and which of the
/// local user's keys signed the master key.
#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    master: String,
    self_signing: String,
    user_signing: Option<String>,
    master_signed_by: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct UserRecord {
    user_id: String,
    tracked: bool,
    outdated: bool,
    generation: u64,
    devices: Vec<DeviceRecord>,
    #[serde(default)]
    identity: Option<IdentityRecord>,
}

#[derive(Serialize, Deserialize)]
enum BodyRecord {
    KeysUpload(KeysUploadRequest),
    KeysQuery(KeysQueryRequest),
    KeysClaim(KeysClaimRequest),
    ToDevice {
        event_type: String,
        txn_id: String,
        messages: BTreeMap<String, BTreeMap<String, Value>>,
    },
    SignaturesUpload(SignaturesUploadRequest),
    BackupKeys {
        version: String,
        body: Value,
    },
    RoomEvent {
        room_id: String,
        event_type: String,
        txn_id: String,
        content: Value,
    },
}

#[derive(Serialize, Deserialize)]
struct PendingRecord {
    request_id: String,
    body: BodyRecord,
    kind: PendingKind,
}

#[derive(Serialize, Deserialize)]
struct QueuedRecord {
    recipient: DeviceRef,
    event_type: String,
    content: Value,
}

impl Drop for QueuedRecord {
    fn drop(&mut self) {
        zeroize_json(&mut self.content);
    }
}

#[derive(Serialize, Deserialize)]
struct StateRecord {
    users: Vec<UserRecord>,
    request_id_prefix: String,
    request_counter: u64,
    pending: Vec<PendingRecord>,
    olm_queue: Vec<QueuedRecord>,
    needs_new_session: BTreeSet<DeviceRef>,
    wedge_recovery_at: Vec<(DeviceRef, u64)>,
    unreachable: Vec<(DeviceRef, u64)>,
    key_requests: Vec<(String, String, String)>,
    last_now_ms: u64,
    olm_tick: u64,
    /// Room → `max_lifetime`; absent in stores written before retention.
    #[serde(default)]
    retention: Vec<(String, u64)>,
}

impl OlmMachine {
    pub(super) fn state_record(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut users: Vec<UserRecord> = self
            .devices
            .users
            .iter()
            .map(|(user_id, u)| UserRecord {
                user_id: user_id.clone(),
                tracked: u.tracked,
                outdated: u.outdated,
                generation: u.generation,
                devices: u
                    .devices
                    .values()
                    .map(|d| DeviceRecord {
                        device_id: d.device_id.clone(),
                        ed25519: d.ed25519.to_base64(),
                        curve25519: d.curve25519.to_base64(),
                        algorithms: d.algorithms.clone(),
                        display_name: d.display_name.clone(),
                        local_trust: d.local_trust,
                        cross_signed: d.cross_signed,
                    })
                    .collect(),
                identity: u.identity.as_ref().map(|i| IdentityRecord {
                    master: i.master.to_base64(),
                    self_signing: i.self_signing.to_base64(),
                    user_signing: i.user_signing.map(|k| k.to_base64()),
                    master_signed_by: i.master_signed_by.clone(),
                }),
            })
            .collect();
        users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let pending = self
            .requests
            .pending
            .values()
            .map(|p| PendingRecord {
                request_id: p.request.request_id.clone(),
                body: match &p.request.body {
                    RequestBody::KeysUpload(r) => BodyRecord::KeysUpload(r.clone()),
                    RequestBody::KeysQuery(r) => BodyRecord::KeysQuery(r.clone()),
                    RequestBody::KeysClaim(r) => BodyRecord::KeysClaim(r.clone()),
                    RequestBody::SignaturesUpload(r) => BodyRecord::SignaturesUpload(r.clone()),
                    RequestBody::RoomEvent {
                        room_id,
                        event_type,
                        txn_id,
                        content,
                    } => BodyRecord::RoomEvent {
                        room_id: room_id.clone(),
                        event_type: event_type.clone(),
                        txn_id: txn_id.clone(),
                        content: content.clone(),
                    },
                    RequestBody::BackupKeys { version, body } => BodyRecord::BackupKeys {
                        version: version.clone(),
                        body: body.clone(),
                    },
                    RequestBody::ToDevice(r) => BodyRecord::ToDevice {
                        event_type: r.event_type.clone(),
                        txn_id: r.txn_id.clone(),
                        messages: r.messages.clone(),
                    },
                },
                kind: p.kind.clone(),
            })
            .collect();
        let sorted = |map: &HashMap<DeviceRef, u64>| {
            let mut v: Vec<(DeviceRef, u64)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
            v.sort();
            v
        };
        let mut key_requests: Vec<(String, String, String)> = self
            .key_requests
            .iter()
            .map(|(id, r)| (id.clone(), r.room_id.clone(), r.session_id.clone()))
            .collect();
        key_requests.sort();
        to_vec_secret(&StateRecord {
            users,
            request_id_prefix: self.requests.id_prefix.clone(),
            request_counter: self.requests.counter,
            pending,
            olm_queue: self
                .olm_queue
                .iter()
                .map(|m| QueuedRecord {
                    recipient: m.recipient.clone(),
                    event_type: m.event_type.clone(),
                    content: m.content.clone(),
                })
                .collect(),
            needs_new_session: self.needs_new_session.clone(),
            wedge_recovery_at: sorted(&self.wedge_recovery_at),
            unreachable: sorted(&self.unreachable),
            key_requests,
            last_now_ms: self.last_now_ms,
            olm_tick: self.olm.tick,
            retention: self
                .retention
                .iter()
                .map(|(room, max)| (room.clone(), *max))
                .collect(),
        })
    }

    pub(super) fn load_state(&mut self, data: &[u8]) -> Result<(), CryptoError> {
        let state: StateRecord = serde_json::from_slice(data).map_err(|e| corrupt("state", e))?;
        for user in state.users {
            let mut devices = BTreeMap::new();
            for d in user.devices {
                let device = Device {
                    user_id: user.user_id.clone(),
                    device_id: d.device_id.clone(),
                    ed25519: Ed25519PublicKey::from_base64(&d.ed25519)
                        .map_err(|e| corrupt("device", e))?,
                    curve25519: Curve25519PublicKey::from_base64(&d.curve25519)
                        .map_err(|e| corrupt("device", e))?,
                    algorithms: d.algorithms,
                    display_name: d.display_name,
                    local_trust: d.local_trust,
                    cross_signed: d.cross_signed,
                };
                devices.insert(d.device_id, device);
            }
            let key = |b64: &str| {
                Ed25519PublicKey::from_base64(b64).map_err(|e| corrupt("cross-signing key", e))
            };
            let identity = match user.identity {
                None => None,
                Some(i) => Some(UserIdentity {
                    user_id: user.user_id.clone(),
                    master: key(&i.master)?,
                    self_signing: key(&i.self_signing)?,
                    user_signing: i.user_signing.as_deref().map(key).transpose()?,
                    master_signed_by: i.master_signed_by,
                }),
            };
            self.devices.users.insert(
                user.user_id,
                UserDevices {
                    devices,
                    identity,
                    tracked: user.tracked,
                    outdated: user.outdated,
                    generation: user.generation,
                },
            );
        }
        self.requests = RequestQueue {
            id_prefix: state.request_id_prefix,
            counter: state.request_counter,
            pending: BTreeMap::new(),
        };
        for p in state.pending {
            let body = match p.body {
                BodyRecord::KeysUpload(r) => RequestBody::KeysUpload(r),
                BodyRecord::KeysQuery(r) => RequestBody::KeysQuery(r),
                BodyRecord::KeysClaim(r) => RequestBody::KeysClaim(r),
                BodyRecord::SignaturesUpload(r) => RequestBody::SignaturesUpload(r),
                BodyRecord::RoomEvent {
                    room_id,
                    event_type,
                    txn_id,
                    content,
                } => RequestBody::RoomEvent {
                    room_id,
                    event_type,
                    txn_id,
                    content,
                },
                BodyRecord::BackupKeys { version, body } => {
                    RequestBody::BackupKeys { version, body }
                }
                BodyRecord::ToDevice {
                    event_type,
                    txn_id,
                    messages,
                } => RequestBody::ToDevice(ToDeviceRequest {
                    event_type,
                    txn_id,
                    messages,
                }),
            };
            let request = OutgoingRequest {
                request_id: p.request_id.clone(),
                body,
            };
            self.requests.pending.insert(
                p.request_id,
                Pending {
                    request,
                    kind: p.kind,
                },
            );
        }
        self.olm_queue = state
            .olm_queue
            .into_iter()
            .map(|mut q| QueuedOlmMessage {
                recipient: std::mem::take(&mut q.recipient),
                event_type: std::mem::take(&mut q.event_type),
                content: q.content.take(),
            })
            .collect();
        self.needs_new_session = state.needs_new_session;
        self.wedge_recovery_at = state.wedge_recovery_at.into_iter().collect();
        self.unreachable = state.unreachable.into_iter().collect();
        self.key_requests = state
            .key_requests
            .into_iter()
            .map(|(id, room_id, session_id)| {
                (
                    id,
                    OutgoingKeyRequest {
                        room_id,
                        session_id,
                    },
                )
            })
            .collect();
        self.last_now_ms = state.last_now_ms;
        self.olm.tick = state.olm_tick;
        self.retention = state.retention.into_iter().collect();
        Ok(())
    }
}
