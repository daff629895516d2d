//! Events handed to C: room events (decrypted), invites, sync errors and
//! key-change warnings, with accessor functions; and lists of them
//! (history pages).

use std::ffi::{c_char, CString};

use cloister_sdk::client::{Encryption, TimelineEvent};
use serde_json::Value;

use crate::result::{cloister_result, guard_value, Error, CLOISTER_RESULT_OK};
use crate::types::c_string;

/// What an event is about. Stable values.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cloister_event_kind {
    /// An `m.room.message` (text, file, image…); see `cloister_event_body`,
    /// `cloister_event_msgtype`, `cloister_event_has_file`.
    CLOISTER_EVENT_MESSAGE = 1,
    /// An `m.room.member` change; see `cloister_event_membership` and
    /// `cloister_event_state_key` (whose membership changed).
    CLOISTER_EVENT_MEMBERSHIP = 2,
    /// Any other room event (room creation, name, undecryptable…).
    CLOISTER_EVENT_ROOM = 3,
    /// This user was invited to `cloister_event_room_id` by
    /// `cloister_event_sender` (may be NULL).
    CLOISTER_EVENT_INVITE = 4,
    /// A sync failed; `cloister_event_body` says why and
    /// `cloister_event_result` gives the result code (e.g.
    /// `CLOISTER_RESULT_UNKNOWN_TOKEN`: the session was revoked, sign in
    /// again). Sync goes on with a growing pause (at least as long as a
    /// rate-limiting server asks).
    CLOISTER_EVENT_SYNC_ERROR = 5,
    /// The device keys of `cloister_event_sender` (a user sharing an
    /// encrypted room with us) changed: a device was added, removed or
    /// re-keyed. `cloister_event_body` lists the change.
    CLOISTER_EVENT_KEY_CHANGE = 6,
    /// A verification changed phase (a request arrived, the other side
    /// answered, emoji to show, done, cancelled):
    /// `cloister_event_verification_flow` names it, `cloister_event_sender`
    /// is the other user, `cloister_event_body` the phase's name; ask
    /// `cloister_client_verification_phase` for where it stands.
    CLOISTER_EVENT_VERIFICATION = 7,
}

pub use cloister_event_kind::*;

/// How a room event travelled. Stable values.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cloister_encryption {
    /// Not a room event, or sent in the clear (state events).
    CLOISTER_ENCRYPTION_NONE = 0,
    /// Decrypted with Megolm.
    CLOISTER_ENCRYPTION_DECRYPTED = 1,
    /// Could not be decrypted; `cloister_event_body` holds the reason.
    CLOISTER_ENCRYPTION_UNDECRYPTABLE = 2,
}

pub use cloister_encryption::*;

/// How far a decrypted event's sender can be trusted
/// (`cloister_event_sender_trust`), as an app shows it next to the message.
/// Stable values.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cloister_sender_trust {
    /// Not a decrypted event.
    CLOISTER_SENDER_TRUST_NONE = 0,
    /// Sent by a verified device (by emoji, by the user's decision, or
    /// through the verified sender's cross-signing), or by this device.
    CLOISTER_SENDER_TRUST_VERIFIED = 1,
    /// The sending device is known and its keys match, but it is not
    /// verified.
    CLOISTER_SENDER_TRUST_DEVICE_NOT_VERIFIED = 2,
    /// The sending device is not in its owner's device list (yet).
    CLOISTER_SENDER_TRUST_UNKNOWN_DEVICE = 3,
    /// Decrypted with a key forwarded by another own device or restored
    /// from the key backup: the sender cannot be authenticated.
    CLOISTER_SENDER_TRUST_FORWARDED_KEY = 4,
}

pub use cloister_sender_trust::*;

