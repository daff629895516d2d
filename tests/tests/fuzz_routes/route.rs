//! One route: its shape and the body field names shared by several routes.

pub(crate) const R: &str = "/_matrix/client/v3";

/// One route: its method, its path template with `{param}` placeholders,
/// the JSON fields its body knows and the query parameters it reads.
pub(crate) struct Route {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) fields: &'static [&'static str],
    pub(crate) query: &'static [&'static str],
}

pub(crate) const fn route(
    method: &'static str,
    path: &'static str,
    fields: &'static [&'static str],
    query: &'static [&'static str],
) -> Route {
    Route {
        method,
        path,
        fields,
        query,
    }
}

pub(crate) const NONE: &[&str] = &[];
pub(crate) const CREATE_ROOM: &[&str] = &[
    "visibility",
    "room_alias_name",
    "name",
    "topic",
    "invite",
    "invite_3pid",
    "room_version",
    "creation_content",
    "initial_state",
    "preset",
    "is_direct",
    "power_level_content_override",
];
pub(crate) const MEGOLM: &[&str] = &[
    "algorithm",
    "ciphertext",
    "session_id",
    "sender_key",
    "device_id",
    "body",
    "msgtype",
    "membership",
    "users",
    "topic",
    "name",
    "join_rule",
    "history_visibility",
];
pub(crate) const TARGET: &[&str] = &["user_id", "reason"];
pub(crate) const BACKUP_KEY: &[&str] = &[
    "first_message_index",
    "forwarded_count",
    "is_verified",
    "session_data",
];
pub(crate) const VERSION: &[&str] = &["algorithm", "auth_data", "version"];
pub(crate) const PUSH_RULE: &[&str] = &["actions", "conditions", "pattern", "enabled"];
