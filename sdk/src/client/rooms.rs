//! Rooms: create, invite, join, leave, and what the client knows of them.

use serde_json::{json, Value};

use super::http::{encode, Result};
use super::state::{Membership, Room};
use super::{room_path, Client, ClientError};
use crate::crypto::{EncryptionSettings, MEGOLM_V1};

/// Options for [`Client::create_room`]. Rooms are always end-to-end
/// encrypted with Megolm.
#[derive(Debug, Clone, Default)]
pub struct CreateRoom {
    /// The room's name (`m.room.name`), if any.
    pub name: Option<String>,
    /// The room's topic (`m.room.topic`), if any.
    pub topic: Option<String>,
    /// User ids to invite.
    pub invite: Vec<String>,
    /// Mark the room as a direct chat.
    pub is_direct: bool,
}

impl Client {
    /// Create a private, encrypted room and return its id.
    pub async fn create_room(&self, options: &CreateRoom) -> Result<String> {
        let mut body = json!({
            "preset": "private_chat",
            "invite": options.invite,
            "is_direct": options.is_direct,
            "initial_state": [{
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": MEGOLM_V1},
            }],
        });
        if let Some(name) = &options.name {
            body["name"] = json!(name);
        }
        if let Some(topic) = &options.topic {
            body["topic"] = json!(topic);
        }
        let response = self
            .inner
            .http
            .post("/_matrix/client/v3/createRoom", &body)
            .await?;
        let room_id = response
            .get("room_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::InvalidResponse {
                path: "/_matrix/client/v3/createRoom".to_owned(),
                reason: "no room_id".to_owned(),
            })?
            .to_owned();
        let mut state = self.inner.state.lock().await;
        let room = state.room_mut(&room_id, Membership::Join);
        room.membership = Membership::Join;
        room.name = options.name.clone();
        room.encryption = Some(json!({"algorithm": MEGOLM_V1}));
        room.members
            .insert(self.user_id().to_owned(), "join".to_owned());
        for user in &options.invite {
            room.members.insert(user.clone(), "invite".to_owned());
        }
        let mut machine = self.inner.machine.lock().await;
        self.save(Some(&mut state), &mut machine, None).await?;
        Ok(room_id)
    }

    /// Invite a user to a room.
    pub async fn invite(&self, room_id: &str, user_id: &str) -> Result<()> {
        self.inner
            .http
            .post(&room_path(room_id, "invite"), &json!({"user_id": user_id}))
            .await?;
        Ok(())
    }

    /// Join a room by id or alias; returns the room id.
    pub async fn join(&self, room_id_or_alias: &str) -> Result<String> {
        let path = format!("/_matrix/client/v3/join/{}", encode(room_id_or_alias));
        let response = self.inner.http.post(&path, &json!({})).await?;
        let room_id = response
            .get("room_id")
            .and_then(Value::as_str)
            .unwrap_or(room_id_or_alias)
            .to_owned();
        let mut state = self.inner.state.lock().await;
        let room = state.room_mut(&room_id, Membership::Join);
        room.membership = Membership::Join;
        let mut machine = self.inner.machine.lock().await;
        self.save(Some(&mut state), &mut machine, None).await?;
        Ok(room_id)
    }

    /// Leave a room. Our outbound key for it is dropped: were we to come
    /// back, a new one is made.
    pub async fn leave(&self, room_id: &str) -> Result<()> {
        self.inner
            .http
            .post(&room_path(room_id, "leave"), &json!({}))
            .await?;
        let mut state = self.inner.state.lock().await;
        let room = state.room_mut(room_id, Membership::Leave);
        room.membership = Membership::Leave;
        let mut machine = self.inner.machine.lock().await;
        machine.invalidate_group_session(room_id);
        self.save(Some(&mut state), &mut machine, None).await
    }

    /// The rooms the client knows from sync, sorted by id.
    pub async fn rooms(&self) -> Vec<Room> {
        self.inner
            .state
            .lock()
            .await
            .rooms
            .values()
            .cloned()
            .collect()
    }

    /// The room with this id as the client knows it from sync, if any.
    pub async fn room(&self, room_id: &str) -> Option<Room> {
        self.inner.state.lock().await.rooms.get(room_id).cloned()
    }

    /// The joined and invited members, as the server lists them now (what
    /// room keys are shared with).
    pub async fn active_members(&self, room_id: &str) -> Result<Vec<String>> {
        let response = self.inner.http.get(&room_path(room_id, "members")).await?;
        let mut members: Vec<String> = response
            .get("chunk")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| {
                matches!(
                    e.pointer("/content/membership").and_then(Value::as_str),
                    Some("join" | "invite")
                )
            })
            .filter_map(|e| e.get("state_key").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        members.sort();
        members.dedup();
        Ok(members)
    }

    /// The room's key rotation policy: from sync, else asked of the server.
    pub(crate) async fn encryption_settings(&self, room_id: &str) -> Result<EncryptionSettings> {
        if let Some(content) = self
            .inner
            .state
            .lock()
            .await
            .rooms
            .get(room_id)
            .and_then(|r| r.encryption.clone())
        {
            return Ok(EncryptionSettings::from_room_encryption_content(&content));
        }
        let path = room_path(room_id, "state/m.room.encryption/");
        match self.inner.http.get(&path).await {
            Ok(content) => Ok(EncryptionSettings::from_room_encryption_content(&content)),
            Err(ClientError::Server { status: 404, .. }) => {
                Err(ClientError::InvalidArgument(format!(
                    "{room_id} is not an encrypted room; this client sends only encrypted messages"
                )))
            }
            Err(error) => Err(error),
        }
    }
}
