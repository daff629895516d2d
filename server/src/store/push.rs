//! Pushers, the evaluator's cursor over the event stream, per-user
//! notifications and the outbox of pushes to gateways.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{codec, params, unread, WriteTx, Writer};

#[derive(Debug, Clone)]
pub struct Pusher {
    pub user_id: String,
    pub device_id: String,
    pub app_id: String,
    pub pushkey: String,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    /// `data` as the client gave it, `url` included.
    pub data: Value,
    pub pushkey_ts: i64,
}

const PUSHER_COLUMNS: &str = "user_id, device_id, app_id, pushkey, kind, app_display_name, \
     device_display_name, profile_tag, lang, data, pushkey_ts";

fn pusher_row(r: sqlx::any::AnyRow) -> Result<Pusher, sqlx::Error> {
    Ok(Pusher {
        user_id: r.try_get(0)?,
        device_id: r.try_get(1)?,
        app_id: r.try_get(2)?,
        pushkey: r.try_get(3)?,
        kind: r.try_get(4)?,
        app_display_name: r.try_get(5)?,
        device_display_name: r.try_get(6)?,
        profile_tag: r.try_get(7)?,
        lang: r.try_get(8)?,
        data: codec::json(&r, 9, "pushers.data")?,
        pushkey_ts: r.try_get(10)?,
    })
}

pub async fn pushers(c: &mut AnyConnection, user_id: &str) -> Result<Vec<Pusher>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = $1 ORDER BY app_id, pushkey"
    ))
    .bind(user_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(pusher_row)
    .collect()
}

pub async fn pusher(
    c: &mut AnyConnection,
    user_id: &str,
    app_id: &str,
    pushkey: &str,
) -> Result<Option<Pusher>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3"
    ))
    .bind(user_id)
    .bind(app_id)
    .bind(pushkey)
    .fetch_optional(c)
    .await?
    .map(pusher_row)
    .transpose()
}

/// The pushers of everyone joined to or invited into `room_id`.
pub async fn room_pushers(
    c: &mut AnyConnection,
    room_id: &str,
) -> Result<Vec<Pusher>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {} FROM pushers p JOIN memberships m ON m.user_id = p.user_id \
         WHERE m.room_id = $1 AND m.membership IN ('join', 'invite')",
        PUSHER_COLUMNS
            .split(", ")
            .map(|c| format!("p.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(room_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(pusher_row)
    .collect()
}

/// Adds the pusher, or updates the user's pusher with its app id and pushkey.
pub async fn put_pusher(tx: &mut WriteTx, p: &Pusher) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO pushers ({PUSHER_COLUMNS}, failing_since) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL) \
         ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET device_id = excluded.device_id, \
         kind = excluded.kind, app_display_name = excluded.app_display_name, \
         device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag, \
         lang = excluded.lang, data = excluded.data, pushkey_ts = excluded.pushkey_ts, \
         failing_since = NULL"
    ))
    .bind(&p.user_id)
    .bind(&p.device_id)
    .bind(&p.app_id)
    .bind(&p.pushkey)
    .bind(&p.kind)
    .bind(&p.app_display_name)
    .bind(&p.device_display_name)
    .bind(&p.profile_tag)
    .bind(&p.lang)
    .bind(p.data.to_string())
    .bind(p.pushkey_ts)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// How many pushers `user_id` has.
pub async fn count_pushers(c: &mut AnyConnection, user_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM pushers WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(c)
        .await
}

/// Deletes one user's pusher (`user_id` Some) or every user's pusher with
/// this app id and pushkey, optionally sparing one user's.
pub async fn delete_pushers(
    w: &mut impl Writer,
    app_id: &str,
    pushkey: &str,
    only_user: Option<&str>,
    except_user: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 \
         AND ($3 IS NULL OR user_id = $3) AND ($4 IS NULL OR user_id <> $4)",
    )
    .bind(app_id)
    .bind(pushkey)
    .bind(only_user)
    .bind(except_user)
    .execute(w.conn())
    .await?;
    Ok(r.rows_affected())
}

