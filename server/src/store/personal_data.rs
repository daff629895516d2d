//! The personal-data registry: for every table of the schema, whether it
//! holds personal data, which columns can name a user, what kind of data it
//! is and why it is kept.
//!
//! Erasure, subject-access exports and the record of processing (GDPR
//! Art. 17, 15/20 and 30) are only as complete as this list, so a test
//! compares it with the migrated schema: a new table that is not entered
//! here fails the build's tests until someone decides what it holds.

use sqlx::AnyConnection;

use super::Backend;

/// A table holding personal data.
#[derive(Debug, Clone, Copy)]
pub struct PersonalTable {
    pub table: &'static str,
    /// Columns whose whole value is a user id.
    pub user_columns: &'static [&'static str],
    /// Free-form (JSON) columns that may contain user ids inside.
    pub mention_columns: &'static [&'static str],
    /// The category of data, in plain words.
    pub category: &'static str,
    /// Why the server keeps it, in plain words.
    pub purpose: &'static str,
}

/// A table that names nobody directly.
#[derive(Debug, Clone, Copy)]
pub struct OtherTable {
    pub table: &'static str,
    pub why: &'static str,
}

const ACCOUNTS: &str = "provide the account and sign people in";
const DELIVERY: &str = "deliver and store the users' (end-to-end encrypted) messages";
const E2EE: &str = "let users' devices encrypt to each other (public keys only)";
const SETTINGS: &str = "keep users' own settings and encrypted backups for them";
const PUSH: &str = "tell users' phones that a message is waiting (event id only, never content)";
const ACCOUNTABILITY: &str = "accountability: legal holds and their history";

