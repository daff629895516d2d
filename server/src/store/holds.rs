//! Legal holds: a user (custodian) or a room whose data retention and
//! erasure must not delete. Released holds are kept as history.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::WriteTx;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    User,
    Room,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Room => "room",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "user" => Some(Scope::User),
            "room" => Some(Scope::Room),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub hold_id: String,
    pub scope: Scope,
    /// A user id or a room id, by `scope`.
    pub target: String,
    pub case_id: String,
    pub reason: String,
    pub set_by: String,
    pub set_ts: i64,
    pub released_by: Option<String>,
    pub released_ts: Option<i64>,
}

impl Hold {
    pub fn is_active(&self) -> bool {
        self.released_ts.is_none()
    }
}

const COLUMNS: &str =
    "hold_id, scope, target, case_id, reason, set_by, set_ts, released_by, released_ts";

fn from_row(r: sqlx::any::AnyRow) -> Result<Hold, sqlx::Error> {
    let scope: String = r.try_get(1)?;
    Ok(Hold {
        hold_id: r.try_get(0)?,
        scope: Scope::parse(&scope)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown hold scope {scope:?}").into()))?,
        target: r.try_get(2)?,
        case_id: r.try_get(3)?,
        reason: r.try_get(4)?,
        set_by: r.try_get(5)?,
        set_ts: r.try_get(6)?,
        released_by: r.try_get(7)?,
        released_ts: r.try_get(8)?,
    })
}

pub async fn insert(tx: &mut WriteTx, hold: &Hold) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO legal_holds ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&hold.hold_id)
    .bind(hold.scope.as_str())
    .bind(&hold.target)
    .bind(&hold.case_id)
    .bind(&hold.reason)
    .bind(&hold.set_by)
    .bind(hold.set_ts)
    .bind(hold.released_by.as_deref())
    .bind(hold.released_ts)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn get(c: &mut AnyConnection, hold_id: &str) -> Result<Option<Hold>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM legal_holds WHERE hold_id = $1"
    ))
    .bind(hold_id)
    .fetch_optional(c)
    .await?
    .map(from_row)
    .transpose()
}

/// Marks an active hold released; false when it was not active.
pub async fn release(
    tx: &mut WriteTx,
    hold_id: &str,
    released_by: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE legal_holds SET released_by = $1, released_ts = $2 WHERE hold_id = $3 AND released_ts IS NULL",
    )
    .bind(released_by)
    .bind(now)
    .bind(hold_id)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Every hold, active first, newest first.
pub async fn list(c: &mut AnyConnection, active_only: bool) -> Result<Vec<Hold>, sqlx::Error> {
    let filter = if active_only {
        "WHERE released_ts IS NULL"
    } else {
        ""
    };
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM legal_holds {filter} \
         ORDER BY CASE WHEN released_ts IS NULL THEN 0 ELSE 1 END, set_ts DESC, hold_id"
    ))
    .fetch_all(c)
    .await?
    .into_iter()
    .map(from_row)
    .collect()
}

/// The active holds on one user or room.
pub async fn active_on(
    c: &mut AnyConnection,
    scope: Scope,
    target: &str,
) -> Result<Vec<Hold>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM legal_holds WHERE scope = $1 AND target = $2 AND released_ts IS NULL ORDER BY set_ts"
    ))
    .bind(scope.as_str())
    .bind(target)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(from_row)
    .collect()
}

/// Targets with at least one active hold of `scope`: the held users or rooms.
pub async fn held_targets(c: &mut AnyConnection, scope: Scope) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT target FROM legal_holds WHERE scope = $1 AND released_ts IS NULL ORDER BY target",
    )
    .bind(scope.as_str())
    .fetch_all(c)
    .await
}