/// Records a failed (`Some(now)`, kept if already failing) or a successful
/// (`None`) delivery to a pusher.
pub async fn set_failing(
    w: &mut impl Writer,
    user_id: &str,
    app_id: &str,
    pushkey: &str,
    now: Option<i64>,
) -> Result<(), sqlx::Error> {
    let sql = match now {
        Some(_) => {
            "UPDATE pushers SET failing_since = COALESCE(failing_since, $4) \
                    WHERE user_id = $1 AND app_id = $2 AND pushkey = $3"
        }
        None => {
            "UPDATE pushers SET failing_since = $4 \
                 WHERE user_id = $1 AND app_id = $2 AND pushkey = $3 AND failing_since IS NOT NULL"
        }
    };
    sqlx::query(sql)
        .bind(user_id)
        .bind(app_id)
        .bind(pushkey)
        .bind(now)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// Deletes the pushers failing since before `cutoff`.
pub async fn delete_failing_pushers(w: &mut impl Writer, cutoff: i64) -> Result<u64, sqlx::Error> {
    let r =
        sqlx::query("DELETE FROM pushers WHERE failing_since IS NOT NULL AND failing_since < $1")
            .bind(cutoff)
            .execute(w.conn())
            .await?;
    Ok(r.rows_affected())
}

/// Whether committed events wait for evaluation (one primary-key probe).
pub async fn events_pending(c: &mut AnyConnection) -> Result<bool, sqlx::Error> {
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT stream_pos FROM events \
         WHERE stream_pos > (SELECT stream_pos FROM push_cursor WHERE id = 1) \
         ORDER BY stream_pos LIMIT 1",
    )
    .fetch_optional(c)
    .await?;
    Ok(next.is_some())
}

pub async fn cursor(c: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT stream_pos FROM push_cursor WHERE id = 1")
        .fetch_one(c)
        .await
}

/// Moves the cursor from `from` to `to`; false if another evaluator moved
/// it first (its results stand, the caller's transaction must roll back).
pub async fn advance_cursor(tx: &mut WriteTx, from: i64, to: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE push_cursor SET stream_pos = $2 WHERE id = 1 AND stream_pos = $1")
        .bind(from)
        .bind(to)
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// How many joined and invited members each of `room_ids` has: whom an
/// event there can notify, at most.
pub async fn member_counts(
    c: &mut AnyConnection,
    room_ids: &[&str],
) -> Result<HashMap<String, u64>, sqlx::Error> {
    let mut counts = HashMap::new();
    for rooms in room_ids.chunks(params::MAX) {
        let sql = format!(
            "SELECT room_id, COUNT(*) FROM memberships \
             WHERE room_id IN ({}) AND membership IN ('join', 'invite') GROUP BY room_id",
            params::list(1, rooms.len())
        );
        let mut query = sqlx::query(&sql);
        for room in rooms {
            query = query.bind(*room);
        }
        for r in query.fetch_all(&mut *c).await? {
            let count: i64 = r.try_get(1)?;
            counts.insert(r.try_get(0)?, count.max(0) as u64);
        }
    }
    Ok(counts)
}

/// A joined or invited member, as the push evaluator needs them.
pub struct PushMember {
    pub user_id: String,
    pub joined: bool,
    /// Where the current membership began: a member who joined after an
    /// event is not notified of it.
    pub since_pos: i64,
    /// The stored rule set; None: the defaults.
    pub rules: Option<Value>,
    pub display_name: Option<String>,
}

/// The room's joined and invited members with their rules and names.
pub async fn members_for_push(
    c: &mut AnyConnection,
    room_id: &str,
) -> Result<Vec<PushMember>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT m.user_id, m.membership, m.span_start_pos, a.content, u.displayname \
         FROM memberships m \
         LEFT JOIN account_data a ON a.user_id = m.user_id AND a.room_id = '' \
              AND a.data_type = 'm.push_rules' \
         LEFT JOIN users u ON u.user_id = m.user_id \
         WHERE m.room_id = $1 AND m.membership IN ('join', 'invite')",
    )
    .bind(room_id)
    .fetch_all(c)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(PushMember {
                user_id: r.try_get(0)?,
                joined: r.try_get::<String, _>(1)? == "join",
                since_pos: r.try_get(2)?,
                rules: codec::opt_json(&r, 3, "account_data.content")?,
                display_name: r.try_get(4)?,
            })
        })
        .collect()
}

pub struct NewNotification<'a> {
    pub user_id: &'a str,
    pub room_id: &'a str,
    pub event_id: &'a str,
    /// `main`, or the root of the thread the event is in.
    pub thread_id: &'a str,
    pub stream_pos: i64,
    pub highlight: bool,
    pub actions: &'a [Value],
}

