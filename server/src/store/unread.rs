//! Unread notification counts per user, room and thread
//! (`notification_counts`), kept up to date where they change: a
//! notification recorded, a read receipt moved, old notifications deleted.
//! `/sync` reads them instead of counting the user's notifications, which
//! cost every response a pass over everything the user was ever notified of
//! (and every unread message since their last receipt is still that many).
//!
//! Every writer of the counts first takes the stream counter's row (as
//! every send and receipt does), so on PostgreSQL a receipt's recount and
//! the evaluator's additions cannot interleave and count a notification
//! twice or not at all; on SQLite writers are serial anyway.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::{codec, params, Writer};

/// One notification as recorded.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub user_id: String,
    pub room_id: String,
    pub thread_id: String,
    pub stream_pos: i64,
    pub highlight: bool,
}

/// Unread notifications of one thread of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadUnread {
    pub room_id: String,
    /// `main`, or a thread root's event id.
    pub thread_id: String,
    pub notifications: i64,
    pub highlights: i64,
}

/// How far a user has read in one room: `m.read`/`m.read.private` receipts
/// without a thread reach every thread, those of a thread only that one.
#[derive(Debug)]
struct ReadPos {
    all: i64,
    threads: HashMap<String, i64>,
}

/// Nothing read: every stream position is past it.
impl Default for ReadPos {
    fn default() -> Self {
        ReadPos {
            all: -1,
            threads: HashMap::new(),
        }
    }
}

impl ReadPos {
    fn unread(&self, thread_id: &str, pos: i64) -> bool {
        pos > self.all && pos > self.threads.get(thread_id).copied().unwrap_or(-1)
    }
}

type Key = (String, String);
type Counts = HashMap<(String, String, String), (i64, i64)>;

/// Read positions of each user in each room given.
async fn read_positions<'a>(
    c: &mut AnyConnection,
    pairs: &'a HashSet<Key>,
) -> Result<HashMap<Key, ReadPos>, sqlx::Error> {
    let distinct = |values: Vec<&'a str>| -> Vec<&'a str> {
        let mut values = values;
        values.sort_unstable();
        values.dedup();
        values
    };
    let rooms = distinct(pairs.iter().map(|(_, r)| r.as_str()).collect());
    let users = distinct(pairs.iter().map(|(u, _)| u.as_str()).collect());
    let mut out: HashMap<Key, ReadPos> = HashMap::new();
    for rooms in rooms.chunks(params::MAX / 2) {
        for users in users.chunks(params::MAX / 2) {
            let room_list = params::list(1, rooms.len());
            let user_list = params::list(1 + rooms.len(), users.len());
            let sql = format!(
                "SELECT r.user_id, r.room_id, r.thread_id, MAX(e.stream_pos) FROM receipts r \
                 JOIN events e ON e.event_id = r.event_id \
                 WHERE r.room_id IN ({room_list}) AND r.user_id IN ({user_list}) \
                 AND r.receipt_type IN ('m.read', 'm.read.private') \
                 GROUP BY r.user_id, r.room_id, r.thread_id"
            );
            let mut query = sqlx::query(&sql);
            for v in rooms.iter().chain(users) {
                query = query.bind(*v);
            }
            for r in query.fetch_all(&mut *c).await? {
                let key = (r.try_get(0)?, r.try_get(1)?);
                if !pairs.contains(&key) {
                    continue;
                }
                let thread: String = r.try_get(2)?;
                let pos: i64 = r.try_get(3)?;
                let read = out.entry(key).or_default();
                if thread.is_empty() {
                    read.all = pos;
                } else {
                    read.threads.insert(thread, pos);
                }
            }
        }
    }
    for pair in pairs {
        out.entry(pair.clone()).or_default();
    }
    Ok(out)
}

/// The unread ones among `notes`, per user, room and thread.
fn tally(notes: &[Recorded], read: &HashMap<Key, ReadPos>) -> Counts {
    let mut counts = Counts::new();
    for n in notes {
        let pos = &read[&(n.user_id.clone(), n.room_id.clone())];
        if pos.unread(&n.thread_id, n.stream_pos) {
            let c = counts
                .entry((n.user_id.clone(), n.room_id.clone(), n.thread_id.clone()))
                .or_default();
            c.0 += 1;
            c.1 += i64::from(n.highlight);
        }
    }
    counts
}

