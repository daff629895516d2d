//! Printing events and rooms, and the inbox of messages that arrived while
//! another command ran.

use cloister_sdk::client::{Client, ClientError, Encryption, Room, TimelineEvent};
use serde_json::json;

const INBOX_KEY: &str = "cli.inbox";
/// Older kept messages are dropped beyond this many.
const INBOX_LIMIT: usize = 1000;

/// A message worth printing: not state, and not sent by this very device.
pub(crate) fn is_message(client: &Client, event: &TimelineEvent) -> bool {
    event.state_key.is_none()
        && event.event_type != "m.room.redaction"
        && !(event.sender == client.user_id() && event.sender_device() == Some(client.device_id()))
}

/// Messages received but not yet printed by `listen`, kept sealed in the
/// store as application data.
pub(crate) struct Inbox(Vec<TimelineEvent>);

impl Inbox {
    /// The kept messages, less those expired under their room's retention
    /// policy: this is a store of plaintext, so it must forget them too (the
    /// next `save` deletes them from the store).
    pub(crate) async fn load(client: &Client) -> Self {
        let events: Vec<TimelineEvent> = client
            .app_data(INBOX_KEY)
            .await
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let mut kept = Vec::with_capacity(events.len());
        for event in events {
            if !client.is_expired(&event).await {
                kept.push(event);
            }
        }
        Self(kept)
    }

    pub(crate) async fn save(&self, client: &Client) -> Result<(), ClientError> {
        let value = if self.0.is_empty() {
            None
        } else {
            Some(serde_json::to_vec(&self.0).unwrap_or_default())
        };
        if value.is_none() && client.app_data(INBOX_KEY).await.is_none() {
            return Ok(());
        }
        client.set_app_data(INBOX_KEY, value).await
    }

    pub(crate) fn extend(&mut self, events: impl IntoIterator<Item = TimelineEvent>) {
        for event in events {
            if !self.0.iter().any(|e| e.event_id == event.event_id) {
                self.0.push(event);
            }
        }
        if self.0.len() > INBOX_LIMIT {
            let excess = self.0.len() - INBOX_LIMIT;
            self.0.drain(..excess);
        }
    }

    /// Split off up to `limit` matching events (in order); the rest stay.
    pub(crate) fn take_matching(
        self,
        wanted: &dyn Fn(&TimelineEvent) -> bool,
        limit: Option<usize>,
    ) -> (Vec<TimelineEvent>, Inbox) {
        let mut taken = Vec::new();
        let mut kept = Vec::new();
        for event in self.0 {
            if wanted(&event) && limit.is_none_or(|l| taken.len() < l) {
                taken.push(event);
            } else {
                kept.push(event);
            }
        }
        (taken, Inbox(kept))
    }
}

pub(crate) fn print_event(event: &TimelineEvent, json: bool) {
    if json {
        println!("{}", serde_json::to_string(event).unwrap_or_default());
        return;
    }
    let what = match (&event.encryption, event.msgtype()) {
        (Encryption::Undecryptable { reason, .. }, _) => {
            format!("** unable to decrypt: {reason} **")
        }
        (_, Some("m.text" | "m.notice" | "m.emote")) => event.body().unwrap_or_default().to_owned(),
        (_, Some(_)) if event.encrypted_file().is_some() => format!(
            "sent a file {:?} — cloister-cli download {} PATH",
            event.body().unwrap_or_default(),
            event.event_id
        ),
        _ => format!("{} {}", event.event_type, event.content),
    };
    let shield = match &event.encryption {
        Encryption::Decrypted { verified: true, .. } => "",
        Encryption::Decrypted { .. } => " (unverified device)",
        Encryption::Plaintext => " (not encrypted)",
        Encryption::Undecryptable { .. } => "",
    };
    println!("[{}] {}{}: {}", event.room_id, event.sender, shield, what);
}

pub(crate) fn print_rooms(rooms: &[Room], json: bool) {
    for room in rooms {
        let membership = format!("{:?}", room.membership).to_lowercase();
        if json {
            let line = json!({
                "room_id": room.room_id,
                "membership": membership,
                "name": room.name,
                "encrypted": room.is_encrypted(),
                "members": room.active_members(),
                "inviter": room.inviter,
            });
            println!("{line}");
        } else {
            println!(
                "{}\t{}\t{}\t{} members{}",
                room.room_id,
                membership,
                room.name.as_deref().unwrap_or("-"),
                room.active_members().len(),
                room.inviter
                    .as_deref()
                    .map(|i| format!(", invited by {i}"))
                    .unwrap_or_default()
            );
        }
    }
}
