//! The `[retention]` section: how long each kind of data is kept. Durations
//! are written `"90d"`, `"12h"`, `"30m"`, `"3600s"` or `"none"` (kept until
//! someone deletes it).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How long something is kept: a duration, or `none` for no time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifetime {
    #[default]
    Forever,
    Millis(i64),
}

impl Lifetime {
    pub const fn hours(h: i64) -> Lifetime {
        Lifetime::Millis(h * 3_600_000)
    }

    pub const fn days(d: i64) -> Lifetime {
        Lifetime::Millis(d * 86_400_000)
    }

    pub fn as_millis(self) -> Option<i64> {
        match self {
            Lifetime::Forever => None,
            Lifetime::Millis(ms) => Some(ms),
        }
    }

    /// Timestamps below the returned one have outlived this lifetime at
    /// `now`; `i64::MIN` when nothing expires.
    pub fn cutoff(self, now: i64) -> i64 {
        match self {
            Lifetime::Forever => i64::MIN,
            Lifetime::Millis(ms) => now.saturating_sub(ms),
        }
    }
}

impl std::str::FromStr for Lifetime {
    type Err = String;

    fn from_str(s: &str) -> Result<Lifetime, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(Lifetime::Forever);
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like \"30d\", \"12h\" or \"none\""))?;
        let unit_ms: i64 = match unit {
            "" | "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(format!("{s:?}: the unit must be s, m, h, d or w")),
        };
        n.checked_mul(unit_ms)
            .map(Lifetime::Millis)
            .ok_or_else(|| format!("{s:?} is too long"))
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = match self {
            Lifetime::Forever => return f.write_str("none"),
            Lifetime::Millis(ms) => *ms,
        };
        for (unit, size) in [
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
        ] {
            if ms != 0 && ms % size == 0 {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Lifetime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lifetime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lifetime, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) if s >= 0 => Ok(Lifetime::Millis(s.saturating_mul(1000))),
            Raw::Seconds(_) => Err(serde::de::Error::custom("a lifetime cannot be negative")),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Messages in rooms without an `m.room.retention` policy of their own.
    pub default_max_lifetime: Lifetime,
    /// Bounds on a room's `max_lifetime`: a room cannot keep messages for a
    /// shorter time than `allowed_min_lifetime`, nor longer than
    /// `allowed_max_lifetime`. Room policies outside are clamped.
    pub allowed_min_lifetime: Lifetime,
    pub allowed_max_lifetime: Lifetime,
    /// Uploaded files, counted from upload. Files attached to messages also
    /// go when the last message carrying them is purged.
    pub media_lifetime: Lifetime,
    /// Undelivered to-device messages (room keys, verification requests).
    pub to_device_lifetime: Lifetime,
    /// Server-side key backups, counted from each key's last update.
    pub backup_lifetime: Lifetime,
    /// Devices not seen for this long are signed out and deleted.
    pub inactive_device_lifetime: Lifetime,
    /// How often the purge job runs.
    pub purge_interval: Lifetime,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            default_max_lifetime: Lifetime::Forever,
            allowed_min_lifetime: Lifetime::hours(1),
            allowed_max_lifetime: Lifetime::Forever,
            media_lifetime: Lifetime::Forever,
            to_device_lifetime: Lifetime::days(30),
            backup_lifetime: Lifetime::Forever,
            inactive_device_lifetime: Lifetime::Forever,
            purge_interval: Lifetime::hours(1),
        }
    }
}

impl Retention {
    /// The lifetime of messages in a room whose policy asks for
    /// `requested` (`None`: no policy, or a policy without `max_lifetime`),
    /// within the allowed bounds.
    pub fn room_lifetime(&self, requested: Option<i64>) -> Lifetime {
        let wanted = match requested {
            Some(ms) => Lifetime::Millis(ms.max(0)),
            None => self.default_max_lifetime,
        };
        let at_least = |l: Lifetime, min: Lifetime| match (l, min) {
            (Lifetime::Millis(a), Lifetime::Millis(b)) => Lifetime::Millis(a.max(b)),
            (l, _) => l,
        };
        let at_most = |l: Lifetime, max: Lifetime| match (l, max) {
            (_, Lifetime::Forever) => l,
            (Lifetime::Forever, max) => max,
            (Lifetime::Millis(a), Lifetime::Millis(b)) => Lifetime::Millis(a.min(b)),
        };
        at_least(
            at_most(wanted, self.allowed_max_lifetime),
            self.allowed_min_lifetime,
        )
    }

    pub fn validate(&self) -> Result<(), String> {
        if let (Some(min), Some(max)) = (
            self.allowed_min_lifetime.as_millis(),
            self.allowed_max_lifetime.as_millis(),
        ) {
            if min > max {
                return Err("retention.allowed_min_lifetime exceeds allowed_max_lifetime".into());
            }
        }
        match self.purge_interval.as_millis() {
            Some(ms) if ms >= 1000 => Ok(()),
            _ => Err("retention.purge_interval must be at least 1s".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_and_print() {
        for (text, ms) in [
            ("90d", 90 * 86_400_000),
            ("12h", 43_200_000),
            ("30m", 1_800_000),
            ("45s", 45_000),
            ("2w", 14 * 86_400_000),
        ] {
            let l: Lifetime = text.parse().unwrap();
            assert_eq!(l, Lifetime::Millis(ms));
            assert_eq!(l.to_string(), text);
        }
        assert_eq!("none".parse::<Lifetime>().unwrap(), Lifetime::Forever);
        assert!("5y".parse::<Lifetime>().is_err());
        assert!("-5d".parse::<Lifetime>().is_err());
        assert!("99999999999999999d".parse::<Lifetime>().is_err());
    }

    #[test]
    fn room_lifetimes_are_clamped_to_the_allowed_range() {
        let r = Retention {
            default_max_lifetime: Lifetime::days(30),
            allowed_min_lifetime: Lifetime::hours(1),
            allowed_max_lifetime: Lifetime::days(365),
            ..Retention::default()
        };
        assert_eq!(r.room_lifetime(None), Lifetime::days(30));
        assert_eq!(r.room_lifetime(Some(60_000)), Lifetime::hours(1));
        assert_eq!(r.room_lifetime(Some(2 * 3_600_000)), Lifetime::hours(2));
        assert_eq!(r.room_lifetime(Some(i64::MAX)), Lifetime::days(365));
        let unbounded = Retention::default();
        assert_eq!(unbounded.room_lifetime(None), Lifetime::Forever);
    }

    #[test]
    fn cutoff_is_now_minus_lifetime() {
        assert_eq!(
            Lifetime::hours(1).cutoff(10_000_000),
            10_000_000 - 3_600_000
        );
        assert_eq!(Lifetime::Forever.cutoff(5), i64::MIN);
    }
}