fn sender_trust(verified: bool, reason: Option<&str>) -> cloister_sender_trust {
    match (verified, reason) {
        (true, _) => CLOISTER_SENDER_TRUST_VERIFIED,
        (false, Some("unknown device")) => CLOISTER_SENDER_TRUST_UNKNOWN_DEVICE,
        (false, Some("forwarded key")) => CLOISTER_SENDER_TRUST_FORWARDED_KEY,
        (false, _) => CLOISTER_SENDER_TRUST_DEVICE_NOT_VERIFIED,
    }
}

/// One event, owned by the caller when returned by
/// `cloister_client_next_event` (free it with `cloister_event_free`), or
/// borrowed when passed to a callback or read from a `cloister_event_list`.
/// Every `const char *` accessor returns a string borrowed from the event
/// (valid until it is freed), or NULL when the event has no such field.
pub struct cloister_event {
    kind: cloister_event_kind,
    room_id: Option<CString>,
    event_id: Option<CString>,
    sender: Option<CString>,
    event_type: Option<CString>,
    body: Option<CString>,
    msgtype: Option<CString>,
    membership: Option<CString>,
    state_key: Option<CString>,
    content_json: Option<CString>,
    /// The verification a `CLOISTER_EVENT_VERIFICATION` is about.
    flow_id: Option<CString>,
    timestamp: u64,
    encryption: cloister_encryption,
    verified: bool,
    trust: cloister_sender_trust,
    /// What a failed sync returned (sync errors only).
    result: cloister_result,
    /// The room event, for downloading its attachment.
    pub(crate) timeline: Option<TimelineEvent>,
}

impl cloister_event {
    fn bare(kind: cloister_event_kind) -> Self {
        Self {
            kind,
            room_id: None,
            event_id: None,
            sender: None,
            event_type: None,
            body: None,
            msgtype: None,
            membership: None,
            state_key: None,
            content_json: None,
            flow_id: None,
            timestamp: 0,
            encryption: CLOISTER_ENCRYPTION_NONE,
            verified: false,
            trust: CLOISTER_SENDER_TRUST_NONE,
            result: CLOISTER_RESULT_OK,
            timeline: None,
        }
    }

    pub(crate) fn from_timeline(event: TimelineEvent) -> Self {
        let kind = match event.event_type.as_str() {
            "m.room.message" => CLOISTER_EVENT_MESSAGE,
            "m.room.member" => CLOISTER_EVENT_MEMBERSHIP,
            _ => CLOISTER_EVENT_ROOM,
        };
        let text = |s: Option<&str>| s.map(c_string);
        let mut out = Self::bare(kind);
        out.room_id = Some(c_string(&event.room_id));
        out.event_id = Some(c_string(&event.event_id));
        out.sender = Some(c_string(&event.sender));
        out.event_type = Some(c_string(&event.event_type));
        out.body = text(event.body());
        out.msgtype = text(event.msgtype());
        out.membership = text(event.content.get("membership").and_then(Value::as_str));
        out.state_key = text(event.state_key.as_deref());
        out.content_json = Some(c_string(&event.content.to_string()));
        out.timestamp = event.origin_server_ts;
        match &event.encryption {
            Encryption::Plaintext => {}
            Encryption::Decrypted {
                verified,
                unverified_reason,
                ..
            } => {
                out.encryption = CLOISTER_ENCRYPTION_DECRYPTED;
                out.verified = *verified;
                out.trust = sender_trust(*verified, unverified_reason.as_deref());
            }
            Encryption::Undecryptable { reason, .. } => {
                out.encryption = CLOISTER_ENCRYPTION_UNDECRYPTABLE;
                out.body = Some(c_string(reason));
            }
        }
        out.timeline = Some(event);
        out
    }

    pub(crate) fn invite(room_id: &str, inviter: Option<&str>) -> Self {
        let mut out = Self::bare(CLOISTER_EVENT_INVITE);
        out.room_id = Some(c_string(room_id));
        out.sender = inviter.map(c_string);
        out
    }