/// Inserts notifications, many rows per statement (the evaluator holds the
/// write lock meanwhile, and a statement per row kept sends waiting), and
/// counts the unread ones.
pub async fn insert_notifications(
    tx: &mut WriteTx,
    notes: &[NewNotification<'_>],
    now: i64,
) -> Result<(), sqlx::Error> {
    const COLUMNS: usize = 8;
    let mut recorded = Vec::with_capacity(notes.len());
    for chunk in notes.chunks(params::rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO notifications (user_id, room_id, event_id, thread_id, stream_pos, highlight, actions, ts) \
             VALUES {} ON CONFLICT (user_id, stream_pos) DO NOTHING \
             RETURNING user_id, room_id, thread_id, stream_pos, highlight",
            params::rows(chunk.len(), COLUMNS)
        );
        let mut query = sqlx::query(&sql);
        for n in chunk {
            query = query
                .bind(n.user_id)
                .bind(n.room_id)
                .bind(n.event_id)
                .bind(n.thread_id)
                .bind(n.stream_pos)
                .bind(codec::flag_param(n.highlight))
                .bind(Value::from(n.actions.to_vec()).to_string())
                .bind(now);
        }
        for r in query.fetch_all(tx.conn()).await? {
            recorded.push(unread::Recorded {
                user_id: r.try_get(0)?,
                room_id: r.try_get(1)?,
                thread_id: r.try_get(2)?,
                stream_pos: r.try_get(3)?,
                highlight: codec::flag(&r, 4)?,
            });
        }
    }
    // Only the rows this call inserted: a notification already recorded
    // is already counted.
    unread::add(tx, &recorded).await
}

/// `notifications n` joined with how far the user (`$1`) has read: `u.pos`
/// for the unthreaded `m.read`/`m.read.private` receipts, which reach every
/// thread, and `t.pos` for those of the notification's own thread (`main`
/// or a root). A notification is unread when it is past both: see
/// [`UNREAD`].
const WITH_READ_POS: &str = "notifications n \
     LEFT JOIN (SELECT r.room_id, MAX(e.stream_pos) AS pos FROM receipts r \
       JOIN events e ON e.event_id = r.event_id \
       WHERE r.user_id = $1 AND r.receipt_type IN ('m.read', 'm.read.private') \
       AND r.thread_id = '' GROUP BY r.room_id) u ON u.room_id = n.room_id \
     LEFT JOIN (SELECT r.room_id, r.thread_id, MAX(e.stream_pos) AS pos FROM receipts r \
       JOIN events e ON e.event_id = r.event_id \
       WHERE r.user_id = $1 AND r.receipt_type IN ('m.read', 'm.read.private') \
       AND r.thread_id <> '' GROUP BY r.room_id, r.thread_id) t \
       ON t.room_id = n.room_id AND t.thread_id = n.thread_id";

/// The condition of an unread notification, over [`WITH_READ_POS`].
const UNREAD: &str = "n.stream_pos > COALESCE(u.pos, -1) AND n.stream_pos > COALESCE(t.pos, -1)";

pub use super::unread::ThreadUnread;

/// The user's unread notifications in all rooms: the badge a push carries.
pub async fn total_unread(c: &mut AnyConnection, user_id: &str) -> Result<i64, sqlx::Error> {
    unread::total(c, user_id).await
}

pub struct NotificationRow {
    pub room_id: String,
    pub event_id: String,
    pub stream_pos: i64,
    pub highlight: bool,
    pub actions: Value,
    pub ts: i64,
    pub read: bool,
}

/// The user's notifications before stream position `before`, newest first.
pub async fn notifications(
    c: &mut AnyConnection,
    user_id: &str,
    before: i64,
    limit: i64,
    only_highlight: bool,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT n.room_id, n.event_id, n.stream_pos, n.highlight, n.actions, n.ts, \
           CAST(CASE WHEN {UNREAD} THEN 0 ELSE 1 END AS BIGINT) \
         FROM {WITH_READ_POS} \
         WHERE n.user_id = $1 AND n.stream_pos < $2 AND ($3 = 0 OR n.highlight <> 0) \
         ORDER BY n.stream_pos DESC LIMIT $4"
    ))
    .bind(user_id)
    .bind(before)
    .bind(codec::flag_param(only_highlight))
    .bind(limit)
    .fetch_all(c)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(NotificationRow {
                room_id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                stream_pos: r.try_get(2)?,
                highlight: codec::flag(&r, 3)?,
                actions: codec::json(&r, 4, "notifications.actions")?,
                ts: r.try_get(5)?,
                read: codec::flag(&r, 6)?,
            })
        })
        .collect()
}

