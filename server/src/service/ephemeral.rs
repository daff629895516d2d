//! Typing notifications, read receipts and the fully-read marker.
//!
//! Markers only move forward: a receipt or marker for an event older than
//! the one it already points at is accepted and ignored, so a client that
//! catches up out of order cannot bring back unread counts.

use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::store::ephemeral::{self, PRIVATE_READ};
use crate::store::{account_data, rooms, unread, Conn, WriteTx};

const READ: &str = "m.read";
const FULLY_READ: &str = "m.fully_read";
const DEFAULT_TYPING_MS: i64 = 30_000;
const MAX_TYPING_MS: i64 = 120_000;

/// The markers a user keeps in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `m.read`: a public receipt.
    Read,
    /// `m.read.private`: seen only by its owner.
    ReadPrivate,
    /// `m.fully_read`: kept in room account data, never threaded.
    FullyRead,
}

impl Marker {
    pub fn parse(receipt_type: &str) -> ApiResult<Marker> {
        match receipt_type {
            READ => Ok(Marker::Read),
            PRIVATE_READ => Ok(Marker::ReadPrivate),
            FULLY_READ => Ok(Marker::FullyRead),
            _ => Err(ApiError::invalid_param(
                "receipt type must be m.read, m.read.private or m.fully_read",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Marker::Read => READ,
            Marker::ReadPrivate => PRIVATE_READ,
            Marker::FullyRead => FULLY_READ,
        }
    }
}

async fn require_joined(c: &mut Conn, room_id: &str, user_id: &str) -> ApiResult<()> {
    match rooms::membership(c, room_id, user_id).await? {
        Some(m) if m.membership == "join" => Ok(()),
        _ => Err(ApiError::forbidden("You are not joined to this room")),
    }
}

/// Sets `target`'s typing state in a room, for `timeout_ms` (bounded) when
/// `typing`. Users set only their own.
pub async fn set_typing(
    ctx: &Context,
    user_id: &str,
    room_id: &str,
    target: &str,
    typing: bool,
    timeout_ms: Option<i64>,
) -> ApiResult<()> {
    if target != user_id {
        return Err(ApiError::forbidden(
            "You may only set your own typing state",
        ));
    }
    // A stop is an already-expired row, so /sync still sees the change.
    let expires_ts = if typing {
        let timeout = timeout_ms
            .unwrap_or(DEFAULT_TYPING_MS)
            .clamp(0, MAX_TYPING_MS);
        ctx.now_ms() + timeout
    } else {
        0
    };
    let mut tx = ctx.store.write().await?;
    require_joined(tx.conn(), room_id, user_id).await?;
    let pos = tx.next_pos().await?;
    ephemeral::set_typing(&mut tx, room_id, user_id, expires_ts, pos, ctx.now_ms()).await?;
    let members = rooms::joined_members(tx.conn(), room_id).await?;
    tx.commit().await?;
    ctx.notifier.notify(members.iter().map(String::as_str));
    Ok(())
}

/// Validates `thread_id`: "main" or an event id, and never on the
/// fully-read marker, which is not threaded. Unthreaded is stored as "".
fn thread_of(marker: Marker, thread_id: Option<String>) -> ApiResult<String> {
    match thread_id {
        None => Ok(String::new()),
        Some(_) if marker == Marker::FullyRead => {
            Err(ApiError::invalid_param("m.fully_read cannot be threaded"))
        }
        Some(t) if t == "main" || crate::ids::is_valid_event_id(&t) => Ok(t),
        Some(_) => Err(ApiError::invalid_param(
            "thread_id must be \"main\" or an event id",
        )),
    }
}

fn check_event_id(event_id: &str) -> ApiResult<()> {
    if !crate::ids::is_valid_event_id(event_id) {
        return Err(ApiError::invalid_param("not a valid event id"));
    }
    Ok(())
}

/// Moves one marker of `user_id` to `event_id` inside `tx`. Returns the
/// users to wake: nobody when the marker did not move, only the owner for
/// private markers, every joined member for public receipts.
async fn set_marker(
    tx: &mut WriteTx,
    now: i64,
    room_id: &str,
    user_id: &str,
    marker: Marker,
    thread_id: &str,
    event_id: &str,
) -> ApiResult<Vec<String>> {
    let event_pos = match ephemeral::event_room_and_pos(tx.conn(), event_id).await? {
        Some((room, pos)) if room == room_id => pos,
        _ => return Err(ApiError::not_found("Event not found in this room")),
    };
    if marker == Marker::FullyRead {
        let current = account_data::get(tx.conn(), user_id, room_id, FULLY_READ).await?;
        let current_pos = match current.as_ref().and_then(|c| c["event_id"].as_str()) {
            Some(id) => ephemeral::event_room_and_pos(tx.conn(), id)
                .await?
                .map(|(_, p)| p),
            None => None,
        };
        if current_pos.is_some_and(|p| p >= event_pos) {
            return Ok(vec![]);
        }
        let pos = tx.next_pos().await?;
        let content = json!({ "event_id": event_id });
        account_data::put(tx, user_id, room_id, FULLY_READ, &content, pos).await?;
        return Ok(vec![user_id.to_owned()]);
    }
    let kind = marker.as_str();
    let current =
        ephemeral::receipt_event_pos(tx.conn(), room_id, user_id, kind, thread_id).await?;
    if current.is_some_and(|p| p >= event_pos) {
        return Ok(vec![]);
    }
    let pos = tx.next_pos().await?;
    ephemeral::put_receipt(tx, room_id, user_id, kind, thread_id, event_id, now, pos).await?;
    unread::recount(tx, user_id, room_id).await?;
    if marker == Marker::ReadPrivate {
        Ok(vec![user_id.to_owned()])
    } else {
        Ok(rooms::joined_members(tx.conn(), room_id).await?)
    }
}

/// Moves one marker, in a thread (`"main"` or a thread root's event id)
/// or unthreaded.
pub async fn receipt(
    ctx: &Context,
    user_id: &str,
    room_id: &str,
    marker: Marker,
    thread_id: Option<String>,
    event_id: &str,
) -> ApiResult<()> {
    let thread_id = thread_of(marker, thread_id)?;
    check_event_id(event_id)?;
    let mut tx = ctx.store.write().await?;
    require_joined(tx.conn(), room_id, user_id).await?;
    let wake = set_marker(
        &mut tx,
        ctx.now_ms(),
        room_id,
        user_id,
        marker,
        &thread_id,
        event_id,
    )
    .await?;
    tx.commit().await?;
    ctx.notifier.notify(wake.iter().map(String::as_str));
    Ok(())
}

/// Moves several unthreaded markers in one transaction.
pub async fn read_markers(
    ctx: &Context,
    user_id: &str,
    room_id: &str,
    markers: &[(Marker, String)],
) -> ApiResult<()> {
    for (_, event_id) in markers {
        check_event_id(event_id)?;
    }
    let now = ctx.now_ms();
    let mut tx = ctx.store.write().await?;
    require_joined(tx.conn(), room_id, user_id).await?;
    let mut wake = Vec::new();
    for (marker, event_id) in markers {
        wake.extend(set_marker(&mut tx, now, room_id, user_id, *marker, "", event_id).await?);
    }
    tx.commit().await?;
    wake.sort();
    wake.dedup();
    ctx.notifier.notify(wake.iter().map(String::as_str));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids() {
        use Marker::*;
        assert_eq!(thread_of(Read, None).unwrap(), "");
        assert_eq!(thread_of(Read, Some("main".into())).unwrap(), "main");
        assert_eq!(thread_of(ReadPrivate, Some("$ev".into())).unwrap(), "$ev");
        assert!(thread_of(Read, Some("other".into())).is_err());
        assert!(thread_of(FullyRead, Some("main".into())).is_err());
        assert_eq!(thread_of(FullyRead, None).unwrap(), "");
    }

    #[test]
    fn marker_names() {
        for name in ["m.read", "m.read.private", "m.fully_read"] {
            assert_eq!(Marker::parse(name).unwrap().as_str(), name);
        }
        assert!(Marker::parse("m.unread").is_err());
    }
}
