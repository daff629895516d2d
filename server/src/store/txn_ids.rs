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

/// Records `result` for the transaction id; a unique violation when it is
/// recorded already.
pub async fn put(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    kind: &str,
    txn_id: &str,
    result: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    insert(tx, [user_id, device_id, kind, txn_id, result], now, "").await?;
    Ok(())
}

/// Remembers `txn_id` for the sending device; false when it was already
/// used, in which case the request must not be carried out again.
pub async fn claim(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    kind: &str,
    txn_id: &str,
    result: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let ignore = " ON CONFLICT (user_id, device_id, kind, txn_id) DO NOTHING";
    let inserted = insert(tx, [user_id, device_id, kind, txn_id, result], now, ignore).await?;
    Ok(inserted == 1)
}

/// (user, device, kind, transaction id, result) and the time; returns the
/// rows inserted.
async fn insert(
    tx: &mut WriteTx,
    columns: [&str; 5],
    now: i64,
    on_conflict: &str,
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "INSERT INTO txn_ids (user_id, device_id, kind, txn_id, result, created_ts) \
         VALUES ($1, $2, $3, $4, $5, $6){on_conflict}"
    );
    let mut query = sqlx::query(&sql);
    for column in columns {
        query = query.bind(column);
    }
    Ok(query.bind(now).execute(tx.conn()).await?.rows_affected())
}