/// Deletes notifications recorded before `cutoff`, and counts the unread
/// ones of the rooms they were in again.
pub async fn delete_old_notifications(tx: &mut WriteTx, cutoff: i64) -> Result<u64, sqlx::Error> {
    let gone: Vec<(String, String)> =
        sqlx::query_as("DELETE FROM notifications WHERE ts < $1 RETURNING user_id, room_id")
            .bind(cutoff)
            .fetch_all(tx.conn())
            .await?;
    let rooms: std::collections::BTreeSet<&(String, String)> = gone.iter().collect();
    for (user_id, room_id) in rooms {
        unread::recount(tx, user_id, room_id).await?;
    }
    Ok(gone.len() as u64)
}

/// One push waiting for a gateway.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: String,
    pub user_id: String,
    pub app_id: String,
    pub pushkey: String,
    pub event_id: String,
    pub room_id: String,
    pub unread: i64,
    pub prio: String,
    pub tweaks: Value,
    pub attempts: i64,
    pub created_ts: i64,
}

pub async fn enqueue(tx: &mut WriteTx, row: &OutboxRow, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO push_outbox (id, user_id, app_id, pushkey, event_id, room_id, unread, prio, \
         tweaks, attempts, created_ts, next_attempt_ts, lease_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10, 0)",
    )
    .bind(&row.id)
    .bind(&row.user_id)
    .bind(&row.app_id)
    .bind(&row.pushkey)
    .bind(&row.event_id)
    .bind(&row.room_id)
    .bind(row.unread)
    .bind(&row.prio)
    .bind(row.tweaks.to_string())
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Whether any row is due: a read, so an idle sender does not take
/// SQLite's write lock every time it looks.
pub async fn any_due(c: &mut AnyConnection, now: i64) -> Result<bool, sqlx::Error> {
    let due: Option<String> = sqlx::query_scalar(
        "SELECT id FROM push_outbox WHERE next_attempt_ts <= $1 AND lease_until <= $1 LIMIT 1",
    )
    .bind(now)
    .fetch_optional(c)
    .await?;
    Ok(due.is_some())
}

/// Claims up to `limit` due rows until `lease_until`. The lease condition
/// is repeated outside the subquery: on PostgreSQL a concurrent claimer
/// that waited for the row re-checks it and skips rows just claimed.
pub async fn claim(
    w: &mut impl Writer,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE push_outbox SET lease_until = $2, attempts = attempts + 1 \
         WHERE lease_until <= $1 AND next_attempt_ts <= $1 AND id IN ( \
           SELECT id FROM push_outbox WHERE next_attempt_ts <= $1 AND lease_until <= $1 \
           ORDER BY next_attempt_ts LIMIT $3) \
         RETURNING id, user_id, app_id, pushkey, event_id, room_id, unread, prio, tweaks, \
           attempts, created_ts",
    )
    .bind(now)
    .bind(lease_until)
    .bind(limit)
    .fetch_all(w.conn())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(OutboxRow {
                id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                app_id: r.try_get(2)?,
                pushkey: r.try_get(3)?,
                event_id: r.try_get(4)?,
                room_id: r.try_get(5)?,
                unread: r.try_get(6)?,
                prio: r.try_get(7)?,
                tweaks: codec::json(&r, 8, "push_outbox.tweaks")?,
                attempts: r.try_get(9)?,
                created_ts: r.try_get(10)?,
            })
        })
        .collect()
}

pub async fn finish(w: &mut impl Writer, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM push_outbox WHERE id = $1")
        .bind(id)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// Releases the row for another attempt at `next_attempt_ts`.
pub async fn retry_at(w: &mut impl Writer, id: &str, next: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE push_outbox SET next_attempt_ts = $2, lease_until = 0 WHERE id = $1")
        .bind(id)
        .bind(next)
        .execute(w.conn())
        .await?;
    Ok(())
}
