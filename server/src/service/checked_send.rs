//! Messages sent with the room read before the writer, not in it (SQLite).
//!
//! The writer runs sends one after another, and on SQLite each of its
//! statements is a hand-off to another thread that every queued send waits
//! for; that chain, not CPU, bounded the messages a second (docs/
//! performance.md, "Messages checked, not read, in the writer"). A message
//! changes nothing its authorization reads, so its reads happen on a reader
//! connection, in parallel with other sends, and the writer stores it in
//! one statement guarded by the room's state serial
//! (`store::checked_append`). The outcome is the one of the ordinary path:
//! a refusal is decided on committed state, and a send whose room changed
//! meanwhile goes the ordinary way.

use crate::error::ApiResult;
use crate::service::events::{announce, audience, authorize, AuthState};
use crate::service::Context;
use crate::store::checked_append::{self, Expected};
use crate::store::events::{visibility_for, NewEvent};
use crate::store::{room_snapshot, txn_ids, Backend, WriteError};

/// The message's event id, stored and announced, or its earlier one for a
/// retried `txn_id`; `None` when the caller must take the ordinary path:
/// not SQLite, not a plain message, no such room (the ordinary path says
/// so), or the room changed, or a retry raced this send.
pub(super) async fn try_send(
    state: &Context,
    event: &NewEvent<'_>,
    device_id: &str,
    txn_id: &str,
) -> ApiResult<Option<String>> {
    let plain_message = event.state_key.is_none()
        && event.redacts.is_none()
        && event.event_type != "m.room.redaction";
    if state.store.backend() != Backend::Sqlite || !plain_message {
        return Ok(None);
    }
    let mut c = state.store.read().await?;
    if let Some(existing) =
        txn_ids::result(&mut c, event.sender, device_id, "event", txn_id).await?
    {
        return Ok(Some(existing));
    }
    let Some(room) = room_snapshot::read(&mut c, event.room_id, event.sender).await? else {
        return Ok(None);
    };
    let auth = AuthState::new(room.power_levels, room.join_rules);
    authorize(
        state,
        &mut c,
        event,
        &auth,
        room.sender_membership.as_deref(),
    )
    .await?;
    // Before the writer: a reader held while queued there would be one
    // fewer for the long-polls.
    drop(c);
    let visibility = visibility_for(event, None, room.history_visibility.as_ref());
    let expected = Expected {
        state_serial: room.state_serial,
        device_id,
        txn_id,
    };
    let event_id = crate::ids::new_event_id();
    let now = state.now_ms();
    let stored =
        checked_append::append_message(&state.store, event, event_id, now, visibility, &expected)
            .await;
    let stored = match stored {
        Ok(Some(stored)) => stored,
        // The room moved, or a retry of this transaction id is in the
        // writer's open batch: the ordinary path reads both there.
        Ok(None) => return Ok(None),
        Err(WriteError::Db(err)) if crate::store::is_unique_violation(&err) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    announce(state, &stored, &audience(room.members, &stored));
    Ok(Some(stored.event_id))
}
