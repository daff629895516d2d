//! A connection's stored state: the state and stream position a request's
//! `pos` names, and the `pos` a response hands out. Kept in the database,
//! so it survives a restart and is shared by every node on one PostgreSQL.
//!
//! A `pos` is `<state>_<stream position>`. A new state is written only when
//! what the client holds changes other than by live rooms moving up to the
//! new stream position: a room sent for the first time, with another
//! config, or left behind (not in view while it had events). Everything
//! else, the steady flow of messages, hands out the same state with the new
//! stream position and costs no write, so sliding sync does not compete
//! with sends for the database's single writer.

use std::collections::{BTreeMap, HashMap, HashSet};

use cloister_proto::sliding_sync::Response;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::Context;
use crate::store::sliding_sync::{self as store, ConnKey, ConnState, HeldRoom, NewState};

/// `used_ts` is refreshed at most this often; the idle purge counts months.
const TOUCH_EVERY_MS: i64 = 24 * 3600 * 1000;

/// A room as the client holds it: sent up to `sent_pos`, with `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SentRoom {
    pub sent_pos: i64,
    pub config: String,
}

/// The position a request continues from.
pub(super) struct Base {
    pub state: ConnState,
    /// The stream position the `pos` names.
    pub stream_pos: i64,
    /// The connection's other state, if it keeps one.
    pub other: Option<ConnState>,
    /// The rooms as stored, live ones without a position.
    stored: HashMap<String, HeldRoom>,
    /// The rooms with the position each is held up to.
    pub rooms: HashMap<String, SentRoom>,
}

/// What one build of a response found.
pub(super) struct Built {
    pub response: Response,
    pub has_news: bool,
    pub stream_pos: i64,
    pub list_counts: BTreeMap<String, u64>,
    /// Rooms whose held state moved: sent now, or found unchanged up to the
    /// new stream position.
    pub sent: Vec<(String, SentRoom)>,
    /// Rooms with events between the base and the new stream position.
    pub eventful: HashSet<String>,
}

pub(super) fn unknown_pos() -> ApiError {
    ApiError::new(
        ErrCode::UnknownPos,
        "Unknown or expired pos: start the connection again without one",
    )
}

fn render(state_id: i64, stream_pos: i64) -> String {
    format!("{state_id}_{stream_pos}")
}

fn parse(pos: &str) -> Option<(i64, i64)> {
    let (state, stream) = pos.split_once('_')?;
    let number = |s: &str| s.parse::<i64>().ok().filter(|n| *n >= 0);
    Some((number(state)?, number(stream)?))
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
    let (state_id, stream_pos) = parse(pos).ok_or_else(unknown_pos)?;
    let mut c = state.store.read().await?;
    let (states, stored) = store::load(&mut c, key, state_id).await?;
    let (mut this, mut other) = (None, None);
    for s in states {
        if s.state_id == state_id {
            this = Some(s);
        } else {
            other = Some(s);
        }
    }
    // That the server reached `stream_pos` is checked with the first read
    // of the response (`build`).
    let this = this.ok_or_else(unknown_pos)?;
    let rooms = stored
        .iter()
        .map(|(id, held)| {
            let sent = SentRoom {
                sent_pos: held.sent_pos.unwrap_or(stream_pos),
                config: held.config.clone(),
            };
            (id.clone(), sent)
        })
        .collect();
    Ok(Some(Base {
        state: this,
        stream_pos,
        other,
        stored,
        rooms,
    }))
}

/// Records what the response carries and names it with a `pos`; only a
/// change in what the client holds writes (see the module comment).
pub(super) async fn commit(
    state: &Context,
    key: ConnKey<'_>,
    base: Option<&Base>,
    mut built: Built,
) -> ApiResult<Response> {
    let now = state.now_ms();
    let mut response = std::mem::take(&mut built.response);
    let Some(base) = base else {
        let rooms = held(&HashMap::new(), None, &built);
        let changed: Vec<_> = rooms.iter().map(|(id, r)| (id.as_str(), r)).collect();
        let state_id = new_state(state, key, None, &built.list_counts, &changed, now).await?;
        response.pos = render(state_id, built.stream_pos);
        return Ok(response);
    };
    let rooms = held(&base.stored, Some(base.stream_pos), &built);
    let same = rooms == base.stored && built.list_counts == base.state.list_counts;
    if !built.has_news || same {
        maintain(state, key, base, now).await?;
        // The same state serves: with the new stream position if there
        // was news, else the client's `pos` as it is.
        let to = if built.has_news {
            built.stream_pos
        } else {
            base.stream_pos
        };
        response.pos = render(base.state.state_id, to);
        return Ok(response);
    }
    let changed: Vec<_> = rooms
        .iter()
        .filter(|(id, r)| base.stored.get(*id) != Some(r))
        .map(|(id, r)| (id.as_str(), r))
        .collect();
    let state_id = new_state(
        state,
        key,
        Some(&base.state),
        &built.list_counts,
        &changed,
        now,
    )
    .await?;
    response.pos = render(state_id, built.stream_pos);
    Ok(response)
}

/// The rooms the client holds after the response, as stored against its
/// stream position: a live room not sent while it had events is left at
/// the base's position.
fn held(
    base: &HashMap<String, HeldRoom>,
    base_pos: Option<i64>,
    built: &Built,
) -> HashMap<String, HeldRoom> {
    let mut rooms = base.clone();
    if let Some(base_pos) = base_pos {
        for (id, room) in rooms.iter_mut() {
            if room.sent_pos.is_none() && built.eventful.contains(id) {
                room.sent_pos = Some(base_pos);
            }
        }
    }
    for (id, sent) in &built.sent {
        let room = HeldRoom {
            sent_pos: (sent.sent_pos != built.stream_pos).then_some(sent.sent_pos),
            config: sent.config.clone(),
        };
        rooms.insert(id.clone(), room);
    }
    rooms
}

async fn new_state(
    state: &Context,
    key: ConnKey<'_>,
    base: Option<&ConnState>,
    list_counts: &BTreeMap<String, u64>,
    changed: &[(&str, &HeldRoom)],
    now: i64,
) -> ApiResult<i64> {
    // Random rather than counted: a connection started over must not
    // accept a `pos` of its earlier life.
    let state_id = loop {
        let id = rand::random::<i64>() & i64::MAX;
        if base.is_none_or(|b| b.state_id != id) {
            break id;
        }
    };
    let new = ConnState {
        state_id,
        seq: base.map_or(1, |b| b.seq + 1),
        list_counts: list_counts.clone(),
        used_ts: now,
    };
    let mut tx = state.store.write().await?;
    if base.is_none() {
        store::reset(&mut tx, key).await?;
    }
    let new = NewState {
        state: &new,
        base: base.map(|b| b.state_id),
        changed,
    };
    store::save(&mut tx, key, &new).await?;
    tx.commit().await?;
    Ok(state_id)
}

/// Keeps the connection's books when no new state is due: once a request
/// names the newest state, its client has that state's response and the
/// older state goes; and a used connection is not idle.
async fn maintain(state: &Context, key: ConnKey<'_>, base: &Base, now: i64) -> ApiResult<()> {
    let supersedes = base.other.as_ref().is_some_and(|o| o.seq < base.state.seq);
    let stale = now - base.state.used_ts >= TOUCH_EVERY_MS;
    if !supersedes && !stale {
        return Ok(());
    }
    let mut w = state.store.autocommit().await?;
    if supersedes {
        store::forget_states(&mut w, key, &[base.state.state_id]).await?;
    }
    if stale {
        store::touch(&mut w, key, base.state.state_id, now).await?;
    }
    Ok(())
}
