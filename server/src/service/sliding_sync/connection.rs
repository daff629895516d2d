//! A connection's stored state: the position a request names, and the new
//! position a response hands out. Kept in the database, so it survives a
//! restart and is shared by every node on one PostgreSQL.

use std::collections::HashMap;

use cloister_proto::sliding_sync::Response;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::Context;
use crate::store::sliding_sync::{self as store, ConnKey, NewPosition, Position, SentRoom};

/// The position a request continues from.
pub(super) struct Base {
    pub pos_id: i64,
    pub position: Position,
    pub rooms: HashMap<String, SentRoom>,
}

/// What one build of a response found.
pub(super) struct Built {
    pub response: Response,
    pub has_news: bool,
    pub position: Position,
    /// Rooms whose held state moved: sent now, or found unchanged up to the
    /// new stream position.
    pub sent: Vec<(String, SentRoom)>,
}

fn unknown_pos() -> ApiError {
    ApiError::new(
        ErrCode::UnknownPos,
        "Unknown or expired pos: start the connection again without one",
    )
}

/// None: no `pos`, a fresh start of the connection.
pub(super) async fn load(
    state: &Context,
    key: ConnKey<'_>,
    pos: Option<&str>,
) -> ApiResult<Option<Base>> {
    let Some(pos) = pos else {
        return Ok(None);
    };
    let pos_id: i64 = pos.parse().map_err(|_| unknown_pos())?;
    let mut c = state.store.read().await?;
    let position = store::position(&mut c, key, pos_id)
        .await?
        .ok_or_else(unknown_pos)?;
    let rooms = store::rooms(&mut c, key, pos_id).await?;
    Ok(Some(Base {
        pos_id,
        position,
        rooms,
    }))
}

/// Records what the response carries and names it with a new `pos`; a
/// response with nothing new keeps the client's `pos`, and writes nothing.
pub(super) async fn commit(
    state: &Context,
    key: ConnKey<'_>,
    base: Option<&Base>,
    built: Built,
) -> ApiResult<Response> {
    let mut response = built.response;
    if let (Some(base), false) = (base, built.has_news) {
        response.pos = base.pos_id.to_string();
        return Ok(response);
    }
    // Random rather than counted: a connection started over must not
    // accept a `pos` of its earlier life.
    let pos_id = loop {
        let id = rand::random::<i64>() & i64::MAX;
        if id != 0 && base.is_none_or(|b| b.pos_id != id) {
            break id;
        }
    };
    let position = Position {
        seq: base.map_or(1, |b| b.position.seq + 1),
        ..built.position
    };
    let mut tx = state.store.write().await?;
    if base.is_none() {
        store::reset(&mut tx, key).await?;
    }
    store::save(
        &mut tx,
        key,
        base.map(|b| b.pos_id),
        &NewPosition {
            pos_id,
            position: &position,
            now: state.now_ms(),
            sent: &built.sent,
        },
    )
    .await?;
    tx.commit().await?;
    response.pos = pos_id.to_string();
    Ok(response)
}
