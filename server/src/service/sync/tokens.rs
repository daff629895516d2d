//! Stream tokens. A sync token `s<pos>_<to_device>` says the client has
//! everything up to stream position `pos`, and to-device messages up to
//! `to_device` (which can lag when a sync hit its to-device batch limit).
//! A pagination token `t<gap>` names the gap just before position `gap`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken {
    pub pos: i64,
    pub to_device: i64,
}

impl SyncToken {
    pub fn parse(token: &str) -> Option<SyncToken> {
        let (pos, to_device) = token.strip_prefix('s')?.split_once('_')?;
        let token = SyncToken {
            pos: pos.parse().ok()?,
            to_device: to_device.parse().ok()?,
        };
        (token.pos >= 0 && token.to_device >= 0).then_some(token)
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}_{}", self.pos, self.to_device)
    }
}

pub fn gap(pos: i64) -> String {
    format!("t{pos}")
}

/// Accepts pagination tokens and sync tokens (clients paginate from a
/// sync's `next_batch` too): the gap after everything that sync delivered.
pub fn parse_gap(token: &str) -> Option<i64> {
    if let Some(pos) = token.strip_prefix('t') {
        return pos.parse().ok().filter(|p: &i64| *p >= 0);
    }
    SyncToken::parse(token).map(|t| t.pos + 1)
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
        for bad in ["", "s", "s1", "s1_", "s_1", "sx_1", "s-1_0", "t5", "s1_2_3"] {
            assert_eq!(SyncToken::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_gap("t5"), Some(5));
        assert_eq!(parse_gap("s9_3"), Some(10));
        assert_eq!(parse_gap("t-1"), None);
        assert_eq!(parse_gap("garbage"), None);
    }
}
