//! Sending (text, files) with the room key shared first; reading history
//! with decryption; encrypted attachments in and out of the media
//! repository.

use base64::Engine as _;
use rand::RngCore as _;
use serde_json::{json, Value};

use super::events::{to_timeline_event, TimelineEvent};
use super::http::{encode, Result};
use super::retention::raw_is_expired;
use super::{room_path, Client, ClientError};
use crate::crypto::{decrypt_attachment, encrypt_attachment, EncryptedFile};

/// How many share rounds (query, claim, to-device) a send may take.
const MAX_SHARE_ROUNDS: usize = 8;

/// Which way to page through history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Older events first (from the end of the room by default).
    Backward,
    /// Newer events first.
    Forward,
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct Messages {
    /// In the order paged (newest first when backward).
    pub events: Vec<TimelineEvent>,
    /// Token for the next page; `None` at the end of the room.
    pub end: Option<String>,
}

fn transaction_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "cl{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

impl Client {
    /// Encrypt and send an event; returns its event id.
    ///
    /// The room's Megolm key is first shared with every device of every
    /// joined or invited member (as the server lists them now), claiming
    /// Olm sessions where needed, and rotated if someone left. The advanced
    /// ratchet is committed to the store before the event leaves.
    pub async fn send_message(
        &self,
        room_id: &str,
        event_type: &str,
        content: &Value,
    ) -> Result<String> {
        self.send_message_carrying(room_id, event_type, content, &[])
            .await
    }