    /// A sync that failed with `error`.
    pub(crate) fn sync_failed(error: &Error) -> Self {
        let mut out = Self::bare(CLOISTER_EVENT_SYNC_ERROR);
        out.body = Some(c_string(&error.message));
        out.result = error.code;
        out
    }

    pub(crate) fn verification(flow_id: &str, other_user: &str, phase: &str) -> Self {
        let mut out = Self::bare(CLOISTER_EVENT_VERIFICATION);
        out.flow_id = Some(c_string(flow_id));
        out.sender = Some(c_string(other_user));
        out.body = Some(c_string(phase));
        out
    }

    pub(crate) fn key_change(user_id: &str, description: &str) -> Self {
        let mut out = Self::bare(CLOISTER_EVENT_KEY_CHANGE);
        out.sender = Some(c_string(user_id));
        out.body = Some(c_string(description));
        out
    }
}

/// A borrowed string field of an event (`None`: NULL), or NULL.
fn field(
    event: Option<&cloister_event>,
    get: impl FnOnce(&cloister_event) -> &Option<CString>,
) -> *const c_char {
    guard_value(std::ptr::null(), || {
        event
            .and_then(|e| get(e).as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The event's kind; 0 for a NULL event.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_get_kind(event: *const cloister_event) -> u32 {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    guard_value(0, || event.map_or(0, |e| e.kind as u32))
}

/// The room the event belongs to (NULL for sync errors and key changes).
#[no_mangle]
pub unsafe extern "C" fn cloister_event_room_id(event: *const cloister_event) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.room_id)
}

/// The room event's id (NULL for invites, sync errors, key changes).
#[no_mangle]
pub unsafe extern "C" fn cloister_event_event_id(event: *const cloister_event) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.event_id)
}

/// The flow id of a `CLOISTER_EVENT_VERIFICATION` (NULL for other kinds).
#[no_mangle]
pub unsafe extern "C" fn cloister_event_verification_flow(
    event: *const cloister_event,
) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.flow_id)
}

/// The sender (room events), inviter (invites), user whose keys changed,
/// or the other user of a verification.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_sender(event: *const cloister_event) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.sender)
}

/// The (decrypted) Matrix event type, e.g. "m.room.message".
#[no_mangle]
pub unsafe extern "C" fn cloister_event_type(event: *const cloister_event) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.event_type)
}

/// A message's body (the file name for files); the reason for sync errors
/// and undecryptable events; the change for key-change warnings.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_body(event: *const cloister_event) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.body)
}

/// A message's msgtype ("m.text", "m.file", "m.image"…).
#[no_mangle]
pub unsafe extern "C" fn cloister_event_msgtype(event: *const cloister_event) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.msgtype)
}

/// A membership event's new membership ("join", "invite", "leave"…).
#[no_mangle]
pub unsafe extern "C" fn cloister_event_membership(event: *const cloister_event) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.membership)
}

/// A state event's state key (for membership: the user concerned).
#[no_mangle]
pub unsafe extern "C" fn cloister_event_state_key(event: *const cloister_event) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.state_key)
}

/// The room event's (decrypted) content as JSON text.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_content_json(
    event: *const cloister_event,
) -> *const c_char {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    field(event, |e| &e.content_json)
}

/// The server timestamp in milliseconds since the epoch (0 if none).
#[no_mangle]
pub unsafe extern "C" fn cloister_event_timestamp(event: *const cloister_event) -> u64 {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    guard_value(0, || event.map_or(0, |e| e.timestamp))
}

/// How the event travelled (a `cloister_encryption` value).
#[no_mangle]
pub unsafe extern "C" fn cloister_event_encryption(event: *const cloister_event) -> u32 {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    guard_value(0, || event.map_or(0, |e| e.encryption as u32))
}

/// Whether a decrypted event's sending device is verified by this user.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_is_verified(event: *const cloister_event) -> bool {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    guard_value(false, || event.is_some_and(|e| e.verified))
}

