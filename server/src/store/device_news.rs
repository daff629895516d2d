//! What every `/v3/sync` and sliding sync response reads about its own
//! user and device, in one statement: pending to-device messages, account
//! data changed in the window (and one type's content whole, if asked),
//! the device's one-time and fallback key state, whose device lists
//! changed in the window, the user's rooms with whether anything happened
//! in them and their bump positions, and the user's unread counts.
//!
//! Each is also read alone (`to_device::pending`, `account_data::
//! changed_since` and `get`, `keys::device_key_state`, `keys::
//! device_list_changes_between`, `rooms::rooms_for_sync`, `unread::
//! counts`): the reference the tests below hold the union to. They share
//! one round trip because on SQLite every statement is a hand-off to the
//! connection's worker thread and back, which under load cost more than
//! the reads themselves (docs/performance.md).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use cloister_proto::to_device::ToDeviceEvent;
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::codec;
use super::rooms::{self, SyncRoom};
use super::unread::{self, ThreadUnread};

/// What [`read`] returns.
#[derive(Debug, Default, PartialEq)]
pub struct DeviceNews {
    /// As `to_device::pending`.
    pub to_device: Vec<(i64, ToDeviceEvent)>,
    /// As `account_data::changed_since`: (room id or "", type, content).
    pub account_data: Vec<(String, String, Value)>,
    /// As `keys::device_key_state`.
    pub one_time_key_counts: BTreeMap<String, i64>,
    pub unused_fallback_types: Vec<String>,
    /// Users whose device lists changed in the window, each once, sorted.
    pub device_list_changes: Vec<String>,
    /// The window's end: [`Window::to`], or the stream position current
    /// when the statement read.
    pub to: i64,
    /// As `rooms::rooms_for_sync` over [`Window::rooms_after`] to `to`.
    pub rooms: Vec<SyncRoom>,
    /// As `unread::counts` at `to`, sorted by room and thread.
    pub unread: Vec<ThreadUnread>,
    /// The content of the user's global account data of
    /// [`Window::data_type`], if asked and written.
    pub data: Option<Value>,
}

/// The window of one response.
pub struct Window {
    /// To-device messages after this position are pending.
    pub to_device_after: i64,
    /// Account data changed after this position is sent.
    pub data_after: i64,
    /// Device-list changes after this position are read; None reads none
    /// (an initial sync has no earlier view of anyone's devices).
    pub device_lists_after: Option<i64>,
    /// Nothing goes past this position; None: the current one, read in
    /// the same statement, which spares `/sync` a round trip of its own
    /// for it (returned as [`DeviceNews::to`]).
    pub to: Option<i64>,
    /// At most this many to-device messages.
    pub to_device_limit: i64,
    /// To-device messages queued before this time have expired.
    pub to_device_cutoff: i64,
    /// Whether anything happened in each room after this position; None:
    /// an empty window (an initial sync sends every room anyway).
    pub rooms_after: Option<i64>,
    /// The state event type whose content comes with each room.
    pub room_state_type: &'static str,
    /// A global account data type whose content comes whole, changed or
    /// not (sliding sync's lists tell direct rooms by `m.direct`).
    pub data_type: Option<&'static str>,
}

const TO_DEVICE: i64 = 0;
const ACCOUNT_DATA: i64 = 1;
const ONE_TIME_KEYS: i64 = 2;
const FALLBACK_KEY: i64 = 3;
const DEVICE_LIST: i64 = 4;
const POSITION: i64 = 5;
const ROOM: i64 = 6;
/// 7 and 8: `unread::counts_select`'s kinds 0 and 1.
const UNREAD: i64 = 7;
const UNREAD_LATER: i64 = 8;
const DATA: i64 = 9;