/// Adds `counts` to the stored ones.
async fn add_counts(w: &mut impl Writer, counts: &Counts) -> Result<(), sqlx::Error> {
    let rows: Vec<_> = counts.iter().collect();
    for chunk in rows.chunks(params::rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO notification_counts (user_id, room_id, thread_id, notifications, highlights) \
             VALUES {} ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET \
             notifications = notification_counts.notifications + excluded.notifications, \
             highlights = notification_counts.highlights + excluded.highlights",
            params::rows(chunk.len(), 5)
        );
        let mut query = sqlx::query(&sql);
        for ((user, room, thread), (n, h)) in chunk {
            query = query.bind(user).bind(room).bind(thread).bind(*n).bind(*h);
        }
        query.execute(w.conn()).await?;
    }
    Ok(())
}

/// Waits for (and then holds, until commit) the stream counter's row: see
/// the module's note.
async fn serialize(w: &mut impl Writer) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE stream_counter SET pos = pos WHERE id = 1")
        .execute(w.conn())
        .await?;
    Ok(())
}

/// Counts newly recorded notifications that are unread.
pub async fn add(w: &mut impl Writer, notes: &[Recorded]) -> Result<(), sqlx::Error> {
    if notes.is_empty() {
        return Ok(());
    }
    serialize(w).await?;
    let pairs: HashSet<Key> = notes
        .iter()
        .map(|n| (n.user_id.clone(), n.room_id.clone()))
        .collect();
    let read = read_positions(w.conn(), &pairs).await?;
    add_counts(w, &tally(notes, &read)).await
}

/// Counts the user's unread notifications in a room afresh, after a read
/// receipt moved or notifications were deleted. Touches only the
/// notifications after the user's unthreaded read position.
pub async fn recount(w: &mut impl Writer, user_id: &str, room_id: &str) -> Result<(), sqlx::Error> {
    serialize(w).await?;
    let pair = (user_id.to_owned(), room_id.to_owned());
    let read = read_positions(w.conn(), &HashSet::from([pair.clone()])).await?;
    sqlx::query("DELETE FROM notification_counts WHERE user_id = $1 AND room_id = $2")
        .bind(user_id)
        .bind(room_id)
        .execute(w.conn())
        .await?;
    let notes = recorded_after(w.conn(), user_id, read[&pair].all, Some(room_id)).await?;
    add_counts(w, &tally(&notes, &read)).await
}

/// The user's notifications after stream position `after` (in one room).
async fn recorded_after(
    c: &mut AnyConnection,
    user_id: &str,
    after: i64,
    room_id: Option<&str>,
) -> Result<Vec<Recorded>, sqlx::Error> {
    sqlx::query(
        "SELECT room_id, thread_id, stream_pos, highlight FROM notifications \
         WHERE user_id = $1 AND stream_pos > $2 AND ($3 IS NULL OR room_id = $3)",
    )
    .bind(user_id)
    .bind(after)
    .bind(room_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        Ok(Recorded {
            user_id: user_id.to_owned(),
            room_id: r.try_get(0)?,
            thread_id: r.try_get(1)?,
            stream_pos: r.try_get(2)?,
            highlight: codec::flag(&r, 3)?,
        })
    })
    .collect()
}

/// Per room and thread: the user's unread notifications at or before
/// stream position `to` (those recorded after it, for events this response
/// does not carry yet, are taken back out). Rooms and threads absent have
/// none. `/v3/sync` reads the same rows with the device's news
/// (`store::device_news`).
pub async fn counts(
    c: &mut AnyConnection,
    user_id: &str,
    to: i64,
) -> Result<Vec<ThreadUnread>, sqlx::Error> {
    let rows = sqlx::query(&counts_select("$1", "$2"))
        .bind(user_id)
        .bind(to)
        .fetch_all(&mut *c)
        .await?;
    let mut tally = Tally::default();
    for r in rows {
        tally.add(
            user_id,
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
        );
    }
    tally.finish(c).await
}

/// The select of [`counts`], given the SQL of its user id and window end:
/// rows of (kind, room id, thread id, number, number). Kind 0 is a count
/// (notifications, highlights); kind 1 a notification recorded after the
/// window's end (stream position, highlight), which a statement that reads
/// the end in the same snapshot never finds.
pub(super) fn counts_select(user: &str, to: &str) -> String {
    format!(
        "SELECT CAST(0 AS BIGINT) AS k, room_id, thread_id, notifications AS n, highlights AS h \
         FROM notification_counts WHERE user_id = {user} \
         UNION ALL \
         SELECT CAST(1 AS BIGINT), room_id, thread_id, stream_pos, highlight FROM notifications \
         WHERE user_id = {user} AND stream_pos > {to}"
    )
}

