//! End-to-end encryption key material: device keys, one-time and fallback
//! keys, cross-signing keys and their signatures, and the device-list change
//! stream.

use sqlx::AnyConnection;

use super::WriteTx;

/// Records that `user_id`'s devices or cross-signing keys changed, at a new
/// stream position; `/sync` reports it in `device_lists.changed`.
pub async fn record_device_list_change(
    tx: &mut WriteTx,
    user_id: &str,
) -> Result<i64, sqlx::Error> {
    let pos = tx.next_pos().await?;
    sqlx::query("INSERT INTO device_list_changes (stream_pos, user_id) VALUES ($1, $2)")
        .bind(pos)
        .bind(user_id)
        .execute(tx.conn())
        .await?;
    Ok(pos)
}

/// Users among `candidates` whose device lists changed in `(from, to]`.
pub async fn device_list_changes_between(
    c: &mut AnyConnection,
    from: i64,
    to: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT user_id FROM device_list_changes WHERE stream_pos > $1 AND stream_pos <= $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(c)
    .await
}