/// Rows are (kind, number, text, text, text, number, number, number,
/// number, number); the last five are for rooms (`rooms::sync_rooms_select`), the first of them
/// also for unread counts (`unread::counts_select`), and NULL elsewhere.
/// The subqueries keep each part's own order and limit. `{to}` is the window's end: `$4`, or the
/// current position, which one statement reads from the same snapshot as
/// the rest on both backends.
static SQL: LazyLock<String> = LazyLock::new(|| {
    let to = "COALESCE($4, (SELECT pos FROM stream_counter WHERE id = 1))";
    let none = "CAST(NULL AS BIGINT)";
    let no_extra = format!("{none}, {none}, {none}, {none}, {none}");
    let rooms = rooms::sync_rooms_select("$1", &format!("COALESCE($9, {to})"), to, "$10");
    let unread = unread::counts_select("$1", to);
    format!(
        "\
SELECT * FROM (SELECT CAST(0 AS BIGINT) AS kind, stream_pos AS n, sender AS a, event_type AS b, content AS c, \
  {no_extra} \
  FROM to_device WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= {to} \
  AND (created_ts IS NULL OR created_ts >= $6) ORDER BY stream_pos LIMIT $5) td \
UNION ALL \
SELECT * FROM (SELECT CAST(1 AS BIGINT) AS kind, stream_pos AS n, room_id AS a, data_type AS b, content AS c, \
  {no_extra} \
  FROM account_data WHERE user_id = $1 AND stream_pos > $7 AND stream_pos <= {to}) ad \
UNION ALL \
SELECT CAST(2 AS BIGINT), COUNT(*), algorithm, NULL, NULL, {no_extra} FROM one_time_keys \
  WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm \
UNION ALL \
SELECT CAST(3 AS BIGINT), CAST(0 AS BIGINT), algorithm, NULL, NULL, {no_extra} FROM fallback_keys \
  WHERE user_id = $1 AND device_id = $2 AND used = 0 \
UNION ALL \
SELECT DISTINCT CAST(4 AS BIGINT), CAST(0 AS BIGINT), user_id, NULL, NULL, {no_extra} FROM device_list_changes \
  WHERE stream_pos > COALESCE($8, {to}) AND stream_pos <= {to} \
UNION ALL \
SELECT CAST(5 AS BIGINT), {to}, '', NULL, NULL, {no_extra} \
UNION ALL \
SELECT CAST(6 AS BIGINT), x.* FROM ({rooms}) x \
UNION ALL \
SELECT CAST(7 + y.k AS BIGINT), y.n, y.room_id, y.thread_id, NULL, y.h, {none}, {none}, {none}, {none} FROM ({unread}) y \
UNION ALL \
SELECT CAST(9 AS BIGINT), CAST(0 AS BIGINT), '', NULL, content, {no_extra} FROM account_data \
  WHERE user_id = $1 AND room_id = '' AND data_type = $11"
    )
});

