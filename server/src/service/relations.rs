//! Relations between events (spec: "Forming relationships between events",
//! "Threading", "Event replacements", "Reference relations"): the children
//! of one event page by page, a room's threads by latest activity, and the
//! aggregations bundled into `unsigned.m.relations` of the events a client
//! reads. Relations of encrypted events count too: `m.relates_to` sits
//! outside their ciphertext.

use std::collections::HashMap;

use cloister_proto::event::{self, ClientEvent};
use serde_json::{json, Map, Value};
use sqlx::AnyConnection;

use crate::error::{ApiError, ApiResult};
use crate::service::event_reads::{readable_room, viewer, visible_event, Window};
use crate::service::session::Auth;
use crate::service::{retention, Context};
use crate::store::events::{StoredEvent, Viewer};
use crate::store::readable::Readable;
use crate::store::relations::{self, RelationRow, ThreadActivity, BUNDLED};

/// Aggregations per event id, ready to go into `unsigned.m.relations`.
#[derive(Debug, Default)]
pub struct Bundles(HashMap<String, Map<String, Value>>);

impl Bundles {
    /// Adds each event's aggregations to its `unsigned`.
    pub fn attach(&self, events: &mut [ClientEvent]) {
        events.iter_mut().for_each(|e| self.attach_one(e));
    }

