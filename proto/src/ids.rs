//! Matrix identifiers (spec appendix "Identifier Grammar"), parsed one way
//! everywhere. Room ids of room version 12 have no server part, so a room
//! id is `!opaque` or `!opaque:server`; user ids and aliases always name a
//! server.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest identifier the spec allows, in bytes.
pub const MAX_ID_LEN: usize = 255;

/// Hostname or IP literal, optionally with a port (appendix "Server Name").
pub fn is_valid_server_name(name: &str) -> bool {
    let (host, port) = match name.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (name, None),
        Some((h, p)) => (h, Some(p)),
        None => (name, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[') {
        return v6.ends_with(']') && v6[..v6.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
    }
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Localparts of users a server creates: the spec's historical-safe set.
pub fn is_valid_localpart(localpart: &str) -> bool {
    !localpart.is_empty()
        && localpart.bytes().all(
            |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'),
        )
}

/// Splits `sigil` + `local` [+ `:` + `server`].
fn split_id(id: &str, sigil: char, require_server: bool) -> Option<(&str, Option<&str>)> {
    let rest = id.strip_prefix(sigil)?;
    if id.len() > MAX_ID_LEN || id.contains('\0') {
        return None;
    }
    match rest.split_once(':') {
        Some((local, server)) if !local.is_empty() && is_valid_server_name(server) => {
            Some((local, Some(server)))
        }
        None if !require_server && !rest.is_empty() => Some((rest, None)),
        _ => None,
    }
}

/// `@localpart:server` → (localpart, server). Any printable localpart is
/// accepted, since ids created elsewhere may be historical.
pub fn parse_user_id(id: &str) -> Option<(&str, &str)> {
    let (local, server) = split_id(id, '@', true)?;
    if local.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return None;
    }
    Some((local, server?))
}

/// `!opaque:server`, or `!opaque` (room version 12).
pub fn is_valid_room_id(id: &str) -> bool {
    split_id(id, '!', false).is_some()
}

/// `#alias:server` → (alias localpart, server).
pub fn parse_room_alias(alias: &str) -> Option<(&str, &str)> {
    let (local, server) = split_id(alias, '#', true)?;
    Some((local, server?))
}

/// `$opaque` (room versions 4 and later).
pub fn is_valid_event_id(id: &str) -> bool {
    id.starts_with('$') && id.len() > 1 && id.len() <= MAX_ID_LEN && !id.contains('\0')
}

/// What kind of identifier failed to parse, for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind}: {value:?}")]
pub struct InvalidId {
    /// What was expected, e.g. `user id`.
    pub kind: &'static str,
    /// What was given.
    pub value: String,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id, if `value` is a valid one.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                let check: fn(&str) -> bool = $check;
                if check(&value) {
                    Ok(Self(value))
                } else {
                    Err(InvalidId { kind: $kind, value })
                }
            }

            /// The id as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// `@localpart:server`.
    UserId, "user id", |s| parse_user_id(s).is_some()
);
id_type!(
    /// `!opaque:server`, or `!opaque` from room version 12 on.
    RoomId, "room id", is_valid_room_id
);
id_type!(
    /// `#alias:server`.
    RoomAliasId, "room alias", |s| parse_room_alias(s).is_some()
);
id_type!(
    /// `$opaque`.
    EventId, "event id", is_valid_event_id
);

impl UserId {
    /// The part between `@` and `:`.
    pub fn localpart(&self) -> &str {
        parse_user_id(&self.0).map_or("", |(l, _)| l)
    }

    /// The server part, after the first `:`.
    pub fn server_name(&self) -> &str {
        parse_user_id(&self.0).map_or("", |(_, s)| s)
    }
}

impl RoomId {
    /// The server part, absent from room version 12 on.
    pub fn server_name(&self) -> Option<&str> {
        split_id(&self.0, '!', false).and_then(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        for ok in [
            "localhost",
            "example.org",
            "example.org:8448",
            "127.0.0.1:80",
            "[::1]:8008",
            "[::1]",
        ] {
            assert!(is_valid_server_name(ok), "{ok}");
        }
        for bad in [
            "",
            "exa mple",
            "host:",
            "host:123456",
            "host:abc",
            "[::1",
            "a/b",
        ] {
            assert!(!is_valid_server_name(bad), "{bad}");
        }
    }

    #[test]
    fn user_ids() {
        assert_eq!(
            parse_user_id("@alice:example.org"),
            Some(("alice", "example.org"))
        );
        assert_eq!(parse_user_id("@a:[::1]:8008"), Some(("a", "[::1]:8008")));
        for bad in [
            "alice:example.org",
            "@:example.org",
            "@alice",
            "@al ice:example.org",
        ] {
            assert_eq!(parse_user_id(bad), None, "{bad}");
        }
        assert!(is_valid_localpart("alice.b-c_d=1/2+3"));
        assert!(!is_valid_localpart("Alice"));
        assert!(!is_valid_localpart(""));
        let id = UserId::parse("@bob:example.org").unwrap();
        assert_eq!((id.localpart(), id.server_name()), ("bob", "example.org"));
    }

    #[test]
    fn room_ids_with_and_without_server() {
        assert!(is_valid_room_id("!abc:example.org"));
        assert!(is_valid_room_id("!abcdef")); // room version 12
        for bad in ["abc:example.org", "!", "!:x", "!a:", "#a:b", ""] {
            assert!(!is_valid_room_id(bad), "{bad}");
        }
        assert_eq!(RoomId::parse("!v12room").unwrap().server_name(), None);
        assert_eq!(
            RoomId::parse("!r:example.org").unwrap().server_name(),
            Some("example.org")
        );
    }

    #[test]
    fn serde_validates() {
        let ok: RoomId = serde_json::from_str("\"!abc\"").unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"!abc\"");
        let err = serde_json::from_str::<UserId>("\"bob\"").unwrap_err();
        assert!(err.to_string().contains("not a valid user id"), "{err}");
        assert!(EventId::parse("$x").is_ok() && EventId::parse("x").is_err());
        assert!(RoomAliasId::parse("#a:b").is_ok() && RoomAliasId::parse("#a").is_err());
    }
}
