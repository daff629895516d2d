//! What the client itself persists besides the crypto core: the session
//! (homeserver, user, device, access token), the rooms it knows with their
//! membership, members and encryption settings, and application data.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{CryptoError, EncryptionSettings, RetentionPolicy};
use crate::store::{Record, StoreChanges};

pub(crate) const RECORD_SESSION: &str = "client.session";
pub(crate) const RECORD_ROOM: &str = "client.room";
pub(crate) const RECORD_APP: &str = "client.app";

/// A logged-in device. The access token is a secret: it is stored sealed
/// and wiped from memory on drop.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// The homeserver's base URL.
    pub homeserver: String,
    /// The logged-in user's id.
    pub user_id: String,
    /// This device's id.
    pub device_id: String,
    /// The access token (secret: never log it).
    pub access_token: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.access_token.zeroize();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("homeserver", &self.homeserver)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// This user's membership in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// Joined: a member.
    Join,
    /// Invited, not joined yet.
    Invite,
    /// Left, kicked or banned.
    Leave,
}

/// A room as the client knows it from sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Room {
    /// The room's id.
    pub room_id: String,
    /// This user's membership.
    pub membership: Membership,
    /// The room's name (`m.room.name`), if it has one.
    pub name: Option<String>,
    /// The content of `m.room.encryption`, if the room has it.
    pub encryption: Option<Value>,
    /// Members by user id, with their membership (`join`, `invite`, …).
    pub members: BTreeMap<String, String>,
    /// Who invited us, for invites.
    pub inviter: Option<String>,
    /// The content of `m.room.retention`, if the room has it.
    #[serde(default)]
    pub retention: Option<Value>,
}

impl Room {
    pub(crate) fn new(room_id: &str, membership: Membership) -> Self {
        Self {
            room_id: room_id.to_owned(),
            membership,
            name: None,
            encryption: None,
            members: BTreeMap::new(),
            inviter: None,
            retention: None,
        }
    }

    /// Whether the room has `m.room.encryption` (end-to-end encrypted).
    pub fn is_encrypted(&self) -> bool {
        self.encryption.is_some()
    }

    /// The room's key rotation policy.
    pub fn encryption_settings(&self) -> EncryptionSettings {
        self.encryption
            .as_ref()
            .map(EncryptionSettings::from_room_encryption_content)
            .unwrap_or_default()
    }

    /// The room's retention policy (none when it has no
    /// `m.room.retention`).
    pub fn retention_policy(&self) -> RetentionPolicy {
        self.retention
            .as_ref()
            .map(RetentionPolicy::from_content)
            .unwrap_or_default()
    }

    /// Members who are joined or invited: the ones room keys go to.
    pub fn active_members(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| m.as_str() == "join" || m.as_str() == "invite")
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Apply a state event (`m.room.member`, `m.room.name`,
    /// `m.room.encryption`, `m.room.retention`).
    pub(crate) fn apply_state(&mut self, event: &Value) {
        let (Some(event_type), Some(state_key)) = (
            event.get("type").and_then(Value::as_str),
            event.get("state_key").and_then(Value::as_str),
        ) else {
            return;
        };
        let content = event.get("content").cloned().unwrap_or(Value::Null);
        match event_type {
            "m.room.member" => {
                if let Some(m) = content.get("membership").and_then(Value::as_str) {
                    self.members.insert(state_key.to_owned(), m.to_owned());
                }
            }
            "m.room.name" => {
                self.name = content
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned);
            }
            "m.room.encryption" if content.get("algorithm").is_some() => {
                self.encryption = Some(content);
            }
            // An empty or redacted content lifts the policy.
            "m.room.retention" if state_key.is_empty() => {
                self.retention =
                    Some(content).filter(|c| c.as_object().is_some_and(|m| !m.is_empty()));
            }
            _ => {}
        }
    }
}

/// The client's in-memory state, with what changed since the last save.
#[derive(Default)]
pub(crate) struct ClientState {
    pub rooms: BTreeMap<String, Room>,
    pub sync_token: Option<String>,
    pub app_data: BTreeMap<String, Zeroizing<Vec<u8>>>,
    pub dirty_rooms: BTreeSet<String>,
    pub dirty_app: BTreeSet<String>,
}

fn json_bytes<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    crate::crypto::to_vec_secret(value)
}

impl ClientState {
    pub(super) fn room_mut(&mut self, room_id: &str, membership: Membership) -> &mut Room {
        self.dirty_rooms.insert(room_id.to_owned());
        self.rooms
            .entry(room_id.to_owned())
            .or_insert_with(|| Room::new(room_id, membership))
    }

    /// Records for what changed, and the keys of removed app data.
    pub(super) fn changed_records(&self) -> Result<StoreChanges, CryptoError> {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for room_id in &self.dirty_rooms {
            if let Some(room) = self.rooms.get(room_id) {
                upserts.push(Record {
                    kind: RECORD_ROOM.to_owned(),
                    id: room_id.clone(),
                    data: json_bytes(room)?,
                });
            }
        }
        for key in &self.dirty_app {
            match self.app_data.get(key) {
                Some(data) => upserts.push(Record {
                    kind: RECORD_APP.to_owned(),
                    id: key.clone(),
                    data: data.clone(),
                }),
                None => deletes.push((RECORD_APP.to_owned(), key.clone())),
            }
        }
        Ok(StoreChanges {
            upserts,
            deletes,
            sync_token: None,
        })
    }

    pub(super) fn mark_saved(&mut self) {
        self.dirty_rooms.clear();
        self.dirty_app.clear();
    }

    /// Rebuild from stored records; returns the session if there is one.
    pub(super) fn from_records(
        records: &[Record],
        sync_token: Option<String>,
    ) -> Result<(Self, Option<Session>), CryptoError> {
        let mut state = ClientState {
            sync_token,
            ..Default::default()
        };
        let mut session = None;
        for record in records {
            match record.kind.as_str() {
                RECORD_SESSION => session = Some(serde_json::from_slice(&record.data)?),
                RECORD_ROOM => {
                    let room: Room = serde_json::from_slice(&record.data)?;
                    state.rooms.insert(room.room_id.clone(), room);
                }
                RECORD_APP => {
                    state
                        .app_data
                        .insert(record.id.clone(), record.data.clone());
                }
                _ => {}
            }
        }
        Ok((state, session))
    }
}

pub(crate) fn session_record(session: &Session) -> Result<Record, CryptoError> {
    Ok(Record {
        kind: RECORD_SESSION.to_owned(),
        id: String::new(),
        data: json_bytes(session)?,
    })
}