pub async fn read(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
    w: &Window,
) -> Result<DeviceNews, sqlx::Error> {
    let rows = sqlx::query(&SQL)
        .bind(user_id)
        .bind(device_id)
        .bind(w.to_device_after)
        .bind(w.to)
        .bind(w.to_device_limit)
        .bind(w.to_device_cutoff)
        .bind(w.data_after)
        .bind(w.device_lists_after)
        .bind(w.rooms_after)
        .bind(w.room_state_type)
        .bind(w.data_type)
        .fetch_all(&mut *c)
        .await?;
    let mut news = DeviceNews {
        one_time_key_counts: BTreeMap::from([("signed_curve25519".to_owned(), 0)]),
        ..DeviceNews::default()
    };
    let mut account_data = Vec::new();
    let mut counts = unread::Tally::default();
    for r in rows {
        let n: i64 = r.try_get(1)?;
        let a: String = r.try_get(2)?;
        match r.try_get::<i64, _>(0)? {
            TO_DEVICE => news.to_device.push((
                n,
                ToDeviceEvent {
                    sender: a,
                    event_type: r.try_get(3)?,
                    content: codec::json(&r, 4, "to_device.content")?,
                },
            )),
            ACCOUNT_DATA => {
                let content = codec::json(&r, 4, "account_data.content")?;
                account_data.push((n, (a, r.try_get(3)?, content)));
            }
            ONE_TIME_KEYS => {
                news.one_time_key_counts.insert(a, n);
            }
            FALLBACK_KEY => news.unused_fallback_types.push(a),
            DEVICE_LIST => news.device_list_changes.push(a),
            POSITION => news.to = n,
            ROOM => news.rooms.push(rooms::sync_room(&r, 1)?),
            DATA => news.data = Some(codec::json(&r, 4, "account_data.content")?),
            UNREAD | UNREAD_LATER => counts.add(
                user_id,
                r.try_get::<i64, _>(0)? - UNREAD,
                a,
                r.try_get(3)?,
                n,
                r.try_get(5)?,
            ),
            _ => {}
        }
    }
    // Ordered outside the union: an ORDER BY in a UNION ALL's subquery
    // fixes what LIMIT keeps, not the order rows come out in.
    news.to_device.sort_by_key(|(pos, _)| *pos);
    account_data.sort_by_key(|(pos, _)| *pos);
    news.account_data = account_data.into_iter().map(|(_, d)| d).collect();
    news.unused_fallback_types.sort_unstable();
    news.device_list_changes.sort_unstable();
    news.rooms = rooms::sorted_by_room(news.rooms);
    news.unread = unread::sorted(counts.finish(c).await?);
    Ok(news)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::tests::sqlite_store;
    use crate::store::{account_data, keys, to_device};

    const ME: &str = "@me:x";
    const DEV: &str = "DEV";

    /// Reads `w` in one statement and with the separate reads.
    async fn both(c: &mut AnyConnection, w: &Window) -> (DeviceNews, DeviceNews) {
        let one = read(c, ME, DEV, w).await.unwrap();
        let to = w.to.expect("a window with an end");
        let (one_time_key_counts, unused_fallback_types) =
            keys::device_key_state(c, ME, DEV).await.unwrap();
        let mut device_list_changes = match w.device_lists_after {
            Some(after) => keys::device_list_changes_between(c, after, to)
                .await
                .unwrap(),
            None => vec![],
        };
        device_list_changes.sort_unstable();
        let separate = DeviceNews {
            to_device: to_device::pending(
                c,
                ME,
                DEV,
                (w.to_device_after, to),
                w.to_device_limit,
                w.to_device_cutoff,
            )
            .await
            .unwrap(),
            account_data: account_data::changed_since(c, ME, w.data_after, to)
                .await
                .unwrap(),
            one_time_key_counts,
            unused_fallback_types,
            device_list_changes,
            to,
            rooms: rooms::rooms_for_sync(c, ME, w.rooms_after.unwrap_or(to), to, w.room_state_type)
                .await
                .unwrap(),
            unread: unread::sorted(unread::counts(c, ME, to).await.unwrap()),
            data: match w.data_type {
                Some(data_type) => account_data::get(c, ME, "", data_type).await.unwrap(),
                None => None,
            },
        };
        (one, separate)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_statement_reads_what_the_separate_reads_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        let window = |after, to, limit| Window {
            to_device_after: after,
            data_after: after,
            device_lists_after: Some(after),
            to: Some(to),
            to_device_limit: limit,
            to_device_cutoff: 1_000,
            rooms_after: Some(after),
            room_state_type: "m.room.retention",
            data_type: Some("m.direct"),
        };

        // Nothing stored yet: no messages or data, a zero key count.
        let mut c = store.read().await.unwrap();
        let (one, separate) = both(&mut c, &window(0, 100, 10)).await;
        assert_eq!(one, separate);
        assert_eq!(one.one_time_key_counts["signed_curve25519"], 0);
        drop(c);

        let mut tx = store.write().await.unwrap();
        for pos in 1..=6 {
            // The first was queued before the cutoff (expired), the fifth
            // is for another device.
            let (device, queued_at) = if pos == 5 {
                ("OTHER", 2_000)
            } else {
                (DEV, pos * 600)
            };
            let content = json!({ "n": pos }).to_string();
            let msg = to_device::Queued {
                user_id: ME,
                device_id: device,
                sender: "@you:x",
                event_type: "m.room_key",
                content: &content,
            };
            to_device::insert(&mut tx, pos * 10, &msg, queued_at)
                .await
                .unwrap();
        }
        account_data::put(&mut tx, ME, "", "m.direct", &json!({ "a": 1 }), 25)
            .await
            .unwrap();
        account_data::put(&mut tx, ME, "!r:x", "m.tag", &json!({ "b": 2 }), 15)
            .await
            .unwrap();
        account_data::put(&mut tx, "@you:x", "", "m.direct", &json!({}), 20)
            .await
            .unwrap();
        for (algorithm, id) in [
            ("signed_curve25519", "A"),
            ("signed_curve25519", "B"),
            ("x", "C"),
        ] {
            keys::insert_one_time_key(&mut tx, ME, DEV, algorithm, id, &json!({ "key": id }))
                .await
                .unwrap();
        }
        keys::insert_one_time_key(&mut tx, ME, "OTHER", "y", "D", &json!({}))
            .await
            .unwrap();
        keys::put_fallback_key(&mut tx, ME, DEV, "signed_curve25519", "F", &json!({}))
            .await
            .unwrap();
        // Rooms: one joined in the windows below, one left, one of another user's.
        rooms::set_membership(&mut tx, "!b:x", ME, "join", 15)
            .await
            .unwrap();
        rooms::set_membership(&mut tx, "!a:x", ME, "leave", 45)
            .await
            .unwrap();
        rooms::set_membership(&mut tx, "!c:x", "@you:x", "join", 16)
            .await
            .unwrap();
        // Unread counts: two threads of mine, one of another user's.
        for (user, thread, n) in [(ME, "main", 3), (ME, "$t", 1), ("@you:x", "main", 9)] {
            sqlx::query("INSERT INTO notification_counts VALUES ($1, '!b:x', $2, $3, 1)")
                .bind(user)
                .bind(thread)
                .bind(n as i64)
                .execute(tx.conn())
                .await
                .unwrap();
        }
        let mut changes = vec![];
        for user in ["@b:x", "@a:x", "@b:x"] {
            changes.push(
                keys::record_device_list_change(&mut tx, user)
                    .await
                    .unwrap(),
            );
        }
        tx.commit().await.unwrap();

        let mut c = store.read().await.unwrap();
        for w in [
            window(0, 100, 10),
            window(10, 100, 2),
            window(0, 35, 10),
            window(30, 60, 10),
        ] {
            let (one, separate) = both(&mut c, &w).await;
            assert_eq!(
                one, separate,
                "after {} up to {:?}",
                w.to_device_after, w.to
            );
        }
        let all = read(&mut c, ME, DEV, &window(0, 100, 10)).await.unwrap();
        let positions: Vec<i64> = all.to_device.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            positions,
            [20, 30, 40, 60],
            "expired and other devices' messages left out"
        );
        let types: Vec<&str> = all
            .account_data
            .iter()
            .map(|(_, t, _)| t.as_str())
            .collect();
        assert_eq!(types, ["m.tag", "m.direct"], "in stream order, mine only");
        assert_eq!(all.one_time_key_counts["signed_curve25519"], 2);
        assert_eq!(all.one_time_key_counts["x"], 1);
        assert!(!all.one_time_key_counts.contains_key("y"));
        assert_eq!(all.unused_fallback_types, ["signed_curve25519"]);
        assert_eq!(all.device_list_changes, ["@a:x", "@b:x"], "each once");
        let rooms: Vec<(&str, &str)> = all
            .rooms
            .iter()
            .map(|r| (r.room_id.as_str(), r.membership.membership.as_str()))
            .collect();
        assert_eq!(
            rooms,
            [("!a:x", "leave"), ("!b:x", "join")],
            "mine, in order"
        );
        let unread: Vec<(&str, i64)> = all
            .unread
            .iter()
            .map(|u| (u.thread_id.as_str(), u.notifications))
            .collect();
        assert_eq!(unread, [("$t", 1), ("main", 3)], "mine, by thread");
        assert_eq!(all.data, Some(json!({ "a": 1 })), "mine, whenever written");
        let no_data = Window {
            data_type: None,
            ..window(0, 100, 10)
        };
        assert_eq!(read(&mut c, ME, DEV, &no_data).await.unwrap().data, None);
        let after_first = Window {
            device_lists_after: Some(changes[0]),
            ..window(0, changes[1], 10)
        };
        let (one, separate) = both(&mut c, &after_first).await;
        assert_eq!(
            (&one.device_list_changes, &one),
            (&vec!["@a:x".to_owned()], &separate)
        );
        let initial = Window {
            device_lists_after: None,
            ..window(0, 100, 10)
        };
        assert!(read(&mut c, ME, DEV, &initial)
            .await
            .unwrap()
            .device_list_changes
            .is_empty());
        let limited = read(&mut c, ME, DEV, &window(0, 100, 2)).await.unwrap();
        let positions: Vec<i64> = limited.to_device.iter().map(|(p, _)| *p).collect();
        assert_eq!(positions, [20, 30], "the oldest within the limit");

        // Without an end: the current position, read with the rest.
        let current = crate::store::current_pos(&mut c).await.unwrap();
        let (after, limit) = (changes[0], 10);
        let open_ended = Window {
            to: None,
            ..window(after, 0, limit)
        };
        let now = read(&mut c, ME, DEV, &open_ended).await.unwrap();
        let at_current = read(&mut c, ME, DEV, &window(after, current, limit)).await;
        assert_eq!(now.to, current);
        assert_eq!(now, at_current.unwrap());
        assert_eq!(now.device_list_changes, ["@a:x", "@b:x"]);
    }
}
