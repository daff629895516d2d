//! Simplified sliding sync (MSC4186,
//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`): the
//! request and response bodies.
//!
//! Requests are read leniently: unknown fields are ignored, as clients send
//! fields of later revisions of the proposal. Empty sections of a response
//! are left out where the proposal allows it.
//!
//! Fields carry the proposal's names and meanings; only where this server
//! reads or fills one in its own way is it documented here.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::ClientEvent;
use crate::sync::{DeviceLists, ToDeviceEvents};

/// The request body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct Request {
    /// Names one of several connections of a device (one per process of a
    /// client: the app and its notification extension, say).
    #[serde(default)]
    pub conn_id: Option<String>,
    /// Echoed in the response.
    #[serde(default)]
    pub txn_id: Option<String>,
    #[serde(default)]
    pub lists: BTreeMap<String, List>,
    #[serde(default)]
    pub room_subscriptions: BTreeMap<String, RoomConfig>,
    #[serde(default)]
    pub extensions: ExtensionsRequest,
}

/// A window onto the user's rooms sorted by recency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct List {
    /// Inclusive `[start, end]` index ranges of the sorted rooms.
    #[serde(default)]
    pub ranges: Vec<(u64, u64)>,
    #[serde(default)]
    pub required_state: Vec<(String, String)>,
    #[serde(default)]
    pub timeline_limit: Option<u64>,
    #[serde(default)]
    pub filters: Option<ListFilters>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct ListFilters {
    #[serde(default)]
    pub is_invite: Option<bool>,
    #[serde(default)]
    pub is_dm: Option<bool>,
}

/// What is sent of one room: which state events (`"*"` wildcards, `$LAZY`
/// for the timeline's senders, `$ME` for the user) and how many timeline
/// events at most.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct RoomConfig {
    #[serde(default)]
    pub required_state: Vec<(String, String)>,
    #[serde(default)]
    pub timeline_limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct ExtensionsRequest {
    #[serde(default)]
    pub e2ee: Option<Toggle>,
    #[serde(default)]
    pub to_device: Option<ToDeviceRequest>,
    #[serde(default)]
    pub account_data: Option<Toggle>,
    #[serde(default)]
    pub receipts: Option<Toggle>,
    #[serde(default)]
    pub typing: Option<Toggle>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct Toggle {
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl Toggle {
    pub fn on(toggle: &Option<Toggle>) -> bool {
        toggle.as_ref().and_then(|t| t.enabled).unwrap_or(false)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
pub struct ToDeviceRequest {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The `next_batch` of the previous response: what it acknowledges.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub limit: Option<u64>,
}

/// The response body.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Response {
    pub pos: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_id: Option<String>,
    pub lists: BTreeMap<String, ListResult>,
    pub rooms: BTreeMap<String, RoomResult>,
    pub extensions: ExtensionsResponse,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListResult {
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Hero {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// One room: all of it when `initial`, else what changed since the
/// connection last sent it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoomResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heroes: Option<Vec<Hero>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub initial: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_dm: bool,
    /// Stripped state for an invite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_state: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_state: Vec<ClientEvent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<ClientEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_batch: Option<String>,
    pub limited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_live: Option<u64>,
    /// The client asked for a longer timeline than it was sent: this one
    /// holds the last `timeline_limit` events, some of which it has.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unstable_expanded_timeline: bool,
    pub bump_stamp: i64,
    pub notification_count: u64,
    pub highlight_count: u64,
    pub joined_count: u64,
    pub invited_count: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExtensionsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2ee: Option<E2ee>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_device: Option<ToDeviceResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_data: Option<AccountData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipts: Option<EphemeralRooms>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typing: Option<EphemeralRooms>,
}

/// Always complete when the extension is enabled: clients read missing
/// counts as zero and missing fallback types as "unsupported".
#[derive(Debug, Clone, Default, Serialize)]
pub struct E2ee {
    pub device_lists: DeviceLists,
    pub device_one_time_keys_count: BTreeMap<String, u64>,
    pub device_unused_fallback_key_types: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ToDeviceResponse {
    pub next_batch: String,
    #[serde(flatten)]
    pub events: ToDeviceEvents,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountData {
    pub global: Vec<Value>,
    pub rooms: BTreeMap<String, Vec<Value>>,
}

/// `{"rooms": {room_id: {"type": …, "content": …}}}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EphemeralRooms {
    pub rooms: BTreeMap<String, Value>,
}
