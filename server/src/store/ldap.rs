//! Which accounts belong to the LDAP directory.

use sqlx::AnyConnection;

use super::WriteTx;

pub async fn is_ldap_account(c: &mut AnyConnection, user_id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM ldap_accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(c)
            .await?;
    Ok(found.is_some())
}

pub async fn mark(tx: &mut WriteTx, user_id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO ldap_accounts (user_id, created_ts) VALUES ($1, $2)")
        .bind(user_id)
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// The directory's accounts that are not deactivated, by user id.
pub async fn active_accounts(c: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT l.user_id FROM ldap_accounts l JOIN users u ON u.user_id = l.user_id \
         WHERE u.deactivated = 0 ORDER BY l.user_id",
    )
    .fetch_all(c)
    .await
}
