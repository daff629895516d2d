//! Verification in a room (spec: "Key verification framework", in-room),
//! as Element verifies other people: the request is an `m.room.message`
//! of msgtype `m.key.verification.request` in a DM, the flow's id is that
//! event's id, and every later message is a room event of type
//! `m.key.verification.*` with an `m.reference` to it. The SAS itself is
//! the same as over to-device.

use serde_json::{json, Value};

use super::super::error::CryptoError;
use super::super::machine::{check_room_id, check_user_id, OlmMachine};
use super::super::requests::{PendingKind, RequestBody};
use super::flow::Flow;
use super::{OUR_METHODS, VERIFICATION_EVENTS};

const REQUEST_MSGTYPE: &str = "m.key.verification.request";

impl OlmMachine {
    /// Ask `user_id` to verify in the DM `room_id`, as Element does for
    /// other people. Returns a provisional flow id; once the request event
    /// is sent (its `mark_request_as_sent`), the flow goes by the event's
    /// id, which [`verification_id`](Self::verification_id) gives.
    pub fn request_verification_in_room(
        &mut self,
        room_id: &str,
        user_id: &str,
        now_ms: u64,
    ) -> Result<String, CryptoError> {
        check_room_id(room_id)?;
        check_user_id(user_id)?;
        let provisional = self.requests.next_id();
        let content = json!({
            "msgtype": REQUEST_MSGTYPE,
            "body": format!(
                "{} is requesting to verify your key, but your client does not support in-chat key verification.",
                self.user_id
            ),
            "from_device": self.device_id,
            "methods": OUR_METHODS,
            "to": user_id,
        });
        self.requests.push(
            RequestBody::RoomEvent {
                room_id: room_id.to_owned(),
                event_type: "m.room.message".to_owned(),
                txn_id: provisional.clone(),
                content,
            },
            PendingKind::RoomEvent {
                verification_request: Some(provisional.clone()),
            },
        );
        let flow =
            Flow::outgoing(provisional.clone(), user_id, Vec::new(), now_ms).in_room(room_id);
        self.verifications.insert(provisional.clone(), flow);
        self.changed(&provisional);
        Ok(provisional)
    }

    /// The flow id a provisional id (from
    /// [`request_verification_in_room`](Self::request_verification_in_room))
    /// became, or the id itself.
    pub fn verification_id(&self, id: &str) -> String {
        self.verification_aliases
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }

    /// The request event was sent: the flow is renamed after its event id.
    pub(crate) fn verification_request_sent(&mut self, provisional: &str, response: &Value) {
        let Some(event_id) = response.get("event_id").and_then(Value::as_str) else {
            return;
        };
        if let Some(mut flow) = self.verifications.remove(provisional) {
            flow.flow_id = event_id.to_owned();
            self.verifications.insert(event_id.to_owned(), flow);
            self.verification_aliases
                .insert(provisional.to_owned(), event_id.to_owned());
            self.changed(event_id);
        }
    }

    /// Take a room event (as the timeline delivers it, decrypted when it
    /// was encrypted) that may belong to an in-room verification: a
    /// request addressed to us, or a step of a flow in that room. Others
    /// are ignored. Our own events (the sync's echo) are skipped.
    pub fn receive_verification_room_event(&mut self, room_id: &str, event: &Value, now_ms: u64) {
        let text = |f: &str| event.get(f).and_then(Value::as_str);
        let (Some(sender), Some(event_type)) = (text("sender"), text("type")) else {
            return;
        };
        if sender == self.user_id {
            return;
        }
        let content = event.get("content").cloned().unwrap_or(Value::Null);
        self.last_now_ms = self.last_now_ms.max(now_ms);
        if event_type == "m.room.message"
            && content.get("msgtype").and_then(Value::as_str) == Some(REQUEST_MSGTYPE)
        {
            let (Some(event_id), Some(to)) =
                (text("event_id"), content.get("to").and_then(Value::as_str))
            else {
                return;
            };
            if to != self.user_id {
                return;
            }
            let timestamp = event
                .get("origin_server_ts")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let (sender, event_id) = (sender.to_owned(), event_id.to_owned());
            return self.receive_request(
                &sender,
                &event_id,
                &content,
                timestamp,
                now_ms,
                Some(room_id),
            );
        }
        if !VERIFICATION_EVENTS.contains(&event_type) || event_type == REQUEST_MSGTYPE {
            return;
        }
        let relation = content.get("m.relates_to");
        if relation
            .and_then(|r| r.get("rel_type"))
            .and_then(Value::as_str)
            != Some("m.reference")
        {
            return;
        }
        let Some(flow_id) = relation
            .and_then(|r| r.get("event_id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return;
        };
        let (sender, event_type) = (sender.to_owned(), event_type.to_owned());
        self.step_flow(
            &flow_id,
            &sender,
            &event_type,
            &content,
            now_ms,
            Some(room_id),
        );
    }

    pub(crate) fn send_room_verification(
        &mut self,
        room_id: &str,
        event_type: &str,
        content: Value,
    ) {
        let txn_id = self.requests.next_id();
        self.requests.push(
            RequestBody::RoomEvent {
                room_id: room_id.to_owned(),
                event_type: event_type.to_owned(),
                txn_id,
                content,
            },
            PendingKind::RoomEvent {
                verification_request: None,
            },
        );
    }
}
