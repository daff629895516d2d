//! Erasing a person (GDPR Art. 17).
//!
//! What only concerns them is deleted: account, devices, keys, backups,
//! settings, receipts, queued messages, uploads (rows and files), and the
//! messages they sent. What other people's rooms are built from cannot be
//! deleted without breaking those rooms — their membership events, the
//! creation event of a room they made, power levels naming them — so that
//! is rewritten to name `@erased-<16 hex>:<server>`, derived from the audit
//! pseudonym, and stripped of their display name and avatar.
//!
//! Legal holds take precedence (Art. 17(3)(e)): a user hold keeps the
//! events they sent and the files they uploaded untouched, a room hold
//! everything in that room; the receipt says what was kept under which case.
//!
//! Crash safety: deactivation (its own transactions) comes first, then the
//! files are removed, then one transaction deletes and rewrites every row,
//! removes the account, writes the tombstone and the audit receipt. Every
//! step finds its own leftovers, so running erasure again on a half-erased
//! person finishes the job; once erased, a rerun finds nothing new (or what
//! a since-released hold kept) and records another receipt.

use std::collections::{BTreeMap, BTreeSet};

use cloister_audit::{Action, Actor, Details, NewEntry};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::store::holds::{self, Hold, Scope};
use crate::store::subject::{self, EventRow};
use crate::store::{erased, erasure, users};

/// The id that replaces an erased person in shared room state: stable (a
/// rerun rewrites to the same id), unlinkable without the pseudonym key.
pub fn erased_id(state: &Context, user_id: &str) -> String {
    let pseudonym = state.audit.target(user_id);
    let hex = pseudonym.as_str().trim_start_matches("ps1:");
    format!(
        "@erased-{}:{}",
        &hex[..16.min(hex.len())],
        state.server_name()
    )
}

/// Whether `user_id` belonged to an erased account (and so may never be
/// registered again).
pub async fn is_erased(state: &Context, user_id: &str) -> Result<bool, sqlx::Error> {
    let pseudonym = state.audit.target(user_id);
    erased::is_erased(&mut *state.store.read().await?, pseudonym.as_str()).await
}

/// Replaces `from` in every object key equal to it and inside every string
/// value; returns whether anything changed.
pub fn rewrite_json(value: &mut Value, from: &str, to: &str) -> bool {
    match value {
        Value::String(s) if s.contains(from) => {
            *s = s.replace(from, to);
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| rewrite_json(v, from, to) | changed),
        Value::Object(map) => {
            let mut changed = false;
            if map.contains_key(from) {
                let old = std::mem::take(map);
                *map = old
                    .into_iter()
                    .map(|(k, v)| {
                        if k == from {
                            (to.to_owned(), v)
                        } else {
                            (k, v)
                        }
                    })
                    .collect();
                changed = true;
            }
            for v in map.values_mut() {
                changed |= rewrite_json(v, from, to);
            }
            changed
        }
        _ => false,
    }
}

/// Which holds apply: the active holds on the person and on rooms.
struct Holds {
    on_user: Vec<Hold>,
    on_rooms: BTreeMap<String, Vec<Hold>>,
}

impl Holds {
    async fn load(state: &Context, user_id: &str) -> Result<Holds, sqlx::Error> {
        let mut conn = state.store.read().await?;
        let on_user = holds::active_on(&mut conn, Scope::User, user_id).await?;
        let mut on_rooms: BTreeMap<String, Vec<Hold>> = BTreeMap::new();
        for hold in holds::list(&mut conn, true).await? {
            if hold.scope == Scope::Room {
                on_rooms.entry(hold.target.clone()).or_default().push(hold);
            }
        }
        Ok(Holds { on_user, on_rooms })
    }

    /// The holds that keep an event untouched.
    fn on_event(&self, event: &EventRow, user_id: &str) -> Vec<&Hold> {
        let mut out: Vec<&Hold> = self
            .on_rooms
            .get(&event.room_id)
            .map(|h| h.iter().collect())
            .unwrap_or_default();
        if event.sender == user_id {
            out.extend(self.on_user.iter());
        }
        out
    }
}

