//! Tombstones of erased accounts, by the audit pseudonym of their user id:
//! the id can never be registered again, yet no row names the person.

use sqlx::AnyConnection;

use super::WriteTx;

pub async fn insert(tx: &mut WriteTx, pseudonym: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO erased_users (pseudonym, erased_ts) VALUES ($1, $2) ON CONFLICT (pseudonym) DO NOTHING",
    )
    .bind(pseudonym)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn is_erased(c: &mut AnyConnection, pseudonym: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM erased_users WHERE pseudonym = $1")
        .bind(pseudonym)
        .fetch_one(c)
        .await?;
    Ok(n > 0)
}

pub async fn count(c: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM erased_users")
        .fetch_one(c)
        .await
}
