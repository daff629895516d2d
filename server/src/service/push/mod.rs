//! Notifications: which events notify whom (the user's push rules, read
//! after the event committed), what `/notifications` and `/sync` count, and
//! the pushes that leave for gateways (`sender`).
//!
//! Two background tasks, both durable through the database:
//! - the evaluator reads the event stream from a cursor (`push_cursor`),
//!   evaluates each joined member's rules, and in one transaction records
//!   the notifications, queues one outbox row per pusher and moves the
//!   cursor; a crash before that commit re-evaluates the same events, and
//!   a second node's evaluator loses the cursor race and rolls back. An
//!   initial `/sync` catches up first when it can do so quickly
//!   (`catch_up`); incremental ones count what has been evaluated, so an
//!   event's count can reach the client with the room's next activity;
//! - the sender (`sender.rs`) claims due outbox rows with a lease and posts
//!   them to the gateway, retrying with backoff.
//!
//! Nothing of an event's content, sender, type or room name is pushed: the
//! request always has the Push Gateway API's `event_id_only` format.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::service::pushrules::effective_global;
use crate::service::pushrules::evaluate::{evaluate, Notify, PushContext};
use crate::service::session::Auth;
use crate::service::{events as event_rules, retention, Context};
use crate::store::events::{self, StoredEvent};
use crate::store::push::{self, NewNotification, OutboxRow, PushMember, Pusher};
use crate::store::relations;

pub mod pushers;
pub mod sender;

/// Events evaluated per transaction. The transaction holds SQLite's
/// writer while it records a notification per member and event (900 for
/// 100 messages in rooms of 10, 50–85 ms under load), and every message
/// sent meanwhile waits; 25 keeps that wait short and still shares the
/// reads among many events (docs/performance.md, "Push evaluation in
/// shorter transactions").
const BATCH: i64 = 25;
/// Notifications recorded per transaction, at most, unless one event alone
/// notifies more: a batch is cut short where its rooms' members add up to
/// more. 25 messages in rooms of 10 fit; without it, 25 messages into a
/// room of 2,000 would hold the writer for 50,000 rows.
const MAX_NOTIFICATIONS: u64 = 250;
/// How long notifications are kept for `/notifications` and the counts.
pub const NOTIFICATION_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;

/// What one [`evaluate_batch`] did.
pub struct Evaluated {
    /// Events evaluated.
    pub events: usize,
    /// More events may be waiting: the batch was full or cut short.
    pub backlog: bool,
    /// Pushes queued for the sender.
    pub queued: usize,
}