/// By room, then thread.
pub(super) fn sorted(mut counts: Vec<ThreadUnread>) -> Vec<ThreadUnread> {
    counts.sort_unstable_by(|x, y| (&x.room_id, &x.thread_id).cmp(&(&y.room_id, &y.thread_id)));
    counts
}

/// The rows of [`counts_select`], turned into counts.
#[derive(Default)]
pub(super) struct Tally {
    counts: Counts,
    later: Vec<Recorded>,
}

impl Tally {
    pub(super) fn add(
        &mut self,
        user_id: &str,
        kind: i64,
        room_id: String,
        thread_id: String,
        a: i64,
        b: i64,
    ) {
        if kind == 0 {
            self.counts
                .insert((user_id.to_owned(), room_id, thread_id), (a, b));
        } else {
            self.later.push(Recorded {
                user_id: user_id.to_owned(),
                room_id,
                thread_id,
                stream_pos: a,
                highlight: b != 0,
            });
        }
    }

    /// The counts, less what was recorded after the window (a statement
    /// more, only then).
    pub(super) async fn finish(
        mut self,
        c: &mut AnyConnection,
    ) -> Result<Vec<ThreadUnread>, sqlx::Error> {
        if !self.later.is_empty() {
            let pairs: HashSet<Key> = self
                .later
                .iter()
                .map(|n| (n.user_id.clone(), n.room_id.clone()))
                .collect();
            let read = read_positions(&mut *c, &pairs).await?;
            for (key, (n, h)) in tally(&self.later, &read) {
                if let Some(c) = self.counts.get_mut(&key) {
                    c.0 -= n;
                    c.1 -= h;
                }
            }
        }
        Ok(self
            .counts
            .into_iter()
            .map(|((_, room_id, thread_id), (n, h))| ThreadUnread {
                room_id,
                thread_id,
                notifications: n.max(0),
                highlights: h.max(0),
            })
            .collect())
    }
}

/// The user's unread notifications in all rooms: the badge a push carries.
pub async fn total(c: &mut AnyConnection, user_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(notifications), 0) AS BIGINT) FROM notification_counts \
         WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(c)
    .await
}

