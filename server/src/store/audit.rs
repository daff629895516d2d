//! Audit log rows: entries (append-only) and signed checkpoints.

use cloister_audit::{AuditEntry, NewEntry};
use sqlx::{AnyConnection, Row};

use super::{Backend, WriteTx, Writer};

/// Appends `entry` with the next sequence number. On PostgreSQL a table
/// lock orders concurrent appenders (also across server nodes), so sequence
/// numbers never collide or skip; SQLite writers are already serialized.
pub async fn append(tx: &mut WriteTx, entry: NewEntry) -> Result<AuditEntry, sqlx::Error> {
    if tx.backend() == Backend::Postgres {
        sqlx::query("LOCK TABLE audit_entries IN EXCLUSIVE MODE")
            .execute(tx.conn())
            .await?;
    }
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), -1) + 1 FROM audit_entries")
        .fetch_one(tx.conn())
        .await?;
    let entry = entry.with_seq(next as u64);
    let json = String::from_utf8(entry.canonical_json()).expect("canonical JSON is UTF-8");
    sqlx::query("INSERT INTO audit_entries (seq, entry) VALUES ($1, $2)")
        .bind(next)
        .bind(json)
        .execute(tx.conn())
        .await?;
    Ok(entry)
}

/// Every entry in order. A row that no longer parses is an error: the log
/// must not silently skip what it cannot read.
pub async fn entries(c: &mut AnyConnection) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows = sqlx::query("SELECT entry FROM audit_entries ORDER BY seq")
        .fetch_all(c)
        .await?;
    rows.into_iter()
        .map(|r| super::codec::json(&r, 0, "audit_entries.entry"))
        .collect()
}

/// Up to `limit` entries before position `before`, newest first: a page of
/// the log for browsing.
pub async fn entries_before(
    c: &mut AnyConnection,
    before: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT entry FROM audit_entries WHERE seq < $1 ORDER BY seq DESC LIMIT $2")
            .bind(before)
            .bind(limit)
            .fetch_all(c)
            .await?;
    rows.into_iter()
        .map(|r| super::codec::json(&r, 0, "audit_entries.entry"))
        .collect()
}

pub async fn size(c: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries")
        .fetch_one(c)
        .await
}

pub async fn put_checkpoint(
    w: &mut impl Writer,
    tree_size: i64,
    note: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_checkpoints (tree_size, note, created_ts) VALUES ($1, $2, $3)")
        .bind(tree_size)
        .bind(note)
        .bind(now)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// Checkpoint notes, oldest first.
pub async fn checkpoints(c: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT note FROM audit_checkpoints ORDER BY tree_size, created_ts")
        .fetch_all(c)
        .await
}

/// (tree size, time) of the newest checkpoint.
pub async fn latest_checkpoint(c: &mut AnyConnection) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query("SELECT tree_size, created_ts FROM audit_checkpoints ORDER BY tree_size DESC, created_ts DESC LIMIT 1")
        .fetch_optional(c)
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}