/// What one erasure did, per hold.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<&'static str, u64>,
    /// hold id → (hold, kept events, kept media)
    kept: BTreeMap<String, (Hold, u64, u64)>,
}

impl Tally {
    fn add(&mut self, name: &'static str, n: u64) {
        *self.counts.entry(name).or_default() += n;
    }

    fn keep(&mut self, holds: &[&Hold], events: u64, media: u64) {
        for hold in holds {
            let slot = self
                .kept
                .entry(hold.hold_id.clone())
                .or_insert_with(|| ((*hold).clone(), 0, 0));
            slot.1 += events;
            slot.2 += media;
        }
    }
}

/// What erasing a person would do, for the confirmation a DPO sees first:
/// the counts the receipt will name (`deleted_*`, before holds), and the
/// active holds that keep part of it.
#[derive(Debug, serde::Serialize)]
pub struct Preview {
    pub user_id: String,
    pub exists: bool,
    pub erased: bool,
    pub deletes: BTreeMap<&'static str, u64>,
    pub holds: Vec<Hold>,
}

pub async fn preview(state: &Context, user_id: &str) -> ApiResult<Preview> {
    let exists = users::get(&mut *state.store.read().await?, user_id)
        .await?
        .is_some();
    let erased = is_erased(state, user_id).await?;
    if !exists && !erased {
        return Err(ApiError::not_found("Unknown user"));
    }
    let mut conn = state.store.read().await?;
    let mut deletes: BTreeMap<&'static str, u64> = erasure::count_own_rows(&mut conn, user_id)
        .await?
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let sent = subject::count(&mut conn, "events", "sender = $1", &[user_id]).await?;
    let uploads = subject::uploads(&mut conn, user_id).await?;
    deletes.insert("deleted_events", sent.max(0) as u64);
    deletes.insert("deleted_media", uploads.len() as u64);
    deletes.insert("deleted_account", u64::from(exists));
    let rooms: BTreeSet<String> = crate::store::rooms::rooms_for_user(&mut conn, user_id)
        .await?
        .into_iter()
        .map(|(room_id, _)| room_id)
        .collect();
    drop(conn);
    let found = Holds::load(state, user_id).await?;
    let mut holds = found.on_user;
    for (room_id, on_room) in found.on_rooms {
        if rooms.contains(&room_id) {
            holds.extend(on_room);
        }
    }
    Ok(Preview {
        user_id: user_id.to_owned(),
        exists,
        erased,
        deletes,
        holds,
    })
}