/// Evaluates the next batch of committed events.
pub async fn evaluate_batch(state: &Context) -> Result<Evaluated, sqlx::Error> {
    let none = Evaluated {
        events: 0,
        backlog: false,
        queued: 0,
    };
    let mut c = state.store.read().await?;
    let from = push::cursor(&mut c).await?;
    let mut batch = events::after(&mut c, from, BATCH).await?;
    let mut backlog = batch.len() as i64 >= BATCH;
    if batch.len() > 1 {
        let mut rooms: Vec<&str> = batch.iter().map(|e| e.room_id.as_str()).collect();
        rooms.sort_unstable();
        rooms.dedup();
        let members = push::member_counts(&mut c, &rooms).await?;
        let kept = within_bound(&batch, &members, MAX_NOTIFICATIONS);
        if kept < batch.len() {
            batch.truncate(kept);
            backlog = true;
        }
    }
    let Some(to) = batch.last().map(|e| e.pos) else {
        return Ok(none);
    };
    // Room by room: the rule set of a member who edited theirs is tens of
    // KiB of JSON, so holding every such member's of every room a batch
    // touches would grow with the rooms (a catch-up over 100 rooms of 50 is
    // up to 5,000 sets); one room's at a time bounds it by the largest room.
    // Members who kept the defaults share one copy.
    let mut rooms: Vec<(&str, Vec<&StoredEvent>)> = Vec::new();
    for event in &batch {
        match rooms.iter_mut().find(|(id, _)| *id == event.room_id) {
            Some((_, events)) => events.push(event),
            None => rooms.push((&event.room_id, vec![event])),
        }
    }
    let mut pushers: HashMap<&str, Vec<Pusher>> = HashMap::new();
    let mut found: Vec<(&StoredEvent, String, Notify)> = Vec::new();
    let mut threads: HashMap<&str, String> = HashMap::new();
    for (room_id, events) in rooms {
        let members: Vec<(PushMember, Cow<Value>)> = push::members_for_push(&mut c, room_id)
            .await?
            .into_iter()
            .map(|mut m| {
                let global = effective_global(m.rules.take(), &m.user_id);
                (m, global)
            })
            .collect();
        let power_levels = event_rules::auth_state(&mut c, room_id).await?.power_levels;
        pushers.insert(room_id, push::room_pushers(&mut c, room_id).await?);
        for event in events {
            evaluate_event(event, &members, &power_levels, &mut found);
            if found.last().is_some_and(|(e, _, _)| e.pos == event.pos) {
                let thread = thread_of(&mut c, event).await?;
                threads.insert(&event.event_id, thread);
            }
        }
    }
    drop(c);

    let now = state.now_ms();
    // Grouped: on SQLite the notifications share the commit (and fsync) of
    // the messages queued meanwhile instead of holding the writer for one
    // of their own.
    let mut tx = state.store.write_grouped().await?;
    if !push::advance_cursor(&mut tx, from, to).await? {
        // Another evaluator committed these first; ours roll back, and the
        // caller reads on from where it got.
        return Ok(Evaluated {
            events: batch.len(),
            backlog,
            queued: 0,
        });
    }
    let notes: Vec<NewNotification<'_>> = found
        .iter()
        .map(|(event, user, notify)| NewNotification {
            user_id: user,
            room_id: &event.room_id,
            event_id: &event.event_id,
            thread_id: &threads[event.event_id.as_str()],
            stream_pos: event.pos,
            highlight: notify.highlight,
            actions: &notify.actions,
        })
        .collect();
    push::insert_notifications(&mut tx, &notes, now).await?;
    let mut queued = 0;
    for (event, user, notify) in &found {
        let mut unread = None;
        for pusher in pushers[event.room_id.as_str()]
            .iter()
            .filter(|p| p.user_id == *user)
        {
            let unread = match unread {
                Some(n) => n,
                None => *unread.insert(push::total_unread(tx.conn(), user).await?),
            };
            let row = OutboxRow {
                id: crate::ids::random_string(24),
                user_id: user.clone(),
                app_id: pusher.app_id.clone(),
                pushkey: pusher.pushkey.clone(),
                event_id: event.event_id.clone(),
                room_id: event.room_id.clone(),
                unread,
                prio: if notify.highlight { "high" } else { "low" }.into(),
                tweaks: tweaks(notify),
                attempts: 0,
                created_ts: now,
            };
            push::enqueue(&mut tx, &row, now).await?;
            queued += 1;
        }
    }
    tx.commit().await?;
    Ok(Evaluated {
        events: batch.len(),
        backlog,
        queued,
    })
}

/// How many of `batch`'s first events can notify at most `max` members
/// together, given each room's member count; always at least one, so an
/// event that alone notifies more still gets its own transaction.
fn within_bound(batch: &[StoredEvent], members: &HashMap<String, u64>, max: u64) -> usize {
    let mut total = 0;
    for (i, event) in batch.iter().enumerate() {
        total += members.get(&event.room_id).copied().unwrap_or(0);
        if total > max {
            return i.max(1);
        }
    }
    batch.len()
}

/// Adds to `found` whom among `members` (with their effective rules) the
/// event notifies.
fn evaluate_event<'e>(
    event: &'e StoredEvent,
    members: &[(PushMember, Cow<Value>)],
    power_levels: &Value,
    found: &mut Vec<(&'e StoredEvent, String, Notify)>,
) {
    let client_event = push_view(event);
    let sender_power = event_rules::user_level(power_levels, &event.sender);
    let invitee = invitee(event);
    let member_count = members
        .iter()
        .filter(|(m, _)| m.joined && m.since_pos < event.pos)
        .count() as u64;
    for (member, global) in members {
        let user = &member.user_id;
        // Members when the event was sent, and whom it invites; the
        // evaluator runs a little later, when these may have changed.
        let concerned =
            member.joined && member.since_pos < event.pos || invitee == Some(user.as_str());
        if *user == event.sender || !concerned {
            continue;
        }
        let cx = PushContext {
            event: &client_event,
            user_id: user,
            display_name: member.display_name.as_deref(),
            member_count,
            sender_power,
            power_levels,
        };
        if let Some(notify) = evaluate(global.as_ref(), &cx) {
            found.push((event, user.clone(), notify));
        }
    }
}

