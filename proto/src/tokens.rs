//! Stream tokens, one grammar for every endpoint that takes them.
//!
//! A sync token `s<pos>_<to_device>` says the client has everything up to
//! stream position `pos`, and to-device messages up to `to_device` (which
//! lags when a sync hit its to-device batch limit). A pagination token
//! `t<gap>` names the gap just before position `gap`. Positions are never
//! negative.

use std::fmt;

/// A `/sync` `next_batch` token, `s<pos>_<to_device>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken {
    /// Everything up to this stream position was delivered.
    pub pos: i64,
    /// To-device messages up to this position were delivered.
    pub to_device: i64,
}

impl SyncToken {
    /// The token, if `token` is one.
    pub fn parse(token: &str) -> Option<SyncToken> {
        let (pos, to_device) = token.strip_prefix('s')?.split_once('_')?;
        let token = SyncToken {
            pos: non_negative(pos)?,
            to_device: non_negative(to_device)?,
        };
        Some(token)
    }
}

fn non_negative(digits: &str) -> Option<i64> {
    // `parse` would take a leading `+`; a token is digits only.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl fmt::Display for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}_{}", self.pos, self.to_device)
    }
}

/// The pagination token for the gap before position `pos`.
pub fn gap(pos: i64) -> String {
    format!("t{pos}")
}

/// Accepts pagination tokens and sync tokens (clients paginate from a
/// sync's `next_batch` too): the gap after everything that sync delivered.
pub fn parse_gap(token: &str) -> Option<i64> {
    match token.strip_prefix('t') {
        Some(pos) => non_negative(pos),
        None => SyncToken::parse(token).map(|t| t.pos + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let t = SyncToken {
            pos: 42,
            to_device: 7,
        };
        assert_eq!(SyncToken::parse(&t.to_string()), Some(t));
        for bad in [
            "",
            "s",
            "s1",
            "s1_",
            "s_1",
            "sx_1",
            "s-1_0",
            "t5",
            "s1_2_3",
            "s+1_0",
            "s1_-2",
            "42_7",
            "s99999999999999999999_0",
        ] {
            assert_eq!(SyncToken::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_gap("t5"), Some(5));
        assert_eq!(parse_gap("s9_3"), Some(10));
        for bad in ["t-1", "t+1", "t", "garbage"] {
            assert_eq!(parse_gap(bad), None, "{bad}");
        }
    }
}