/// Erases `user_id`; `actor` is who asked (an admin's pseudonym, or the
/// system for the operator's CLI). Returns the receipt.
pub async fn erase_user(state: &Context, user_id: &str, actor: Actor) -> ApiResult<Value> {
    let pseudonym = state.audit.target(user_id);
    let new_id = erased_id(state, user_id);
    let user = users::get(&mut *state.store.read().await?, user_id).await?;
    let was_erased = is_erased(state, user_id).await?;
    if user.is_none() && !was_erased {
        return Err(ApiError::not_found("Unknown user"));
    }
    // Deactivation deletes devices (with their keys and queued messages)
    // on its own; the receipt counts what existed before it.
    let before: BTreeMap<&'static str, u64> =
        erasure::count_own_rows(&mut *state.store.read().await?, user_id)
            .await?
            .into_iter()
            .collect();
    if user.as_ref().is_some_and(|u| !u.deactivated) {
        let entry = NewEntry::new(now_u64(state), actor.clone(), Action::AccountDeactivated)
            .target(pseudonym.clone());
        crate::service::devices::deactivate_user(state, user_id, entry).await?;
    }

    let holds = Holds::load(state, user_id).await?;
    let mut tally = Tally::default();

    // Files first: a crash after this leaves rows whose files are gone,
    // which the rerun deletes; the other order would orphan files.
    let mut doomed_media = Vec::new();
    {
        let mut conn = state.store.read().await?;
        for upload in subject::uploads(&mut conn, user_id).await? {
            let mut keeping: Vec<&Hold> = holds.on_user.iter().collect();
            let links = crate::store::media::attached_to(&mut conn, &upload.media_id).await?;
            let rooms: BTreeSet<String> = links.into_iter().flatten().map(|(r, _)| r).collect();
            for room in rooms {
                keeping.extend(holds.on_rooms.get(&room).into_iter().flatten());
            }
            if keeping.is_empty() {
                doomed_media.push(upload);
            } else {
                tally.add("kept_media_under_hold", 1);
                tally.keep(&keeping, 0, 1);
            }
        }
    }
    for upload in &doomed_media {
        let path = crate::store::media::path(&state.config.media_dir(), &upload.media_id);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }

    let mut tx = state.store.write().await?;
    for upload in &doomed_media {
        crate::store::media::delete(&mut tx, &upload.media_id).await?;
        tally.add("deleted_media", 1);
        tally.add("deleted_media_bytes", upload.size.max(0) as u64);
    }
    rewrite_events(&mut tx, &holds, &mut tally, user_id, &new_id).await?;
    rewrite_rooms(&mut tx, &holds, &mut tally, user_id, &new_id).await?;
    for (name, n) in erasure::delete_own_rows(&mut tx, user_id).await? {
        tally.add(name, n.max(before.get(name).copied().unwrap_or(0)));
    }
    for (table, keys, column) in erasure::MENTIONS {
        for (key, text) in erasure::mentions(tx.conn(), table, keys, column, user_id).await? {
            let Ok(mut json) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            rewrite_json(&mut json, user_id, &new_id);
            erasure::set_mention(&mut tx, table, keys, column, &key, &json.to_string()).await?;
            tally.add("pseudonymized_mentions", 1);
        }
    }
    tally.add(
        "pseudonymized_holds",
        erasure::pseudonymize_holds(&mut tx, user_id, &new_id).await?,
    );
    tally.add(
        "deleted_account",
        erasure::delete_user(&mut tx, user_id).await?,
    );
    erased::insert(&mut tx, pseudonym.as_str(), state.now_ms()).await?;

    // The receipt lists every category; the audit entry only those with
    // something in them, which keeps it well within the format's limit on
    // named counts as tables are added.
    let mut details = Details::new();
    for (name, n) in tally.counts.iter().filter(|(_, n)| **n > 0) {
        details = details.with(name, *n).map_err(|_| ApiError::internal())?;
    }
    let entry = NewEntry::new(now_u64(state), actor, Action::Erasure)
        .target(pseudonym.clone())
        .details(details);
    let recorded = crate::store::audit::append(&mut tx, entry).await?;
    tx.commit().await?;
    // The rewritten events moved their rooms' state serials, so no copy of
    // the old ones is served again; dropping them now also ends them in
    // this node's memory (service::sync::members, service::sync::recent,
    // service::sliding_sync::summary).
    state.sync_members.clear();
    state.sync_recent.clear();
    state.sliding_summaries.clear();
    if let Err(e) = state.store.reclaim().await {
        // The rows are deleted; only old copies in the SQLite log may remain
        // until the next purge reclaims them.
        tracing::error!(error = %e, "reclaiming space after an erasure failed");
    }
    tracing::info!("account erased");

    let kept: Vec<Value> = tally
        .kept
        .values()
        .map(|(hold, events, media)| {
            json!({
                "hold_id": hold.hold_id,
                "case_id": hold.case_id,
                "scope": hold.scope,
                "room_id": (hold.scope == Scope::Room).then_some(&hold.target),
                "kept_events": events,
                "kept_media": media,
            })
        })
        .collect();
    Ok(json!({
        "user_id": user_id,
        "pseudonym": pseudonym.as_str(),
        "replaced_by": new_id,
        "already_erased": was_erased,
        "complete": kept.is_empty(),
        "counts": tally.counts,
        "kept_under_hold": kept,
        "audit_seq": recorded.seq,
        "erased_ts": recorded.ts,
    }))
}

fn now_u64(state: &Context) -> u64 {
    state.now_ms().max(0) as u64
}