/// The thread an event counts in (spec: "Threaded read receipts"): a
/// thread reply's root; for another relation (an edit or a reaction in a
/// thread), its parent's thread; otherwise `main`. The relation is in the
/// clear even in encrypted events.
async fn thread_of(
    c: &mut sqlx::AnyConnection,
    event: &StoredEvent,
) -> Result<String, sqlx::Error> {
    const MAIN: &str = "main";
    Ok(match cloister_proto::event::relation(&event.content) {
        Some(r) if r.rel_type == "m.thread" => r.event_id.to_owned(),
        Some(r) => relations::thread_root(c, &event.room_id, r.event_id)
            .await?
            .unwrap_or_else(|| MAIN.to_owned()),
        None => MAIN.to_owned(),
    })
}

/// The user an `m.room.member` invite is for.
fn invitee(e: &StoredEvent) -> Option<&str> {
    (e.event_type == "m.room.member" && e.content["membership"] == "invite")
        .then_some(e.state_key.as_deref())
        .flatten()
}

/// The event as push rules address it: the client format's top-level keys.
fn push_view(e: &StoredEvent) -> Value {
    let mut v = json!({
        "event_id": e.event_id,
        "room_id": e.room_id,
        "sender": e.sender,
        "type": e.event_type,
        "content": e.content,
    });
    if let Some(key) = &e.state_key {
        v["state_key"] = json!(key);
    }
    v
}

/// The tweaks a gateway needs to present the notification.
fn tweaks(n: &Notify) -> Value {
    let mut t = json!({});
    if n.highlight {
        t["highlight"] = json!(true);
    }
    if let Some(sound) = &n.sound {
        t["sound"] = json!(sound);
    }
    t
}

/// Evaluates what has committed so far before an initial /sync counts, so
/// the counts a client starts from cover the events it is sent (the
/// background evaluator may not have run yet).
///
/// It never makes a /sync wait for long: when the background evaluator or
/// another /sync is already evaluating, or the evaluation does not finish
/// within [`CATCH_UP_BUDGET`] (its write waits behind queued sends on a busy
/// SQLite), the response goes out with the counts evaluated so far; the
/// rest reach the client with the room's next activity. Waiting instead
/// once tied every long-poll to the write queue: under a closed-loop load
/// deliveries took 17–30 s. An evaluation cut short rolls back whole.
/// Call without holding a connection: the evaluation takes its own.
pub async fn catch_up(state: &Context) -> Result<(), sqlx::Error> {
    if !push::events_pending(&mut *state.store.read().await?).await? {
        return Ok(());
    }
    let Ok(_one) = state.push_evaluation.try_lock() else {
        return Ok(());
    };
    match tokio::time::timeout(CATCH_UP_BUDGET, evaluate_batch(state)).await {
        Ok(done) => done.map(|_| ()),
        Err(_elapsed) => Ok(()),
    }
}

/// How long a /sync may spend evaluating before it answers anyway.
const CATCH_UP_BUDGET: std::time::Duration = std::time::Duration::from_millis(20);

/// A joined room's unread notifications, as /sync reports them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoomUnread {
    /// (notifications, highlights) on the main timeline.
    main: (i64, i64),
    /// The same per thread root, for threads with any unread.
    threads: BTreeMap<String, (i64, i64)>,
}

impl RoomUnread {
    /// `unread_notifications`, and with a thread-aware filter also
    /// `unread_thread_notifications` (spec: "Receiving notifications"):
    /// then the first counts only the main timeline; otherwise it counts
    /// every thread too.
    pub fn render(&self, thread_aware: bool) -> (Value, Option<Value>) {
        let counts = |(n, h): (i64, i64)| json!({ "notification_count": n, "highlight_count": h });
        if !thread_aware {
            let all = self
                .threads
                .values()
                .fold(self.main, |(n, h), (tn, th)| (n + tn, h + th));
            return (counts(all), None);
        }
        let threads: serde_json::Map<String, Value> = self
            .threads
            .iter()
            .map(|(root, c)| (root.clone(), counts(*c)))
            .collect();
        (counts(self.main), Some(Value::Object(threads)))
    }
}

/// The counts of each thread, gathered per room.
pub fn unread_by_room(threads: Vec<push::ThreadUnread>) -> HashMap<String, RoomUnread> {
    let mut rooms: HashMap<String, RoomUnread> = HashMap::new();
    for row in threads {
        let room = rooms.entry(row.room_id).or_default();
        let counts = (row.notifications, row.highlights);
        if row.thread_id == "main" {
            room.main = counts;
        } else if counts != (0, 0) {
            room.threads.insert(row.thread_id, counts);
        }
    }
    rooms
}

