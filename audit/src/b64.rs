//! Serde helpers: hashes as canonical standard base64 (with padding).

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

use crate::merkle::Hash;

pub(crate) fn decode_hash(s: &str) -> Option<Hash> {
    STANDARD.decode(s).ok()?.try_into().ok()
}

/// `Vec<Hash>` as a JSON array of base64 strings.
pub(crate) mod hashes {
    use super::*;
    use serde::ser::SerializeSeq;

    pub(crate) fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for h in v {
            seq.serialize_element(&STANDARD.encode(h))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| decode_hash(s).ok_or_else(|| D::Error::custom("not base64 of 32 bytes")))
            .collect()
    }
}
