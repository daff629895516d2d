//! Room events in the client-server format (spec: "ClientEvent"), as
//! `/messages`, `/context`, `/rooms/{roomId}/event` and this server's
//! `/sync` timelines send them.
//!
//! Fields are declared in alphabetical order, the order `serde_json` gives
//! a map, so an event serialized from this type is the same byte for byte
//! as one built with `json!`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A room event as a client sees it. Ids are plain strings: they are
/// checked where they are minted or used (see [`crate::ids`]), so one odd
/// id from a remote server does not make a whole response unreadable.
///
/// The spec's sync timelines may leave out `room_id` (its
/// "ClientEventWithoutRoomID"); this type requires it, as every other
/// endpoint sends it and this server sends it in sync too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEvent {
    /// The content (an object; `{}` once redacted, bar what the room
    /// version keeps).
    pub content: Value,
    /// The event id, `$…`.
    pub event_id: String,
    /// When the sender's server received it, in milliseconds since the
    /// Unix epoch.
    pub origin_server_ts: u64,
    /// For `m.room.redaction`: the event it redacts. Room version 11 moved
    /// it into `content`; clients still read it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacts: Option<String>,
    /// The room it belongs to.
    pub room_id: String,
    /// The sending user.
    pub sender: String,
    /// Present, possibly empty, exactly when this is a state event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    /// The event type, e.g. `m.room.message`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What the server adds and signatures do not cover: `age`,
    /// `transaction_id` (for the sending device only), `prev_content`,
    /// `redacted_because`, …
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub unsigned: Map<String, Value>,
}

/// A relation an event declares in `content["m.relates_to"]` (spec:
/// "Forming relationships between events"). A rich reply alone
/// (`m.in_reply_to` without `rel_type`) is not one: it is only a hint for
/// display, and servers neither index nor aggregate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relation<'a> {
    /// `m.thread`, `m.replace`, `m.reference`, `m.annotation`, or a custom type.
    pub rel_type: &'a str,
    /// The event related to (the parent).
    pub event_id: &'a str,
}

/// Longest `rel_type` read as a relation; longer ones are ignored rather
/// than indexed, as no spec or MSC type comes near it.
const MAX_REL_TYPE: usize = 255;

/// The relation `content` declares, if it declares a well-formed one. The
/// field sits outside the ciphertext of `m.room.encrypted` events, so this
/// works for encrypted events too.
pub fn relation(content: &Value) -> Option<Relation<'_>> {
    let relates_to = content.get("m.relates_to")?;
    let rel_type = relates_to.get("rel_type")?.as_str()?;
    let event_id = relates_to.get("event_id")?.as_str()?;
    if rel_type.is_empty() || rel_type.len() > MAX_REL_TYPE || !event_id.starts_with('$') {
        return None;
    }
    Some(Relation { rel_type, event_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round_trip;
    use serde_json::json;

    #[test]
    fn relations_are_read_from_clear_and_encrypted_content() {
        let thread = json!({"msgtype": "m.text", "body": "x",
            "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}});
        assert_eq!(
            relation(&thread),
            Some(Relation {
                rel_type: "m.thread",
                event_id: "$root"
            })
        );
        let encrypted = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "c",
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}});
        assert_eq!(relation(&encrypted).map(|r| r.rel_type), Some("m.replace"));
    }

    #[test]
    fn replies_and_malformed_relations_are_not_relations() {
        for content in [
            json!({"m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}}),
            json!({"m.relates_to": {"rel_type": "m.thread"}}),
            json!({"m.relates_to": {"rel_type": "m.thread", "event_id": 5}}),
            json!({"m.relates_to": {"rel_type": "m.thread", "event_id": "no-sigil"}}),
            json!({"m.relates_to": {"rel_type": "", "event_id": "$x"}}),
            json!({"m.relates_to": {"rel_type": "x".repeat(256), "event_id": "$x"}}),
            json!({"m.relates_to": "$x"}),
            json!({}),
        ] {
            assert_eq!(relation(&content), None, "{content}");
        }
    }

    #[test]
    fn message_event_matches_the_spec_example() {
        let example = json!({
            "content": {
                "body": "This is an example text message",
                "format": "org.matrix.custom.html",
                "formatted_body": "<b>This is an example text message</b>",
                "msgtype": "m.text"
            },
            "event_id": "$143273582443PhrSn:example.org",
            "origin_server_ts": 1432735824653u64,
            "room_id": "!jEsUZKDJdhlrceRyVU:example.org",
            "sender": "@example:example.org",
            "type": "m.room.message",
            "unsigned": {"age": 1234, "membership": "join"}
        });
        let event: ClientEvent = round_trip(&example);
        assert_eq!(event.state_key, None);
        assert_eq!(event.unsigned["age"], 1234);

        // Without `unsigned` nothing is added.
        let mut bare = example.clone();
        bare.as_object_mut().unwrap().remove("unsigned");
        let event: ClientEvent = round_trip(&bare);
        assert!(event.unsigned.is_empty());
        let mut no_room = bare;
        no_room.as_object_mut().unwrap().remove("room_id");
        assert!(serde_json::from_value::<ClientEvent>(no_room).is_err());
    }

    #[test]
    fn state_and_redaction_events_keep_their_extras() {
        let state = json!({
            "content": {"membership": "join", "displayname": "Alice"},
            "event_id": "$state:example.org",
            "origin_server_ts": 1432735824653u64,
            "room_id": "!room:example.org",
            "sender": "@alice:example.org",
            "state_key": "@alice:example.org",
            "type": "m.room.member",
            "unsigned": {"age": 1, "prev_content": {"membership": "invite"}}
        });
        let event: ClientEvent = round_trip(&state);
        assert_eq!(event.state_key.as_deref(), Some("@alice:example.org"));

        // An empty state key is still a state event.
        let mut empty_key = state.clone();
        empty_key["state_key"] = json!("");
        let event: ClientEvent = round_trip(&empty_key);
        assert_eq!(event.state_key.as_deref(), Some(""));

        let redaction = json!({
            "content": {"reason": "spam", "redacts": "$state:example.org"},
            "event_id": "$redaction:example.org",
            "origin_server_ts": 1432735824654u64,
            "redacts": "$state:example.org",
            "room_id": "!room:example.org",
            "sender": "@alice:example.org",
            "type": "m.room.redaction"
        });
        let event: ClientEvent = round_trip(&redaction);
        assert_eq!(event.redacts.as_deref(), Some("$state:example.org"));
    }
}
