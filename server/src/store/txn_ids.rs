//! Transaction ids: what a client's retried request (same user, device,
//! kind and `txn_id`) was answered the first time, so it is not done twice.

use sqlx::AnyConnection;

use super::WriteTx;

/// The result recorded for `(user, device, kind, txn_id)`, if any.
pub async fn result(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
    kind: &str,
    txn_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT result FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND kind = $3 AND txn_id = $4")
        .bind(user_id)
        .bind(device_id)
        .bind(kind)
        .bind(txn_id)
        .fetch_optional(c)
        .await
}

pub async fn put(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    kind: &str,
    txn_id: &str,
    result: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO txn_ids (user_id, device_id, kind, txn_id, result, created_ts) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(user_id)
        .bind(device_id)
        .bind(kind)
        .bind(txn_id)
        .bind(result)
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
}
