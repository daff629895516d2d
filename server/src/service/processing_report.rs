//! The record of processing activities (GDPR Art. 30), generated from the
//! live configuration and database so that it cannot drift from what the
//! server actually does: categories come from the personal-data registry,
//! retention from the settings and the rooms' own policies in force, holds
//! from the holds table.

use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use crate::config::Lifetime;
use crate::error::ApiResult;
use crate::service::Context;
use crate::store::holds::{self, Hold, Scope};
use crate::store::personal_data::{
    self, OtherTable, DATA_SUBJECTS, NOT_PERSONAL, PERSONAL, PSEUDONYMOUS,
};
use crate::store::{audit as audit_store, erased};

pub const FORMAT: &str = "cloister.processing_record";

const RECIPIENTS: &[&str] = &[
    "the server administrators named by the controller (they cannot read messages or files: those are end-to-end encrypted)",
    "the people a user communicates with, for what the user sends them",
    "the push gateways of the apps users register for notifications (Apple's and Google's services behind them): an event id, a room id, an unread count and the device's push token, never content, sender or room name",
];

/// Recipients that depend on the configuration, then the closing line.
fn recipients(state: &Context) -> Vec<&'static str> {
    let mut out = RECIPIENTS.to_vec();
    if state.config.ldap.enabled {
        out.push("the institution's LDAP / Active Directory directory (`[ldap]`): the login name and password of each directory sign-in, to check them, and the searches of the directory sync");
    }
    if !(state.config.oidc.is_empty() && state.config.saml.is_empty()) {
        out.push("the institution's single sign-on identity providers (`[[oidc]]`, `[[saml]]`): that a person signs in here and when (the sign-in request), and for OpenID Connect the logout of those sessions");
    }
    out.push("nobody else: this server does not federate with other Matrix servers");
    out
}

const SECURITY: &[&str] = &[
    "end-to-end encryption of messages and files on users' devices; the server refuses unencrypted messages (docs/api.md)",
    "passwords stored only as argon2id hashes; access tokens stored only as SHA-256 hashes",
    "no IP addresses stored; server logs carry no message content, tokens, room or user identifiers",
    "tamper-evident audit log (RFC 6962 Merkle tree, signed checkpoints) of security and administrative actions, naming people only by pseudonym",
    "administrative functions restricted to server administrators, every call audited",
    "erasure (Art. 17) and subject-access exports sealed to the requester's key (Art. 15/20)",
];

/// The record of processing activities. Its JSON form is what the admin
/// API and `cloister admin report processing --json` print; the Markdown
/// form is rendered from the same fields.
#[derive(Debug, Serialize)]
pub struct ProcessingRecord {
    pub format: &'static str,
    pub version: u32,
    pub generated_ts: i64,
    pub server_name: String,
    pub controller: String,
    pub dpo_contact: String,
    pub purposes: Vec<&'static str>,
    pub data_subjects: DataSubjects,
    pub data_categories: Vec<DataCategory>,
    pub pseudonymous_data: Vec<TableNote>,
    pub no_personal_data: Vec<TableNote>,
    pub recipients: Vec<&'static str>,
    pub transfers: Transfers,
    pub retention: RetentionInForce,
    pub legal_holds: LegalHolds,
    pub security_measures: SecurityMeasures,
}

#[derive(Debug, Serialize)]
pub struct DataSubjects {
    pub categories: &'static [&'static str],
    pub accounts_active: i64,
    pub accounts_deactivated: i64,
    pub accounts_erased: i64,
}

/// One table of personal data.
#[derive(Debug, Serialize)]
pub struct DataCategory {
    pub table: &'static str,
    pub category: &'static str,
    pub purpose: &'static str,
    pub columns_naming_people: &'static [&'static str],
}

