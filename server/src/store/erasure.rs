//! The writes of an erasure (see `service::erasure` for the rules): rows
//! deleted outright, and the rows of shared rooms rewritten to name a
//! pseudonymous id instead of the person.

use sqlx::{AnyConnection, Row};

use super::WriteTx;

/// Tables whose rows belong to one user and go entirely, as
/// (table, filter on `$1` = the user id, receipt count name).
const OWN_ROWS: &[(&str, &str, &str)] = &[
    ("access_tokens", "user_id = $1", "deleted_access_tokens"),
    ("devices", "user_id = $1", "deleted_devices"),
    ("device_keys", "user_id = $1", "deleted_device_keys"),
    ("one_time_keys", "user_id = $1", "deleted_one_time_keys"),
    ("fallback_keys", "user_id = $1", "deleted_fallback_keys"),
    (
        "cross_signing_keys",
        "user_id = $1",
        "deleted_cross_signing_keys",
    ),
    (
        "key_signatures",
        "target_user = $1 OR signer_user = $1",
        "deleted_key_signatures",
    ),
    (
        "device_list_changes",
        "user_id = $1",
        "deleted_device_list_changes",
    ),
    (
        "to_device",
        "user_id = $1 OR sender = $1",
        "deleted_to_device",
    ),
    (
        "sliding_sync_positions",
        "user_id = $1",
        "deleted_sliding_sync_positions",
    ),
    (
        "sliding_sync_rooms",
        "user_id = $1",
        "deleted_sliding_sync_rooms",
    ),
    ("oauth_sessions", "user_id = $1", "deleted_oauth_sessions"),
    ("oauth_grants", "user_id = $1", "deleted_oauth_grants"),
    (
        "oauth_account_actions",
        "user_id = $1",
        "deleted_oauth_account_actions",
    ),
    (
        "oauth_device_grants",
        "user_id = $1",
        "deleted_oauth_device_grants",
    ),
    ("backup_keys", "user_id = $1", "deleted_backup_keys"),
    ("backup_versions", "user_id = $1", "deleted_backup_versions"),
    ("account_data", "user_id = $1", "deleted_account_data"),
    ("filters", "user_id = $1", "deleted_filters"),
    ("receipts", "user_id = $1", "deleted_receipts"),
    ("typing", "user_id = $1", "deleted_typing"),
    ("txn_ids", "user_id = $1", "deleted_txn_ids"),
    ("uia_sessions", "user_id = $1", "deleted_uia_sessions"),
    ("pushers", "user_id = $1", "deleted_pushers"),
    ("notifications", "user_id = $1", "deleted_notifications"),
    (
        "notification_counts",
        "user_id = $1",
        "deleted_notification_counts",
    ),
    ("push_outbox", "user_id = $1", "deleted_push_outbox"),
    ("ldap_accounts", "user_id = $1", "deleted_ldap_accounts"),
    ("identity_links", "user_id = $1", "deleted_identity_links"),
    ("sso_devices", "user_id = $1", "deleted_sso_devices"),
    ("login_tokens", "user_id = $1", "deleted_login_tokens"),
    ("staff_roles", "user_id = $1", "deleted_staff_roles"),
    (
        "console_sessions",
        "user_id = $1",
        "deleted_console_sessions",
    ),
    (
        "directory_attributes",
        "user_id = $1",
        "deleted_directory_attributes",
    ),
];

