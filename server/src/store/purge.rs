//! The queries of the retention purge (`service::purge`): finding and
//! deleting what has expired, leaving out what legal holds cover.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use super::{params, WriteTx};

/// `AND <column> NOT IN ($first, …)` for `n` values, or nothing.
fn not_in(column: &str, first: usize, n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    format!(" AND {column} NOT IN ({})", params::list(first, n))
}

pub async fn all_rooms(c: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT room_id FROM rooms ORDER BY room_id")
        .fetch_all(c)
        .await
}

const EXPIRED: &str = "room_id = $1 AND state_key IS NULL AND origin_server_ts < $2";

/// Expired message events of a room (after a purge: those holds kept).
pub async fn count_expired_events(
    c: &mut AnyConnection,
    room_id: &str,
    cutoff: i64,
) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM events WHERE {EXPIRED}"))
        .bind(room_id)
        .bind(cutoff)
        .fetch_one(c)
        .await?;
    Ok(n as u64)
}

/// Deletes up to `limit` expired message events of a room, except those
/// of `held_senders`. Their `event_media` links stay, so the media step can
/// see which files lost their last event.
pub async fn delete_expired_events(
    tx: &mut WriteTx,
    room_id: &str,
    cutoff: i64,
    held_senders: &[&str],
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let n = held_senders.len();
    let sql = format!(
        "DELETE FROM events WHERE event_id IN (SELECT event_id FROM events WHERE {EXPIRED}{} LIMIT ${})",
        not_in("sender", 3, n),
        3 + n
    );
    let mut q = sqlx::query(&sql).bind(room_id).bind(cutoff);
    for s in held_senders {
        q = q.bind(*s);
    }
    let deleted = q.bind(limit).execute(tx.conn()).await?.rows_affected();
    if deleted > 0 {
        super::rooms::state_changed(tx, room_id).await?;
    }
    Ok(deleted)
}

fn media_rows(rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    rows.into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Uploads older than `cutoff`, as `(media_id, uploader, size)`.
pub async fn media_older_than(
    c: &mut AnyConnection,
    cutoff: i64,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    media_rows(
        sqlx::query("SELECT media_id, uploader, size FROM media WHERE created_ts < $1")
            .bind(cutoff)
            .fetch_all(c)
            .await?,
    )
}

/// Uploads that were attached to events, none of which still exists.
pub async fn media_with_only_purged_events(
    c: &mut AnyConnection,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    media_rows(
        sqlx::query(
            "SELECT m.media_id, m.uploader, m.size FROM media m \
             WHERE EXISTS (SELECT 1 FROM event_media l WHERE l.media_id = m.media_id) \
             AND NOT EXISTS (SELECT 1 FROM event_media l JOIN events e ON e.event_id = l.event_id \
                             WHERE l.media_id = m.media_id)",
        )
        .fetch_all(c)
        .await?,
    )
}

/// Gives rows queued before to-device messages were dated the current
/// time, so they expire one lifetime from now rather than at once.
pub async fn date_to_device(tx: &mut WriteTx, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE to_device SET created_ts = $1 WHERE created_ts IS NULL")
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Deletes to-device messages queued before `cutoff`, except those to or
/// from `held_users`.
pub async fn delete_expired_to_device(
    tx: &mut WriteTx,
    cutoff: i64,
    held_users: &[&str],
) -> Result<u64, sqlx::Error> {
    let n = held_users.len();
    let sql = format!(
        "DELETE FROM to_device WHERE created_ts < $1{}{}",
        not_in("user_id", 2, n),
        not_in("sender", 2 + n, n)
    );
    let mut q = sqlx::query(&sql).bind(cutoff);
    for _ in 0..2 {
        for u in held_users {
            q = q.bind(*u);
        }
    }
    Ok(q.execute(tx.conn()).await?.rows_affected())
}

/// Like [`date_to_device`], for backed-up keys stored before dating began.
pub async fn date_backup_keys(tx: &mut WriteTx, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE backup_keys SET updated_ts = $1 WHERE updated_ts IS NULL")
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Deletes backed-up keys last updated before `cutoff` (except held users')
/// and bumps the etag of each backup that lost keys, so clients notice.
pub async fn delete_expired_backup_keys(
    tx: &mut WriteTx,
    cutoff: i64,
    held_users: &[&str],
) -> Result<u64, sqlx::Error> {
    let filter = format!("updated_ts < $1{}", not_in("user_id", 2, held_users.len()));
    let select = format!("SELECT DISTINCT user_id, version FROM backup_keys WHERE {filter}");
    let mut q = sqlx::query(&select).bind(cutoff);
    for u in held_users {
        q = q.bind(*u);
    }
    let versions: Vec<(String, i64)> = q
        .fetch_all(tx.conn())
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let delete = format!("DELETE FROM backup_keys WHERE {filter}");
    let mut q = sqlx::query(&delete).bind(cutoff);
    for u in held_users {
        q = q.bind(*u);
    }
    let deleted = q.execute(tx.conn()).await?.rows_affected();
    for (user_id, version) in versions {
        super::backup::bump_etag(tx, &user_id, version).await?;
    }
    Ok(deleted)
}

/// Devices last seen (or, never seen, created) before `cutoff`, by user.
pub async fn inactive_devices(
    c: &mut AnyConnection,
    cutoff: i64,
) -> Result<BTreeMap<String, Vec<String>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, device_id FROM devices WHERE COALESCE(last_seen_ts, created_ts) < $1 \
         ORDER BY user_id, device_id",
    )
    .bind(cutoff)
    .fetch_all(c)
    .await?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        out.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
    }
    Ok(out)
}