    /// [`send_message`](Self::send_message) for an event that carries
    /// uploads: the server cannot read the encrypted event, so it is told
    /// which `mxc://` files it carries (`attach_media`, as in MSC3911) and
    /// can delete them when retention expires the event. Servers that do not
    /// know the parameter ignore it.
    async fn send_message_carrying(
        &self,
        room_id: &str,
        event_type: &str,
        content: &Value,
        attachments: &[&str],
    ) -> Result<String> {
        self.enforce_room_retention(room_id).await?;
        let settings = self.encryption_settings(room_id).await?;
        let members = self.active_members(room_id).await?;
        let _guard = self.inner.send_lock.lock().await;
        let mut shared = false;
        for _ in 0..MAX_SHARE_ROUNDS {
            let requests = {
                let mut machine = self.inner.machine.lock().await;
                let requests = machine.share_room_key(room_id, &members, settings, self.now())?;
                self.save(None, &mut machine, None).await?;
                requests
            };
            if requests.is_empty() {
                shared = true;
                break;
            }
            for request in &requests {
                self.send_crypto_request(request).await?;
            }
        }
        if !shared {
            return Err(ClientError::InvalidArgument(format!(
                "the room key for {room_id} could not be shared in {MAX_SHARE_ROUNDS} rounds"
            )));
        }
        let encrypted = {
            let mut machine = self.inner.machine.lock().await;
            let encrypted = machine.encrypt_room_event(room_id, event_type, content, self.now())?;
            self.save(None, &mut machine, None).await?;
            encrypted
        };
        let mut path = room_path(
            room_id,
            &format!("send/m.room.encrypted/{}", encode(&transaction_id())),
        );
        for (i, mxc) in attachments.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            path.push_str(&format!("{sep}attach_media={}", encode(mxc)));
        }
        let response = self.inner.http.put(&path, &encrypted).await?;
        response
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::InvalidResponse {
                path: "/send".to_owned(),
                reason: "no event_id".to_owned(),
            })
    }

    /// Send an encrypted `m.text` message; returns its event id.
    pub async fn send_text(&self, room_id: &str, body: &str) -> Result<String> {
        self.send_message(
            room_id,
            "m.room.message",
            &json!({"msgtype": "m.text", "body": body}),
        )
        .await
    }

    /// Encrypt a file (AES-CTR, Matrix v2 attachments), upload the
    /// ciphertext, and send an encrypted `m.file` (or `m.image` for
    /// `image/*`) message carrying its key; returns the event id.
    pub async fn send_file(
        &self,
        room_id: &str,
        file_name: &str,
        mimetype: &str,
        data: &[u8],
    ) -> Result<String> {
        let file = self.upload_encrypted(data).await?;
        let msgtype = if mimetype.starts_with("image/") {
            "m.image"
        } else {
            "m.file"
        };
        let content = json!({
            "msgtype": msgtype,
            "body": file_name,
            "filename": file_name,
            "info": {"mimetype": mimetype, "size": data.len()},
            "file": file,
        });
        self.send_message_carrying(room_id, "m.room.message", &content, &[&file.url])
            .await
    }

    /// Encrypt `data` and upload the ciphertext; returns the `file` object
    /// to put in an event.
    pub async fn upload_encrypted(&self, data: &[u8]) -> Result<EncryptedFile> {
        let attachment = encrypt_attachment(data)?;
        let response = self
            .inner
            .http
            .upload(
                "/_matrix/media/v3/upload",
                "application/octet-stream",
                attachment.ciphertext.clone(),
            )
            .await?;
        let uri = response
            .get("content_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::InvalidResponse {
                path: "/_matrix/media/v3/upload".to_owned(),
                reason: "no content_uri".to_owned(),
            })?;
        Ok(attachment.file(uri))
    }

    /// Download an encrypted attachment (authenticated media), check its
    /// hash and decrypt it.
    pub async fn download_attachment(&self, file: &EncryptedFile) -> Result<Vec<u8>> {
        let (server, media_id) = file
            .url
            .strip_prefix("mxc://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(s, m)| !s.is_empty() && !m.is_empty())
            .ok_or_else(|| ClientError::InvalidArgument(format!("not an mxc URI: {}", file.url)))?;
        let path = format!(
            "/_matrix/client/v1/media/download/{}/{}",
            encode(server),
            encode(media_id)
        );
        let ciphertext = self.inner.http.download(&path).await?;
        Ok(decrypt_attachment(&ciphertext, file)?)
    }

    /// A page of a room's history, decrypted. `from` is the `end` of the
    /// previous page (or a sync token); `None` starts at the newest event
    /// when paging backward.
    pub async fn messages(
        &self,
        room_id: &str,
        from: Option<&str>,
        direction: Direction,
        limit: u32,
    ) -> Result<Messages> {
        let dir = match direction {
            Direction::Backward => "b",
            Direction::Forward => "f",
        };
        let mut path = room_path(room_id, &format!("messages?dir={dir}&limit={limit}"));
        if let Some(from) = from {
            path.push_str(&format!("&from={}", encode(from)));
        }
        let response = self.inner.http.get(&path).await?;
        let mut raw = response
            .get("chunk")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let events = {
            let now = self.now();
            let state = self.inner.state.lock().await;
            // Whatever the server still returns, expired events are not
            // shown (nor decrypted).
            raw.retain(|e| !raw_is_expired(&state, room_id, e, now));
            let mut machine = self.inner.machine.lock().await;
            let events = raw
                .iter()
                .map(|e| to_timeline_event(&mut machine, room_id, e))
                .collect();
            // The replay log grew.
            self.save(None, &mut machine, None).await?;
            events
        };
        Ok(Messages {
            events,
            end: response
                .get("end")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// One event of a room, decrypted.
    pub async fn event(&self, room_id: &str, event_id: &str) -> Result<TimelineEvent> {
        let path = room_path(room_id, &format!("event/{}", encode(event_id)));
        let raw = self.inner.http.get(&path).await?;
        let state = self.inner.state.lock().await;
        if raw_is_expired(&state, room_id, &raw, self.now()) {
            return Err(ClientError::Expired {
                room_id: room_id.to_owned(),
                event_id: event_id.to_owned(),
            });
        }
        let mut machine = self.inner.machine.lock().await;
        let event = to_timeline_event(&mut machine, room_id, &raw);
        self.save(None, &mut machine, None).await?;
        Ok(event)
    }

    /// Find an event by id in the rooms we are in (for callers that know
    /// only the event id).
    pub async fn find_event(&self, event_id: &str) -> Result<TimelineEvent> {
        let rooms = self.rooms().await;
        for room in rooms {
            match self.event(&room.room_id, event_id).await {
                Ok(event) => return Ok(event),
                Err(ClientError::Server {
                    status: 403 | 404, ..
                }) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(ClientError::InvalidArgument(format!(
            "event {event_id} is in none of this account's rooms"
        )))
    }
}
