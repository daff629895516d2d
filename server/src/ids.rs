//! Matrix identifiers: parsing, validation and generation.

use rand::distributions::Alphanumeric;
use rand::Rng;

/// A random string of `len` ASCII letters and digits from the OS RNG.
pub fn random_string(len: usize) -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

pub fn new_room_id(server_name: &str) -> String {
    format!("!{}:{server_name}", random_string(18))
}

pub fn new_event_id() -> String {
    // Room versions 4+ use `$` + 43 url-safe base64 characters; without
    // federation there is no reference hash to derive it from, so it is random.
    use base64::Engine;
    let bytes: [u8; 32] = rand::rngs::OsRng.gen();
    format!(
        "${}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn new_device_id() -> String {
    random_string(10).to_uppercase()
}

/// Hostname or IP literal, optionally with a port (spec appendix "Server Name").
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

/// The localpart of the server's own system user (see `AppState::system_user_id`).
pub const SYSTEM_LOCALPART: &str = "cloister-system";

/// Localparts nobody may register: the system user, and the `erased-…`
/// pseudonyms that replace erased users in room state.
pub fn is_reserved_localpart(localpart: &str) -> bool {
    localpart == SYSTEM_LOCALPART || localpart.starts_with("erased-")
}

/// Localparts of users we create: the spec's historical-safe set.
pub fn is_valid_localpart(localpart: &str) -> bool {
    !localpart.is_empty()
        && localpart.bytes().all(
            |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'),
        )
}

/// Splits `sigil` + `local` + `:` + `server`; room ids in room version 12
/// have no server part, so `require_server` is false for them.
fn split_id(id: &str, sigil: char, require_server: bool) -> Option<(&str, Option<&str>)> {
    let rest = id.strip_prefix(sigil)?;
    if id.len() > 255 || id.contains('\0') {
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

/// `@localpart:server` → (localpart, server). Accepts any printable localpart,
/// since ids created elsewhere may be historical.
pub fn parse_user_id(id: &str) -> Option<(&str, &str)> {
    let (local, server) = split_id(id, '@', true)?;
    if local.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return None;
    }
    Some((local, server?))
}

pub fn is_valid_room_id(id: &str) -> bool {
    split_id(id, '!', false).is_some()
}

pub fn parse_room_alias(alias: &str) -> Option<(&str, &str)> {
    let (local, server) = split_id(alias, '#', true)?;
    Some((local, server?))
}

pub fn is_valid_event_id(id: &str) -> bool {
    id.starts_with('$') && id.len() > 1 && id.len() <= 255 && !id.contains('\0')
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
        assert_eq!(parse_user_id("alice:example.org"), None);
        assert_eq!(parse_user_id("@:example.org"), None);
        assert_eq!(parse_user_id("@alice"), None);
        assert_eq!(parse_user_id("@al ice:example.org"), None);
        assert!(is_valid_localpart("alice.b-c_d=1/2+3"));
        assert!(!is_valid_localpart("Alice"));
        assert!(!is_valid_localpart(""));
    }

    #[test]
    fn room_ids_with_and_without_server() {
        assert!(is_valid_room_id("!abc:example.org"));
        assert!(is_valid_room_id("!abcdef")); // room version 12
        assert!(!is_valid_room_id("abc:example.org"));
        assert!(!is_valid_room_id("!"));
        assert!(is_valid_room_id(&new_room_id("example.org")));
        assert!(is_valid_event_id(&new_event_id()));
        assert_eq!(new_event_id().len(), 44);
    }
}
