//! Generating identifiers, and the localparts this server reserves. Parsing
//! and validation are `cloister_proto::ids`, shared with the SDK.

pub use cloister_proto::ids::{
    is_valid_event_id, is_valid_localpart, is_valid_room_id, is_valid_server_name,
    parse_room_alias, parse_user_id,
};

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

/// The localpart of the server's own system user (see `Context::system_user_id`).
pub const SYSTEM_LOCALPART: &str = "cloister-system";

/// Localparts nobody may register: the system user, and the `erased-…`
/// pseudonyms that replace erased users in room state.
pub fn is_reserved_localpart(localpart: &str) -> bool {
    localpart == SYSTEM_LOCALPART || localpart.starts_with("erased-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse() {
        assert!(is_valid_room_id(&new_room_id("example.org")));
        assert!(is_valid_event_id(&new_event_id()));
        assert_eq!(new_event_id().len(), 44);
        assert!(is_valid_localpart(&new_device_id().to_lowercase()));
        assert!(is_reserved_localpart(SYSTEM_LOCALPART));
        assert!(is_reserved_localpart("erased-1234"));
        assert!(!is_reserved_localpart("alice"));
    }
}