/// Deletes the events the person sent (except current state and held
/// events) and rewrites every other event that names them.
async fn rewrite_events(
    tx: &mut crate::store::WriteTx,
    holds: &Holds,
    tally: &mut Tally,
    user_id: &str,
    new_id: &str,
) -> ApiResult<()> {
    let mut member_rooms = BTreeSet::new();
    for event in subject::events_naming(tx.conn(), user_id).await? {
        let keeping = holds.on_event(&event, user_id);
        if !keeping.is_empty() {
            tally.add("kept_events_under_hold", 1);
            tally.keep(&keeping, 1, 0);
            continue;
        }
        let sent = event.sender == user_id;
        let current = match event.state_key {
            Some(_) => subject::is_current_state(tx.conn(), &event.event_id).await?,
            None => false,
        };
        if sent && !current {
            erasure::delete_event(tx, &event.event_id).await?;
            tally.add("deleted_events", 1);
            continue;
        }
        let about = event.state_key.as_deref() == Some(user_id);
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
        let mut content = parse(&event.content);
        let mut prev = event.prev_content.as_deref().map(parse);
        if about && event.event_type == "m.room.member" {
            for c in std::iter::once(&mut content).chain(prev.iter_mut()) {
                if let Some(map) = c.as_object_mut() {
                    map.remove("displayname");
                    map.remove("avatar_url");
                }
            }
        }
        rewrite_json(&mut content, user_id, new_id);
        if let Some(p) = prev.as_mut() {
            rewrite_json(p, user_id, new_id);
        }
        let state_key = event
            .state_key
            .as_deref()
            .map(|k| if k == user_id { new_id } else { k });
        let content_text = content.to_string();
        let prev_text = prev.map(|p| p.to_string());
        erasure::rewrite_event(
            tx,
            &erasure::Rewrite {
                event_id: &event.event_id,
                sender: if sent { new_id } else { &event.sender },
                clear_device: sent,
                state_key,
                content: &content_text,
                prev_content: prev_text.as_deref(),
            },
        )
        .await?;
        if about && current {
            erasure::rekey_current_state(tx, &event.event_id, new_id).await?;
            if event.event_type == "m.room.member" {
                member_rooms.insert(event.room_id.clone());
            }
        }
        if event.state_key.is_some() {
            tally.add("pseudonymized_state_events", 1);
        } else {
            tally.add("pseudonymized_other_events", 1);
        }
    }
    for room_id in member_rooms {
        tally.add(
            "pseudonymized_memberships",
            erasure::rename_membership(tx, &room_id, user_id, new_id).await?,
        );
    }
    Ok(())
}

/// Rooms and aliases they created name the pseudonymous id, unless a hold
/// keeps the room (or, under a user hold, the creation event they sent).
async fn rewrite_rooms(
    tx: &mut crate::store::WriteTx,
    holds: &Holds,
    tally: &mut Tally,
    user_id: &str,
    new_id: &str,
) -> ApiResult<()> {
    for room_id in erasure::created_rooms(tx.conn(), user_id).await? {
        if holds.on_rooms.contains_key(&room_id) || !holds.on_user.is_empty() {
            continue;
        }
        erasure::set_room_creator(tx, &room_id, new_id).await?;
        tally.add("pseudonymized_rooms", 1);
    }
    for (alias, room_id) in erasure::created_aliases(tx.conn(), user_id).await? {
        if holds.on_rooms.contains_key(&room_id) {
            continue;
        }
        erasure::set_alias_creator(tx, &alias, new_id).await?;
        tally.add("pseudonymized_aliases", 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_keys_and_values_everywhere() {
        let mut v = json!({
            "users": { "@a:x": 100, "@b:x": 50 },
            "creator": "@a:x",
            "list": ["@a:x", "other", { "@a:x": ["!r:x"] }],
            "reason": "kicked @a:x",
            "n": 5,
        });
        assert!(rewrite_json(&mut v, "@a:x", "@erased-1:x"));
        assert_eq!(
            v,
            json!({
                "users": { "@erased-1:x": 100, "@b:x": 50 },
                "creator": "@erased-1:x",
                "list": ["@erased-1:x", "other", { "@erased-1:x": ["!r:x"] }],
                "reason": "kicked @erased-1:x",
                "n": 5,
            })
        );
        assert!(!rewrite_json(&mut v, "@a:x", "@erased-1:x"));
    }
}