pub const PERSONAL: &[PersonalTable] = &[
    PersonalTable {
        table: "users",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "account: user id, display name, avatar, password hash (argon2id), admin flag",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "devices",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "devices: id, name, created and coarse last-seen time (no IP addresses)",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "access_tokens",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "login sessions (tokens stored only as SHA-256 hashes)",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "uia_sessions",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "short-lived sign-in confirmation sessions",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "ldap_accounts",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "which accounts sign in through the LDAP directory, and since when",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "identity_links",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "which person at an identity provider (issuer and its subject id) an account is",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "staff_roles",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "which accounts may use the web console, as operator or data-protection officer",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "console_sessions",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "web console sign-ins (cookie and CSRF token stored only as SHA-256 hashes)",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "sso_devices",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "which devices a single sign-on opened, with the provider's session id, for the provider's logout",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "login_tokens",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "single-use sign-in tokens (hashed) between the identity provider and the app, valid two minutes",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "directory_attributes",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "mail address and department imported from the institution's directory (only when configured)",
        purpose: "let colleagues find each other in the user directory",
    },
    PersonalTable {
        table: "txn_ids",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "request ids that make retried sends idempotent",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "rooms",
        user_columns: &["creator"],
        mention_columns: &[],
        category: "rooms and who created them",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "room_aliases",
        user_columns: &["creator"],
        mention_columns: &[],
        category: "room addresses and who created them",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "events",
        user_columns: &["sender", "state_key"],
        mention_columns: &["content", "prev_content"],
        category: "messages (sender, room, time, size, ciphertext) and room state (membership, names, topics, power levels)",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "current_state",
        user_columns: &["state_key"],
        mention_columns: &[],
        category: "index of each room's current state (membership of each person)",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "memberships",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "who is in which room, since when",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "account_data",
        user_columns: &["user_id"],
        mention_columns: &["content"],
        category: "per-user settings (some encrypted by the client, e.g. key storage; lists of direct chats)",
        purpose: SETTINGS,
    },
    PersonalTable {
        table: "receipts",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "read receipts: who read up to which message, when",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "typing",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "typing notices (seconds-long)",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "filters",
        user_columns: &["user_id"],
        mention_columns: &["filter_json"],
        category: "what a client asked sync to include",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "device_keys",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "devices' public identity keys",
        purpose: E2EE,
    },
    PersonalTable {
        table: "one_time_keys",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "devices' public one-time keys",
        purpose: E2EE,
    },
    PersonalTable {
        table: "fallback_keys",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "devices' public fallback keys",
        purpose: E2EE,
    },
    PersonalTable {
        table: "cross_signing_keys",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "public cross-signing keys",
        purpose: E2EE,
    },
    PersonalTable {
        table: "key_signatures",
        user_columns: &["target_user", "signer_user"],
        mention_columns: &[],
        category: "who verified whose keys (signatures)",
        purpose: E2EE,
    },
    PersonalTable {
        table: "device_list_changes",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "when a person's device list changed",
        purpose: E2EE,
    },
    PersonalTable {
        table: "to_device",
        user_columns: &["user_id", "sender"],
        mention_columns: &["content"],
        category: "undelivered device-to-device messages (encrypted room keys, verification requests)",
        purpose: E2EE,
    },
    PersonalTable {
        table: "sliding_sync_positions",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "where a device's sliding sync connection stands (stream positions, list sizes)",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "sliding_sync_rooms",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "which rooms a device's sliding sync connection has been sent, and up to where",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "oauth_sessions",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "which apps a person signed in through the OAuth 2.0 API, with their device and granted scope (refresh tokens as digests only)",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "oauth_grants",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "sign-ins to an app in progress through the OAuth 2.0 API (kept until they expire, at most 10 minutes)",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "oauth_device_grants",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "sign-ins of a second device by a short code in progress (kept until they expire, at most 10 minutes)",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "oauth_account_actions",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "that a person just approved replacing their cross-signing keys on the account page (until used, at most 10 minutes)",
        purpose: ACCOUNTS,
    },
    PersonalTable {
        table: "backup_versions",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "key backup settings (public part)",
        purpose: SETTINGS,
    },
    PersonalTable {
        table: "backup_keys",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "encrypted backups of message keys",
        purpose: SETTINGS,
    },
    PersonalTable {
        table: "media",
        user_columns: &["uploader"],
        mention_columns: &[],
        category: "uploaded files (encrypted by the client; the server keeps size, type, name, time and uploader)",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "event_media",
        user_columns: &[],
        mention_columns: &[],
        category: "which message carries which upload (names nobody itself)",
        purpose: DELIVERY,
    },
    PersonalTable {
        table: "pushers",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "push registrations: app id, pushkey (a phone's push token), gateway URL, device and app names, language",
        purpose: PUSH,
    },
    PersonalTable {
        table: "notifications",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "which messages notified whom, highlighted or not, when (event ids only, kept 30 days)",
        purpose: PUSH,
    },
    PersonalTable {
        table: "notification_counts",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "how many notifications a user has not read, per room and thread",
        purpose: PUSH,
    },
    PersonalTable {
        table: "push_outbox",
        user_columns: &["user_id"],
        mention_columns: &[],
        category: "pushes waiting for the push gateway (event id, room id, unread count, pushkey), minutes at most",
        purpose: PUSH,
    },
    PersonalTable {
        table: "legal_holds",
        user_columns: &["target", "set_by", "released_by"],
        mention_columns: &[],
        category: "legal holds: whose or which room's data is preserved, for which case, set by whom",
        purpose: ACCOUNTABILITY,
    },
];

/// Pseudonymous tables: they name people only by an HMAC pseudonym whose
/// key never leaves the server. Erasure leaves them (rewriting the audit log
/// would break its tamper evidence); exports include the subject's entries.
pub const PSEUDONYMOUS: &[OtherTable] = &[
    OtherTable {
        table: "audit_entries",
        why: "the audit log: who (pseudonym) did what, when, with counts; never content",
    },
    OtherTable {
        table: "erased_users",
        why: "pseudonyms of erased accounts, so their ids are never handed out again",
    },
];