/// `GET /notifications`: newest first; `from` is the `next_token` of the
/// previous page.
pub async fn list(
    state: &Context,
    auth: &Auth,
    from: Option<&str>,
    limit: Option<i64>,
    only: Option<&str>,
) -> ApiResult<Value> {
    let before = match from {
        None => i64::MAX,
        Some(token) => token
            .parse::<i64>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| ApiError::invalid_param("from is not a token this server gave"))?,
    };
    let limit = limit.unwrap_or(20).clamp(1, 100);
    let only_highlight = match only {
        None => false,
        Some("highlight") => true,
        Some(_) => return Err(ApiError::invalid_param("only must be \"highlight\"")),
    };
    let now = state.now_ms();
    let mut c = state.store.read().await?;
    let rows = push::notifications(&mut c, &auth.user_id, before, limit, only_highlight).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        // Purged, expired or erased since: gone from here as from every view.
        let Some(event) = events::get(&mut c, &row.event_id).await? else {
            continue;
        };
        let cutoff = retention::cutoff(state, &mut c, &row.room_id, now).await?;
        if retention::is_expired(&event, cutoff) {
            continue;
        }
        out.push(json!({
            "actions": row.actions,
            "event": crate::service::event_reads::one_for_reader(&event, auth, now),
            "read": row.read,
            "room_id": row.room_id,
            "ts": row.ts,
        }));
    }
    let mut body = json!({ "notifications": out });
    if rows.len() as i64 == limit {
        if let Some(last) = rows.last() {
            body["next_token"] = json!(last.stream_pos.to_string());
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user_id: &str, joined: bool, since_pos: i64) -> (PushMember, Cow<'static, Value>) {
        let m = PushMember {
            user_id: user_id.into(),
            joined,
            since_pos,
            rules: None,
            display_name: None,
        };
        let global = effective_global(None, user_id);
        (m, global)
    }

    fn message(pos: i64, room_id: &str) -> StoredEvent {
        StoredEvent {
            pos,
            event_id: format!("$e{pos}"),
            room_id: room_id.into(),
            sender: "@a:x".into(),
            sender_device: None,
            txn_id: None,
            event_type: "m.room.message".into(),
            state_key: None,
            content: json!({"msgtype": "m.text", "body": "hello"}),
            prev_content: None,
            redacts: None,
            redacted_by: None,
            origin_server_ts: 0,
            history_visibility: None,
        }
    }

    #[test]
    fn an_event_notifies_the_members_it_was_sent_to() {
        let event = message(10, "!r:x");
        let members = [
            member("@a:x", true, 1),  // the sender
            member("@b:x", true, 1),  // joined before it
            member("@c:x", true, 20), // joined after it
            member("@d:x", false, 1), // left
        ];
        let mut found = Vec::new();
        evaluate_event(&event, &members, &json!({}), &mut found);
        let notified: Vec<&str> = found.iter().map(|(_, u, _)| u.as_str()).collect();
        assert_eq!(notified, ["@b:x"]);
        assert!(!found[0].2.highlight);
        assert_eq!(found[0].0.event_id, "$e10");
    }

    #[test]
    fn a_batch_is_cut_where_its_rooms_would_notify_too_many() {
        let members = HashMap::from([("!small:x".to_owned(), 10), ("!big:x".to_owned(), 2_000)]);
        let small: Vec<StoredEvent> = (1..=25).map(|pos| message(pos, "!small:x")).collect();
        assert_eq!(
            within_bound(&small, &members, 250),
            25,
            "25 messages in rooms of 10 fit"
        );
        assert_eq!(within_bound(&small, &members, 100), 10);

        // A message into the big room ends the batch before it...
        let mut mixed = small[..5].to_vec();
        mixed.push(message(6, "!big:x"));
        mixed.push(message(7, "!small:x"));
        assert_eq!(within_bound(&mixed, &members, 250), 5);
        // ...and gets a transaction of its own when it comes first.
        assert_eq!(within_bound(&mixed[5..], &members, 250), 1);

        // A room without members (all left) notifies no one.
        let empty = vec![message(1, "!gone:x"); 40];
        assert_eq!(within_bound(&empty, &members, 250), 40);
    }
}