/// Counts every user's unread notifications from scratch: for the
/// migration that introduced the counts.
pub async fn backfill(w: &mut impl Writer) -> Result<(), sqlx::Error> {
    let pairs: Vec<(String, String)> =
        sqlx::query_as("SELECT DISTINCT user_id, room_id FROM notifications")
            .fetch_all(w.conn())
            .await?;
    for (user_id, room_id) in pairs {
        recount(w, &user_id, &room_id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    use super::*;
    use crate::store::events::{self, NewEvent};
    use crate::store::push::{self, NewNotification};
    use crate::store::{ephemeral, Store};

    const USERS: [&str; 3] = ["@a:x", "@b:x", "@c:x"];
    const ROOMS: [&str; 2] = ["!r:x", "!s:x"];
    const THREADS: [&str; 3] = ["main", "$t1", "$t2"];

    /// What the counts must be, from all notifications and receipts.
    async fn brute_force(store: &Store, user_id: &str, to: i64) -> Vec<ThreadUnread> {
        let mut c = store.read().await.unwrap();
        let pairs: HashSet<Key> = ROOMS
            .iter()
            .map(|r| (user_id.to_owned(), (*r).to_owned()))
            .collect();
        let read = read_positions(&mut c, &pairs).await.unwrap();
        let all: Vec<Recorded> = recorded_after(&mut c, user_id, -1, None)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.stream_pos <= to)
            .collect();
        sorted(
            tally(&all, &read)
                .into_iter()
                .map(|((_, room_id, thread_id), (n, h))| ThreadUnread {
                    room_id,
                    thread_id,
                    notifications: n,
                    highlights: h,
                })
                .collect(),
        )
    }

    fn sorted(mut v: Vec<ThreadUnread>) -> Vec<ThreadUnread> {
        v.retain(|t| t.notifications != 0 || t.highlights != 0);
        v.sort_by(|a, b| (&a.room_id, &a.thread_id).cmp(&(&b.room_id, &b.thread_id)));
        v
    }

    async fn stored(store: &Store, user_id: &str, to: i64) -> Vec<ThreadUnread> {
        let mut c = store.read().await.unwrap();
        sorted(counts(&mut c, user_id, to).await.unwrap())
    }

    /// Unthreaded receipts reach every thread, a thread's receipt only its
    /// own; a highlight is also a notification.
    #[test]
    fn unread_is_past_both_read_positions() {
        let note = |thread: &str, pos, highlight| Recorded {
            user_id: "@a:x".into(),
            room_id: "!r:x".into(),
            thread_id: thread.into(),
            stream_pos: pos,
            highlight,
        };
        let notes = [
            note("main", 3, false),
            note("main", 6, true),
            note("$t1", 4, true),
            note("$t1", 8, false),
            note("$t2", 9, false),
        ];
        let read = HashMap::from([(
            ("@a:x".to_owned(), "!r:x".to_owned()),
            ReadPos {
                all: 4,
                threads: HashMap::from([("$t1".to_owned(), 8)]),
            },
        )]);
        let key = |t: &str| ("@a:x".to_owned(), "!r:x".to_owned(), t.to_owned());
        let counts = tally(&notes, &read);
        assert_eq!(counts.get(&key("main")), Some(&(1, 1)));
        assert_eq!(counts.get(&key("$t1")), None);
        assert_eq!(counts.get(&key("$t2")), Some(&(1, 0)));
        assert_eq!(counts.len(), 2);
    }

    /// Random interleavings of notifications (some recorded twice, some
    /// after the user already read past them), receipts in and out of
    /// threads moving either way, and old notifications deleted: the kept
    /// counts always equal a count from scratch, at every position.
    #[tokio::test]
    async fn kept_counts_equal_counting_from_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::tests::sqlite_store(&dir).await;
        let mut rng = StdRng::seed_from_u64(7);
        let mut sent: Vec<(i64, String, &str)> = Vec::new();
        for step in 0..300 {
            let mut tx = store.write().await.unwrap();
            match rng.gen_range(0..10) {
                0..=5 => {
                    let room = ROOMS[rng.gen_range(0..ROOMS.len())];
                    let event = events::append(
                        &mut tx,
                        &NewEvent {
                            room_id: room,
                            sender: "@z:x",
                            sender_device: None,
                            txn_id: None,
                            event_type: "m.room.encrypted",
                            state_key: None,
                            content: &json!({}),
                            redacts: None,
                        },
                        step,
                    )
                    .await
                    .unwrap();
                    sent.push((event.pos, event.event_id, room));
                    // Record some, now or later, and a few twice.
                    let chosen: Vec<_> = (0..rng.gen_range(1..4))
                        .map(|_| &sent[rng.gen_range(sent.len().saturating_sub(4)..sent.len())])
                        .collect();
                    let threads: Vec<&str> = chosen
                        .iter()
                        .map(|(pos, _, _)| THREADS[*pos as usize % THREADS.len()])
                        .collect();
                    let notes: Vec<NewNotification<'_>> = chosen
                        .iter()
                        .zip(&threads)
                        .flat_map(|((pos, id, room), thread)| {
                            USERS.iter().map(move |u| NewNotification {
                                user_id: u,
                                room_id: room,
                                event_id: id,
                                thread_id: thread,
                                stream_pos: *pos,
                                highlight: pos % 3 == 0,
                                actions: &[],
                            })
                        })
                        .collect();
                    push::insert_notifications(&mut tx, &notes, step)
                        .await
                        .unwrap();
                }
                6..=8 if !sent.is_empty() => {
                    let (_, id, room) = &sent[rng.gen_range(0..sent.len())];
                    let user = USERS[rng.gen_range(0..USERS.len())];
                    let kind = ["m.read", "m.read.private"][rng.gen_range(0..2)];
                    let thread = ["", "main", "$t1"][rng.gen_range(0..3)];
                    let pos = tx.next_pos().await.unwrap();
                    ephemeral::put_receipt(&mut tx, room, user, kind, thread, id, step, pos)
                        .await
                        .unwrap();
                    recount(&mut tx, user, room).await.unwrap();
                }
                _ => {
                    push::delete_old_notifications(&mut tx, step - 100)
                        .await
                        .unwrap();
                }
            }
            tx.commit().await.unwrap();
            if step % 10 == 9 {
                let last = sent.last().map_or(0, |s| s.0);
                for user in USERS {
                    for to in [last, last - 3, last / 2] {
                        assert_eq!(
                            stored(&store, user, to).await,
                            brute_force(&store, user, to).await,
                            "{user} at {to}, step {step}"
                        );
                    }
                }
            }
        }
        // The migration's backfill arrives at the same counts.
        let mut tx = store.write().await.unwrap();
        sqlx::query("DELETE FROM notification_counts")
            .execute(tx.conn())
            .await
            .unwrap();
        backfill(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let last = sent.last().unwrap().0;
        for user in USERS {
            let counted = brute_force(&store, user, last).await;
            assert!(!counted.is_empty(), "the run leaves unread notifications");
            assert_eq!(stored(&store, user, last).await, counted);
        }
    }
}