/// How far a decrypted event's sender can be trusted (a
/// `cloister_sender_trust`); `CLOISTER_SENDER_TRUST_NONE` for other events
/// and NULL.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_sender_trust(
    event: *const cloister_event,
) -> cloister_sender_trust {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    guard_value(CLOISTER_SENDER_TRUST_NONE, || {
        event.map_or(CLOISTER_SENDER_TRUST_NONE, |e| e.trust)
    })
}

/// For `CLOISTER_EVENT_SYNC_ERROR`: the `cloister_result` of the failed
/// sync, e.g. `CLOISTER_RESULT_UNKNOWN_TOKEN` (the session was revoked or
/// expired: sign in again), `CLOISTER_RESULT_NETWORK`,
/// `CLOISTER_RESULT_CRYPTO`. `CLOISTER_RESULT_OK` for other events and
/// for NULL.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_result(event: *const cloister_event) -> cloister_result {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    guard_value(CLOISTER_RESULT_OK, || {
        event.map_or(CLOISTER_RESULT_OK, |e| e.result)
    })
}

/// Whether the event carries an encrypted attachment to download with
/// `cloister_client_download_file`.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_has_file(event: *const cloister_event) -> bool {
    // SAFETY: NULL or an event from this library, not yet freed (header contract).
    let event = unsafe { event.as_ref() };
    guard_value(false, || {
        event
            .and_then(|e| e.timeline.as_ref())
            .is_some_and(|t| t.encrypted_file().is_some())
    })
}

/// Free an event returned by `cloister_client_next_event`. NULL is a
/// no-op. Never free events passed to a callback or read from a list.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_free(event: *mut cloister_event) {
    guard_value((), || {
        if !event.is_null() {
            // SAFETY: not NULL, and by the header's contract an event from
            // `cloister_client_next_event` (`Box::into_raw`), freed once.
            drop(unsafe { Box::from_raw(event) });
        }
    })
}

/// A page of room history, in the order paged (newest first).
pub struct cloister_event_list {
    events: Vec<cloister_event>,
    end: Option<CString>,
}

impl cloister_event_list {
    pub(crate) fn new(events: Vec<TimelineEvent>, end: Option<String>) -> *mut Self {
        Box::into_raw(Box::new(cloister_event_list {
            events: events
                .into_iter()
                .map(cloister_event::from_timeline)
                .collect(),
            end: end.as_deref().map(c_string),
        }))
    }
}

/// How many events the list holds; 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_list_len(list: *const cloister_event_list) -> usize {
    // SAFETY: NULL or a list from this library, not yet freed (header contract).
    let list = unsafe { list.as_ref() };
    guard_value(0, || list.map_or(0, |l| l.events.len()))
}

/// The event at `index`, borrowed from the list (do not free it); NULL
/// when out of range.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_list_get(
    list: *const cloister_event_list,
    index: usize,
) -> *const cloister_event {
    // SAFETY: NULL or a list from this library, not yet freed (header contract).
    let list = unsafe { list.as_ref() };
    guard_value(std::ptr::null(), || {
        list.and_then(|l| l.events.get(index))
            .map_or(std::ptr::null(), |e| e as *const cloister_event)
    })
}

/// The token for the next (older) page, borrowed; NULL at the start of the
/// room.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_list_end_token(
    list: *const cloister_event_list,
) -> *const c_char {
    // SAFETY: NULL or a list from this library, not yet freed (header contract).
    let list = unsafe { list.as_ref() };
    guard_value(std::ptr::null(), || {
        list.and_then(|l| l.end.as_ref())
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Free an event list. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cloister_event_list_free(list: *mut cloister_event_list) {
    guard_value((), || {
        if !list.is_null() {
            // SAFETY: not NULL, and by the header's contract a list from
            // this library (`Box::into_raw`), freed only once.
            drop(unsafe { Box::from_raw(list) });
        }
    })
}