    pub fn attach_one(&self, event: &mut ClientEvent) {
        if let Some(bundle) = self.0.get(&event.event_id) {
            event
                .unsigned
                .insert("m.relations".into(), Value::Object(bundle.clone()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Bundled aggregations for `events` of one room, read from the store with
/// the reader's visibility and the room's retention cutoff.
pub async fn bundle(
    c: &mut AnyConnection,
    room_id: &str,
    events: &[StoredEvent],
    readable: &Readable,
    cutoff: i64,
    viewer: Viewer<'_>,
    now: i64,
) -> ApiResult<Bundles> {
    let parents: Vec<&str> = events
        .iter()
        .filter(|e| e.state_key.is_none())
        .map(|e| e.event_id.as_str())
        .collect();
    let rows = relations::bundled_rows(&mut *c, room_id, &parents, readable, cutoff).await?;
    if rows.is_empty() {
        return Ok(Bundles::default());
    }
    let plans = plan(events, &rows, viewer.user_id);
    let wanted: Vec<&str> = plans
        .values()
        .flat_map(Plan::latest_ids)
        .filter(|id| !events.iter().any(|e| e.event_id == *id))
        .collect();
    let fetched = relations::by_ids(&mut *c, room_id, &wanted).await?;
    Ok(render(plans, events, &fetched, viewer, now))
}

/// Bundled aggregations computed from `events` alone, for a batch known to
/// hold every child of its events the reader may see: an incremental sync
/// whose timeline is not limited (a child always comes after its parent, so
/// it is in the same window). Costs no query.
pub fn bundle_batch(events: &[StoredEvent], viewer: Viewer<'_>, now: i64) -> Bundles {
    let rows: Vec<RelationRow> = events
        .iter()
        .filter_map(|e| {
            let relation = event::relation(&e.content)?;
            BUNDLED.contains(&relation.rel_type).then(|| RelationRow {
                parent: relation.event_id.to_owned(),
                rel_type: relation.rel_type.to_owned(),
                pos: e.pos,
                event_id: e.event_id.clone(),
                sender: e.sender.clone(),
                event_type: e.event_type.clone(),
            })
        })
        .collect();
    if rows.is_empty() {
        return Bundles::default();
    }
    render(
        plan(events, &rows, viewer.user_id),
        events,
        &[],
        viewer,
        now,
    )
}

/// What one parent's bundle will hold, by event id.
#[derive(Debug, Default)]
struct Plan {
    thread_count: u64,
    thread_latest: Option<String>,
    participated: bool,
    replace: Option<String>,
    references: Vec<String>,
}

impl Plan {
    fn latest_ids(&self) -> impl Iterator<Item = &str> {
        self.thread_latest
            .as_deref()
            .into_iter()
            .chain(self.replace.as_deref())
    }
}

/// Groups `rows` (oldest first) by the parent among `parents` they relate to.
fn plan(parents: &[StoredEvent], rows: &[RelationRow], reader: &str) -> HashMap<String, Plan> {
    let mut plans: HashMap<String, Plan> = HashMap::new();
    for row in rows {
        let Some(parent) = parents.iter().find(|p| p.event_id == row.parent) else {
            continue;
        };
        if parent.state_key.is_some() {
            continue;
        }
        let plan = plans.entry(row.parent.clone()).or_default();
        match row.rel_type.as_str() {
            "m.thread" => {
                plan.thread_count += 1;
                plan.thread_latest = Some(row.event_id.clone());
                plan.participated |= row.sender == reader || parent.sender == reader;
            }
            "m.replace" if is_valid_replacement(parent, row) => {
                plan.replace = Some(row.event_id.clone());
            }
            "m.reference" => plan.references.push(row.event_id.clone()),
            _ => {}
        }
    }
    plans.retain(|_, p| p.thread_count > 0 || p.replace.is_some() || !p.references.is_empty());
    plans
}

/// The spec's conditions for an edit: same sender and type as the original,
/// which is neither state, nor redacted, nor itself an edit.
fn is_valid_replacement(original: &StoredEvent, edit: &RelationRow) -> bool {
    original.sender == edit.sender
        && original.event_type == edit.event_type
        && original.redacted_by.is_none()
        && event::relation(&original.content).is_none_or(|r| r.rel_type != "m.replace")
}

fn render(
    plans: HashMap<String, Plan>,
    events: &[StoredEvent],
    fetched: &[StoredEvent],
    viewer: Viewer<'_>,
    now: i64,
) -> Bundles {
    let find = |id: &str| {
        events
            .iter()
            .chain(fetched)
            .find(|e| e.event_id == id)
            .map(|e| serde_json::to_value(e.to_client(Some(viewer), now)).unwrap_or(Value::Null))
    };
    let mut out = HashMap::new();
    for (parent, plan) in plans {
        let mut bundle = Map::new();
        if let Some(latest) = plan.thread_latest.as_deref().and_then(find) {
            bundle.insert(
                "m.thread".into(),
                json!({
                    "latest_event": latest,
                    "count": plan.thread_count,
                    "current_user_participated": plan.participated,
                }),
            );
        }
        if let Some(edit) = plan.replace.as_deref().and_then(find) {
            bundle.insert("m.replace".into(), edit);
        }
        if !plan.references.is_empty() {
            let chunk: Vec<Value> = plan
                .references
                .iter()
                .map(|id| json!({ "event_id": id }))
                .collect();
            bundle.insert("m.reference".into(), json!({ "chunk": chunk }));
        }
        if !bundle.is_empty() {
            out.insert(parent, bundle);
        }
    }
    Bundles(out)
}

/// A `/relations` request, its parameters checked but its tokens not yet
/// parsed: a reader who may not see the room learns that first.
pub struct RelationsRequest<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub backwards: bool,
    pub limit: i64,
    pub recurse: bool,
}

pub struct RelationsPage {
    pub chunk: Vec<StoredEvent>,
    pub bundles: Bundles,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    /// How deep the server followed relations, when asked to recurse.
    pub recursion_depth: Option<u32>,
}

/// The events that relate to `event_id`, as `reader` may see them.
pub async fn children(
    ctx: &Context,
    reader: &Auth,
    room_id: &str,
    event_id: &str,
    req: &RelationsRequest<'_>,
) -> ApiResult<RelationsPage> {
    let mut conn = ctx.store.read().await?;
    // 404 for a parent the reader may not see, so that nobody learns an
    // event exists by asking for its relations.
    let (_, access, cutoff) =
        visible_event(ctx, &mut conn, &reader.user_id, room_id, event_id).await?;
    let window = Window::parse(&mut conn, req.from, req.to, req.backwards).await?;
    let chunk = relations::children(
        &mut conn,
        &relations::Children {
            room_id,
            parent: event_id,
            rel_type: req.rel_type,
            event_type: req.event_type,
            recurse: req.recurse,
            low: window.low,
            high: window.high,
            limit: req.limit,
            backwards: req.backwards,
            cutoff,
            readable: &access.events,
        },
    )
    .await?;
    let viewer = viewer(reader);
    let now = ctx.now_ms();
    let bundles = bundle(
        &mut conn,
        room_id,
        &chunk,
        &access.events,
        cutoff,
        viewer,
        now,
    )
    .await?;
    Ok(RelationsPage {
        next_batch: window.next(&chunk, req.limit),
        prev_batch: req.from.map(str::to_owned),
        recursion_depth: req.recurse.then_some(relations::MAX_DEPTH),
        chunk,
        bundles,
    })
}

pub struct ThreadsPage {
    /// Thread roots, most recently active thread first.
    pub chunk: Vec<StoredEvent>,
    pub bundles: Bundles,
    pub next_batch: Option<String>,
}

/// The threads of a room `reader` may see; with `participated`, only those
/// they started or replied in.
pub async fn threads(
    ctx: &Context,
    reader: &Auth,
    room_id: &str,
    participated: bool,
    from: Option<&str>,
    limit: i64,
) -> ApiResult<ThreadsPage> {
    let mut conn = ctx.store.read().await?;
    let (access, _, cutoff) = readable_room(ctx, &mut conn, room_id, &reader.user_id).await?;
    let before = match from {
        Some(token) => cloister_proto::tokens::parse_gap(token)
            .ok_or_else(|| ApiError::invalid_param("invalid pagination token"))?,
        None => i64::MAX,
    };
    let participant = participated.then_some(reader.user_id.as_str());
    let active = relations::threads(
        &mut conn,
        room_id,
        participant,
        before,
        limit,
        &access.events,
        cutoff,
    )
    .await?;
    let ids: Vec<&str> = active.iter().map(|t| t.root.as_str()).collect();
    let roots = relations::by_ids(&mut conn, room_id, &ids).await?;
    // Most recently active first, and only roots the reader may see.
    let chunk: Vec<StoredEvent> = active
        .iter()
        .filter_map(|t| roots.iter().find(|r| r.event_id == t.root))
        .filter(|r| access.events.allows(r) && !retention::is_expired(r, cutoff))
        .cloned()
        .collect();
    let viewer = viewer(reader);
    let now = ctx.now_ms();
    let bundles = bundle(
        &mut conn,
        room_id,
        &chunk,
        &access.events,
        cutoff,
        viewer,
        now,
    )
    .await?;
    Ok(ThreadsPage {
        next_batch: (active.len() as i64 == limit)
            .then(|| {
                active
                    .last()
                    .map(|t: &ThreadActivity| cloister_proto::tokens::gap(t.latest))
            })
            .flatten(),
        chunk,
        bundles,
    })
}