/// How many rows [`delete_own_rows`] would delete, per receipt count name.
pub async fn count_own_rows(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<(&'static str, u64)>, sqlx::Error> {
    let mut counts = Vec::with_capacity(OWN_ROWS.len());
    for (table, filter, name) in OWN_ROWS {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE {filter}"))
            .bind(user_id)
            .fetch_one(&mut *c)
            .await?;
        counts.push((*name, n.max(0) as u64));
    }
    Ok(counts)
}

/// Deletes every row that only concerns `user_id`; returns
/// (receipt count name, rows deleted) per table.
pub async fn delete_own_rows(
    tx: &mut WriteTx,
    user_id: &str,
) -> Result<Vec<(&'static str, u64)>, sqlx::Error> {
    tx.ends_sessions();
    let mut counts = Vec::with_capacity(OWN_ROWS.len());
    for (table, filter, name) in OWN_ROWS {
        let r = sqlx::query(&format!("DELETE FROM {table} WHERE {filter}"))
            .bind(user_id)
            .execute(tx.conn())
            .await?;
        counts.push((*name, r.rows_affected()));
    }
    Ok(counts)
}

pub async fn delete_event(tx: &mut WriteTx, event_id: &str) -> Result<(), sqlx::Error> {
    super::rooms::event_changed(tx, event_id).await?;
    sqlx::query("DELETE FROM event_media WHERE event_id = $1")
        .bind(event_id)
        .execute(tx.conn())
        .await?;
    sqlx::query("DELETE FROM events WHERE event_id = $1")
        .bind(event_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// The rewritten form of an event row.
pub struct Rewrite<'a> {
    pub event_id: &'a str,
    pub sender: &'a str,
    /// Cleared for events the person sent: their device id names them too.
    pub clear_device: bool,
    pub state_key: Option<&'a str>,
    pub content: &'a str,
    pub prev_content: Option<&'a str>,
}

pub async fn rewrite_event(tx: &mut WriteTx, rw: &Rewrite<'_>) -> Result<(), sqlx::Error> {
    super::rooms::event_changed(tx, rw.event_id).await?;
    let sql = if rw.clear_device {
        "UPDATE events SET sender = $1, state_key = $2, content = $3, prev_content = $4, \
         sender_device = NULL, txn_id = NULL WHERE event_id = $5"
    } else {
        "UPDATE events SET sender = $1, state_key = $2, content = $3, prev_content = $4 WHERE event_id = $5"
    };
    sqlx::query(sql)
        .bind(rw.sender)
        .bind(rw.state_key)
        .bind(rw.content)
        .bind(rw.prev_content)
        .bind(rw.event_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Re-keys a current-state entry after its event's state key was rewritten.
pub async fn rekey_current_state(
    tx: &mut WriteTx,
    event_id: &str,
    state_key: &str,
) -> Result<(), sqlx::Error> {
    super::rooms::event_changed(tx, event_id).await?;
    sqlx::query("UPDATE current_state SET state_key = $1 WHERE event_id = $2")
        .bind(state_key)
        .bind(event_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn rename_membership(
    tx: &mut WriteTx,
    room_id: &str,
    from: &str,
    to: &str,
) -> Result<u64, sqlx::Error> {
    super::rooms::state_changed(tx, room_id).await?;
    let r = sqlx::query("UPDATE memberships SET user_id = $1 WHERE room_id = $2 AND user_id = $3")
        .bind(to)
        .bind(room_id)
        .bind(from)
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected())
}

/// (room id, alias or empty) of the rooms and aliases `user_id` created.
pub async fn created_rooms(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT room_id FROM rooms WHERE creator = $1 ORDER BY room_id")
        .bind(user_id)
        .fetch_all(c)
        .await
}

pub async fn created_aliases(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query("SELECT alias, room_id FROM room_aliases WHERE creator = $1 ORDER BY alias")
        .bind(user_id)
        .fetch_all(c)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

pub async fn set_room_creator(
    tx: &mut WriteTx,
    room_id: &str,
    to: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE rooms SET creator = $1 WHERE room_id = $2")
        .bind(to)
        .bind(room_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn set_alias_creator(tx: &mut WriteTx, alias: &str, to: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE room_aliases SET creator = $1 WHERE alias = $2")
        .bind(to)
        .bind(alias)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Other people's JSON that may mention a user (their direct-chat lists,
/// ignore lists, sync filters, queued device messages), as
/// (table, key columns, JSON column).
pub const MENTIONS: &[(&str, &[&str], &str)] = &[
    (
        "account_data",
        &["user_id", "room_id", "data_type"],
        "content",
    ),
    ("filters", &["user_id", "filter_id"], "filter_json"),
    (
        "to_device",
        &["user_id", "sender", "device_id", "CAST(stream_pos AS TEXT)"],
        "content",
    ),
];

/// Rows of `table` whose JSON column contains `user_id`: (key values, JSON).
pub async fn mentions(
    c: &mut AnyConnection,
    table: &str,
    keys: &[&str],
    column: &str,
    user_id: &str,
) -> Result<Vec<(Vec<String>, String)>, sqlx::Error> {
    let sql = format!(
        "SELECT {column}, {} FROM {table} WHERE {column} LIKE $1",
        keys.join(", ")
    );
    let rows = sqlx::query(&sql)
        .bind(super::subject::like_pattern(user_id))
        .fetch_all(c)
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let json: String = r.try_get(0)?;
        if !json.contains(user_id) {
            continue;
        }
        let mut key = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            key.push(r.try_get::<String, _>(i + 1)?);
        }
        out.push((key, json));
    }
    Ok(out)
}

pub async fn set_mention(
    tx: &mut WriteTx,
    table: &str,
    keys: &[&str],
    column: &str,
    key: &[String],
    json: &str,
) -> Result<(), sqlx::Error> {
    let filter: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} = ${}", i + 2))
        .collect();
    let sql = format!(
        "UPDATE {table} SET {column} = $1 WHERE {}",
        filter.join(" AND ")
    );
    let mut query = sqlx::query(&sql).bind(json);
    for k in key {
        query = query.bind(k);
    }
    query.execute(tx.conn()).await?;
    Ok(())
}

/// Released holds and holds set or released by the person keep the
/// history of the hold but name its pseudonymous id. Active holds on the
/// person are left alone: they are what keeps the held data.
pub async fn pseudonymize_holds(
    tx: &mut WriteTx,
    user_id: &str,
    to: &str,
) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for sql in [
        "UPDATE legal_holds SET target = $1 WHERE scope = 'user' AND target = $2 AND released_ts IS NOT NULL",
        "UPDATE legal_holds SET set_by = $1 WHERE set_by = $2",
        "UPDATE legal_holds SET released_by = $1 WHERE released_by = $2",
    ] {
        n += sqlx::query(sql)
            .bind(to)
            .bind(user_id)
            .execute(tx.conn())
            .await?
            .rows_affected();
    }
    Ok(n)
}

pub async fn delete_user(tx: &mut WriteTx, user_id: &str) -> Result<u64, sqlx::Error> {
    tx.ends_sessions();
    Ok(sqlx::query("DELETE FROM users WHERE user_id = $1")
        .bind(user_id)
        .execute(tx.conn())
        .await?
        .rows_affected())
}