/// A table that holds no directly identifying data, and what it holds.
#[derive(Debug, Serialize)]
pub struct TableNote {
    pub table: &'static str,
    pub what: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Transfers {
    pub third_countries: &'static str,
    pub federation: bool,
}

/// A lifetime for people (`text`) and for programs (`millis`, `null` for
/// no limit).
#[derive(Debug, Serialize)]
pub struct LifetimeText {
    pub text: String,
    pub millis: Option<i64>,
}

impl From<Lifetime> for LifetimeText {
    fn from(l: Lifetime) -> Self {
        let text = match l {
            Lifetime::Forever => "no time limit (kept until deleted)".to_owned(),
            Lifetime::Millis(_) => l.to_string(),
        };
        LifetimeText {
            text,
            millis: l.as_millis(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RetentionInForce {
    pub messages_default: LifetimeText,
    pub room_policy_min: LifetimeText,
    pub room_policy_max: LifetimeText,
    pub media: LifetimeText,
    pub undelivered_device_messages: LifetimeText,
    pub key_backups: LifetimeText,
    pub inactive_devices: LifetimeText,
    pub purge_interval: LifetimeText,
    pub rooms_with_own_policy: Vec<RoomRetention>,
    pub accounts: &'static str,
    pub audit_log: &'static str,
}

/// A room whose `m.room.retention` is in force.
#[derive(Debug, Serialize)]
pub struct RoomRetention {
    pub room_id: String,
    pub requested_max_lifetime_ms: Option<i64>,
    pub requested_min_lifetime_ms: Option<i64>,
    pub max_lifetime_in_force: LifetimeText,
}

#[derive(Debug, Serialize)]
pub struct LegalHolds {
    pub active: usize,
    pub case_ids: Vec<String>,
    pub holds: Vec<HoldSummary>,
}

/// An active hold. Rooms are named; custodians are not: the record is
/// about processing, not about whom a case concerns.
#[derive(Debug, Serialize)]
pub struct HoldSummary {
    pub hold_id: String,
    pub case_id: String,
    pub scope: Scope,
    /// `null` for a hold on a person.
    pub room_id: Option<String>,
    pub since_ts: i64,
}

#[derive(Debug, Serialize)]
pub struct SecurityMeasures {
    pub measures: &'static [&'static str],
    pub plaintext_room_exemptions: usize,
    /// Whether reactions may show their emoji to the server (so it can
    /// count them); in-room key verification always does, and carries only
    /// public keys.
    pub reaction_keys_visible: bool,
    /// Whether every user can find every active account by name
    /// (`directory.search_all_users`), not only people they share a room with.
    pub directory_finds_everyone: bool,
    pub audit_log_entries: i64,
    pub audit_latest_checkpoint: Option<CheckpointSummary>,
    pub audit_verifier_key: String,
}

#[derive(Debug, Serialize)]
pub struct CheckpointSummary {
    pub entries: i64,
    pub ts: i64,
}

async fn rooms_with_own_policy(
    state: &Context,
    c: &mut AnyConnection,
) -> ApiResult<Vec<RoomRetention>> {
    let rows = sqlx::query(
        "SELECT cs.room_id, e.content FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
         WHERE cs.event_type = $1 AND cs.state_key = '' ORDER BY cs.room_id",
    )
    .bind(crate::service::retention::RETENTION_EVENT)
    .fetch_all(&mut *c)
    .await?;
    let mut rooms = Vec::with_capacity(rows.len());
    for row in rows {
        let content: String = row.try_get(1)?;
        let content: Value = serde_json::from_str(&content).unwrap_or(Value::Null);
        let policy = crate::service::retention::policy_from_content(state, Some(&content));
        rooms.push(RoomRetention {
            room_id: row.try_get(0)?,
            requested_max_lifetime_ms: policy.requested_max_lifetime,
            requested_min_lifetime_ms: policy.requested_min_lifetime,
            max_lifetime_in_force: policy.max_lifetime.into(),
        });
    }
    Ok(rooms)
}

fn legal_holds(active: Vec<Hold>) -> LegalHolds {
    let mut case_ids: Vec<String> = active.iter().map(|h| h.case_id.clone()).collect();
    case_ids.sort_unstable();
    case_ids.dedup();
    LegalHolds {
        active: active.len(),
        case_ids,
        holds: active
            .into_iter()
            .map(|h| HoldSummary {
                room_id: (h.scope == Scope::Room).then_some(h.target),
                hold_id: h.hold_id,
                case_id: h.case_id,
                scope: h.scope,
                since_ts: h.set_ts,
            })
            .collect(),
    }
}

/// The record, from the configuration and the database as they are now.
pub async fn build(state: &Context) -> ApiResult<ProcessingRecord> {
    let mut c = state.store.read().await?;
    let c = &mut *c;
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let accounts_active = count("SELECT COUNT(*) FROM users WHERE deactivated = 0")
        .fetch_one(&mut *c)
        .await?;
    let accounts_deactivated = count("SELECT COUNT(*) FROM users WHERE deactivated <> 0")
        .fetch_one(&mut *c)
        .await?;
    let accounts_erased = erased::count(c).await?;
    let rooms_with_own_policy = rooms_with_own_policy(state, c).await?;
    let active_holds = holds::list(c, true).await?;
    let audit_log_entries = audit_store::size(c).await?;
    let latest_checkpoint = audit_store::latest_checkpoint(c).await?;

    let r = &state.config.retention;
    Ok(ProcessingRecord {
        format: FORMAT,
        version: 1,
        generated_ts: state.now_ms(),
        server_name: state.server_name().to_owned(),
        controller: state.config.processing.controller.clone(),
        dpo_contact: state.config.processing.dpo_contact.clone(),
        purposes: personal_data::purposes(),
        data_subjects: DataSubjects {
            categories: DATA_SUBJECTS,
            accounts_active,
            accounts_deactivated,
            accounts_erased,
        },
        data_categories: PERSONAL
            .iter()
            .map(|t| DataCategory {
                table: t.table,
                category: t.category,
                purpose: t.purpose,
                columns_naming_people: t.user_columns,
            })
            .collect(),
        pseudonymous_data: PSEUDONYMOUS.iter().map(table_note).collect(),
        no_personal_data: NOT_PERSONAL.iter().map(table_note).collect(),
        recipients: recipients(state),
        transfers: Transfers {
            third_countries: "none: the server sends data to no other server or service",
            federation: false,
        },
        retention: RetentionInForce {
            messages_default: r.default_max_lifetime.into(),
            room_policy_min: r.allowed_min_lifetime.into(),
            room_policy_max: r.allowed_max_lifetime.into(),
            media: r.media_lifetime.into(),
            undelivered_device_messages: r.to_device_lifetime.into(),
            key_backups: r.backup_lifetime.into(),
            inactive_devices: r.inactive_device_lifetime.into(),
            purge_interval: r.purge_interval.into(),
            rooms_with_own_policy,
            accounts: "until the person or an administrator erases them (deactivated accounts are kept until erased)",
            audit_log: "kept for the life of the server (pseudonymous; rewriting it would break its tamper evidence)",
        },
        legal_holds: legal_holds(active_holds),
        security_measures: SecurityMeasures {
            measures: SECURITY,
            plaintext_room_exemptions: state.config.encryption.plaintext_rooms.len(),
            reaction_keys_visible: state.config.encryption.plaintext_reactions,
            directory_finds_everyone: state.config.directory.search_all_users,
            audit_log_entries,
            audit_latest_checkpoint: latest_checkpoint
                .map(|(entries, ts)| CheckpointSummary { entries, ts }),
            audit_verifier_key: state.audit.verifier_key(),
        },
    })
}

fn table_note(t: &OtherTable) -> TableNote {
    TableNote {
        table: t.table,
        what: t.why,
    }
}

/// Configured text, or a visible gap where the operator left it empty.
fn text(s: &str) -> &str {
    if s.is_empty() {
        "(not configured)"
    } else {
        s
    }
}

fn bullets(out: &mut String, items: &[&str]) {
    for item in items {
        out.push_str(&format!("- {}\n", text(item)));
    }
}

/// The record as Markdown, for people.
pub fn to_markdown(r: &ProcessingRecord) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "# Record of processing activities (GDPR Art. 30)\n\nServer `{}`, generated {}.\n\n",
        text(&r.server_name),
        utc(r.generated_ts)
    ));
    o.push_str(&format!(
        "## Controller\n\n- Controller: {}\n- Data-protection officer: {}\n\n",
        text(&r.controller),
        text(&r.dpo_contact)
    ));
    o.push_str("## Purposes\n\n");
    bullets(&mut o, &r.purposes);
    let s = &r.data_subjects;
    o.push_str("\n## Categories of data subjects\n\n");
    bullets(&mut o, s.categories);
    o.push_str(&format!(
        "\nAccounts: {} active, {} deactivated, {} erased.\n\n",
        s.accounts_active, s.accounts_deactivated, s.accounts_erased
    ));
    o.push_str(
        "## Categories of personal data\n\n| data | purpose | table |\n| --- | --- | --- |\n",
    );
    for c in &r.data_categories {
        o.push_str(&format!(
            "| {} | {} | `{}` |\n",
            text(c.category),
            text(c.purpose),
            text(c.table)
        ));
    }
    o.push_str("\nPseudonymous:\n\n");
    for c in &r.pseudonymous_data {
        o.push_str(&format!("- `{}`: {}\n", text(c.table), text(c.what)));
    }
    o.push_str("\n## Recipients\n\n");
    bullets(&mut o, &r.recipients);
    o.push_str(&format!(
        "\n## Transfers to third countries\n\n{}\n\n",
        text(r.transfers.third_countries)
    ));
    let t = &r.retention;
    o.push_str("## Retention in force\n\n| data | kept for |\n| --- | --- |\n");
    for (lifetime, label) in [
        (
            &t.messages_default,
            "messages (rooms without their own policy)",
        ),
        (&t.room_policy_min, "shortest lifetime a room may set"),
        (&t.room_policy_max, "longest lifetime a room may set"),
        (&t.media, "uploaded files"),
        (
            &t.undelivered_device_messages,
            "undelivered device messages",
        ),
        (&t.key_backups, "key backups"),
        (&t.inactive_devices, "devices not seen"),
        (&t.purge_interval, "deletion job runs every"),
    ] {
        o.push_str(&format!("| {label} | {} |\n", text(&lifetime.text)));
    }
    o.push_str(&format!(
        "| accounts | {} |\n| audit log | {} |\n\n(`none` means no time limit.)\n\n",
        text(t.accounts),
        text(t.audit_log)
    ));
    if t.rooms_with_own_policy.is_empty() {
        o.push_str("No room has a retention policy of its own.\n\n");
    } else {
        o.push_str("Rooms with their own policy:\n\n| room | messages kept for |\n| --- | --- |\n");
        for room in &t.rooms_with_own_policy {
            o.push_str(&format!(
                "| `{}` | {} |\n",
                text(&room.room_id),
                text(&room.max_lifetime_in_force.text)
            ));
        }
        o.push('\n');
    }
    let h = &r.legal_holds;
    o.push_str(&format!("## Legal holds\n\nActive holds: {}.", h.active));
    if !h.case_ids.is_empty() {
        let cases: Vec<&str> = h.case_ids.iter().map(|c| text(c)).collect();
        o.push_str(&format!(" Cases: {}.", cases.join(", ")));
    }
    o.push_str(
        " Data under an active hold is kept beyond its retention period and is not erased.\n\n",
    );
    let m = &r.security_measures;
    o.push_str("## Technical and organisational security measures\n\n");
    bullets(&mut o, m.measures);
    o.push_str(&format!(
        "\nRooms exempted from the encryption-only rule: {}. Reaction keys (the emoji of a reaction) visible to the server: {}; in-room key-verification messages are, and carry only public keys. Audit log: {} entries; verifier key `{}`.\n",
        m.plaintext_room_exemptions,
        if m.reaction_keys_visible { "yes" } else { "no" },
        m.audit_log_entries,
        text(&m.audit_verifier_key)
    ));
    o.push_str(if m.directory_finds_everyone {
        "User directory: every user can find every active account by name.\n"
    } else {
        "User directory: users find only people who share a room with them or are in a published room.\n"
    });
    o
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time in milliseconds (the proleptic
/// Gregorian calendar, by H. Hinnant's days-to-civil algorithm).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_795_330_073_607), "2026-11-22 06:47 UTC");
    }
}