pub const NOT_PERSONAL: &[OtherTable] = &[
    OtherTable {
        table: "stream_counter",
        why: "one number: the latest stream position",
    },
    OtherTable {
        table: "schema_migrations",
        why: "which database migrations ran",
    },
    OtherTable {
        table: "sso_pending",
        why: "sign-ins in progress at an identity provider: random state, nonce and the app's return URL; no user yet",
    },
    OtherTable {
        table: "saml_seen_assertions",
        why: "ids of SAML assertions already used, until they expire (replay protection); no user",
    },
    OtherTable {
        table: "registration_tokens",
        why: "hashes and use counts of invitation tokens; not linked to who used them",
    },
    OtherTable {
        table: "push_cursor",
        why: "one number: how far push rules have been evaluated",
    },
    OtherTable {
        table: "oauth_clients",
        why: "apps registered for the OAuth 2.0 API: their names, web sites and return URLs; no user",
    },
    OtherTable {
        table: "audit_checkpoints",
        why: "signed fingerprints of the audit log; no entries, no pseudonyms",
    },
];

/// Who the data is about, for the record of processing.
pub const DATA_SUBJECTS: &[&str] = &[
    "people with an account on this server (staff, clients, patients, members — whoever the institution invites)",
    "server administrators (their administrative actions, pseudonymously in the audit log)",
];

pub fn personal(table: &str) -> Option<&'static PersonalTable> {
    PERSONAL.iter().find(|t| t.table == table)
}

/// Whether the registry says anything about `table`.
pub fn is_registered(table: &str) -> bool {
    personal(table).is_some()
        || PSEUDONYMOUS.iter().any(|t| t.table == table)
        || NOT_PERSONAL.iter().any(|t| t.table == table)
}

/// The distinct purposes, in registry order.
pub fn purposes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for t in PERSONAL {
        if !out.contains(&t.purpose) {
            out.push(t.purpose);
        }
    }
    out
}

/// The tables of the live schema (lower case, sorted).
pub async fn schema_tables(
    c: &mut AnyConnection,
    backend: Backend,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
        }
    };
    let names: Vec<String> = sqlx::query_scalar(sql).fetch_all(c).await?;
    Ok(names.into_iter().map(|n| n.to_lowercase()).collect())
}

/// The columns of `table` in the live schema (lower case).
pub async fn schema_columns(
    c: &mut AnyConnection,
    backend: Backend,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = match backend {
        Backend::Sqlite => "SELECT name FROM pragma_table_info($1)",
        Backend::Postgres => {
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let names: Vec<String> = sqlx::query_scalar(sql).bind(table).fetch_all(c).await?;
    Ok(names.into_iter().map(|n| n.to_lowercase()).collect())
}

/// What the registry gets wrong about the live schema: tables it does not
/// mention, and registered columns that do not exist. Empty when complete.
pub async fn check_schema(
    c: &mut AnyConnection,
    backend: Backend,
) -> Result<Vec<String>, sqlx::Error> {
    let mut problems = Vec::new();
    let tables = schema_tables(c, backend).await?;
    for table in &tables {
        if !is_registered(table) {
            problems.push(format!(
                "table {table} is not in store/personal_data.rs: say whether it holds personal data"
            ));
        }
    }
    for entry in PERSONAL {
        if !tables.iter().any(|t| t == entry.table) {
            problems.push(format!("registered table {} does not exist", entry.table));
            continue;
        }
        let columns = schema_columns(c, backend, entry.table).await?;
        for column in entry.user_columns.iter().chain(entry.mention_columns) {
            if !columns.iter().any(|c| c == column) {
                problems.push(format!(
                    "registered column {}.{column} does not exist",
                    entry.table
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_table_is_listed_twice() {
        let mut all: Vec<&str> = PERSONAL.iter().map(|t| t.table).collect();
        all.extend(PSEUDONYMOUS.iter().map(|t| t.table));
        all.extend(NOT_PERSONAL.iter().map(|t| t.table));
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "a table is registered twice");
    }

    /// Fails when a migration adds a table (or drops a registered column)
    /// without this registry saying what it holds.
    #[tokio::test]
    async fn registry_covers_the_migrated_schema() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = super::super::Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let mut conn = store.read().await.unwrap();
        let tables = schema_tables(&mut conn, Backend::Sqlite).await.unwrap();
        assert!(tables.iter().any(|t| t == "events"), "{tables:?}");
        let problems = check_schema(&mut conn, Backend::Sqlite).await.unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
