//! Checking a password against an LDAP directory (OpenLDAP, Active
//! Directory): search-then-bind with a service account, or a direct bind
//! through a DN template; and listing the directory's people for the
//! periodic sync (`listing`). Decides nothing about accounts — that is
//! `service::ldap_login` and `service::ldap_sync` — it only says what the
//! directory answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ldap3::{ldap_escape, Ldap as LdapClient, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::config::Ldap;
pub use crate::store::directory::Attributes;

mod listing;
pub use listing::{list_people, ListedPerson, Standing};

/// AD's matching rule that follows nested group membership.
const LDAP_MATCHING_RULE_IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// AD `userAccountControl`: ACCOUNTDISABLE.
const UAC_ACCOUNT_DISABLED: u64 = 0x2;
/// LDAP result code invalidCredentials (RFC 4511).
const INVALID_CREDENTIALS: u32 = 49;

/// The directory's entry for a user whose password it accepted.
#[derive(Debug, Clone)]
pub struct DirectoryUser {
    /// The login attribute's value as the directory stores it.
    pub login: String,
    pub display_name: Option<String>,
    /// What the directory gives of the person for the user directory; only
    /// read when the operator names the attributes.
    pub attributes: Attributes,
}

/// Mail and department, when `ldap.mail_attribute` and
/// `ldap.department_attribute` name them.
fn attributes_of(config: &Ldap, entry: &SearchEntry) -> Attributes {
    let read = |name: &str| {
        (!name.is_empty())
            .then(|| first(entry, name))
            .flatten()
            .map(str::to_owned)
    };
    Attributes {
        mail: read(&config.mail_attribute),
        department: read(&config.department_attribute),
    }
}

/// What the directory said about a login. Policy refusals are only
/// reported once the password was right, so they reveal nothing to a guesser.
#[derive(Debug)]
pub enum Verdict {
    Accepted(DirectoryUser),
    /// Unknown user or wrong password: the two must look the same.
    Rejected,
    /// The account is disabled in the directory (AD).
    Disabled,
    NotInGroup,
}

/// No configured directory server gave an answer.
#[derive(Debug)]
pub struct Unreachable;

/// Why one directory server failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Ldap(#[from] ldap3::LdapError),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Setup(String),
}

/// Asks the directory whether `password` is `login`'s, trying each URL in
/// turn. `errors` counts every server that failed to answer.
pub async fn authenticate(
    config: &Ldap,
    login: &str,
    password: &str,
    errors: &AtomicU64,
) -> Result<Verdict, Unreachable> {
    // An empty password is an "unauthenticated bind" (RFC 4513 §5.1.2),
    // which many servers accept: it must never reach the directory.
    if login.is_empty() || password.is_empty() {
        return Ok(Verdict::Rejected);
    }
    let op_timeout = Duration::from_millis(config.timeout_ms);
    // A backstop over the whole exchange: per-operation timeouts reset on
    // every reply, so a trickling server could otherwise hold us.
    on_each_server(config, errors, op_timeout * 6, |url| {
        check_on(config, url, login, password, op_timeout)
    })
    .await
}

/// Runs `attempt` against each configured server in turn until one
/// answers, each within `backstop`; counts and logs the failures.
async fn on_each_server<'a, T, F, Fut>(
    config: &'a Ldap,
    errors: &AtomicU64,
    backstop: Duration,
    attempt: F,
) -> Result<T, Unreachable>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    for url in &config.url {
        let outcome = tokio::time::timeout(backstop, attempt(url))
            .await
            .unwrap_or(Err(Failure::Timeout));
        match outcome {
            Ok(answer) => return Ok(answer),
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %url, error = %e, "LDAP directory server failed");
            }
        }
    }
    Err(Unreachable)
}

async fn connect(config: &Ldap, url: &str, timeout: Duration) -> Result<LdapClient, Failure> {
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_starttls(config.start_tls && url.starts_with("ldap://"));
    // Always our own TLS config, with ring named: ldap3's default asks
    // rustls for the process's provider, which is ambiguous wherever
    // another crate in the build also enables aws-lc-rs (it panics then).
    settings = settings.set_config(tls_config(&config.ca_file)?);
    let (conn, ldap) = LdapConnAsync::with_settings(settings, url).await?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// The system's trusted CAs, read once (as ldap3 itself would).
static SYSTEM_ROOTS: std::sync::LazyLock<rustls::RootCertStore> = std::sync::LazyLock::new(|| {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "ldap: a system CA certificate could not be read");
    }
    let (added, _) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, "ldap: system CA certificates");
    roots
});

/// Trusts exactly the CAs in `ca_file`, not the system's roots; without
/// one, the system's roots.
fn tls_config(ca_file: &str) -> Result<Arc<rustls::ClientConfig>, Failure> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let setup = |e: &dyn std::fmt::Display| Failure::Setup(format!("ldap.ca_file: {e}"));
    let roots = if ca_file.is_empty() {
        SYSTEM_ROOTS.clone()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| setup(&e))? {
            roots
                .add(cert.map_err(|e| setup(&e))?)
                .map_err(|e| setup(&e))?;
        }
        roots
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| setup(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn check_on(
    config: &Ldap,
    url: &str,
    login: &str,
    password: &str,
    timeout: Duration,
) -> Result<Verdict, Failure> {
    let mut ldap = connect(config, url, timeout).await?;
    let verdict = if config.bind_dn_template.is_empty() {
        search_then_bind(config, &mut ldap, login, password, timeout).await
    } else {
        bind_by_template(config, &mut ldap, login, password, timeout).await
    };
    let _ = ldap.unbind().await;
    verdict
}

/// What a login reads of an entry. Mail and department only when the
/// operator names them: they are imported for the user directory.
fn attributes(config: &Ldap) -> Vec<&str> {
    let mut attrs = vec![
        config.localpart_attribute.as_str(),
        config.display_name_attribute.as_str(),
    ];
    attrs.extend(profile_attributes(config));
    attrs
}

/// The attributes besides login and display name that login and sync read.
fn profile_attributes(config: &Ldap) -> impl Iterator<Item = &str> {
    let uac = config.active_directory.then_some("userAccountControl");
    [
        config.mail_attribute.as_str(),
        config.department_attribute.as_str(),
    ]
    .into_iter()
    .filter(|a| !a.is_empty())
    .chain(uac)
}

/// The filter that finds `login`'s entry: the operator's `user_filter`
/// with the login in place of `{username}`, or ANDed with
/// `(localpart_attribute=<login>)`. The login is escaped (RFC 4515), so
/// `*)(uid=*` matches only a user literally named so.
pub fn user_filter(config: &Ldap, login: &str) -> String {
    with_login(config, &ldap_escape(login))
}

/// [`user_filter`] for an escaped value, or `*` for everyone with a login.
fn with_login(config: &Ldap, value: &str) -> String {
    if config.user_filter.contains("{username}") {
        config.user_filter.replace("{username}", value)
    } else {
        format!(
            "(&{}({}={}))",
            config.user_filter, config.localpart_attribute, value
        )
    }
}

/// Everyone `user_filter` admits who has a login: what the sync lists.
fn everyone_filter(config: &Ldap) -> String {
    with_login(config, "*")
}

fn group_filter(config: &Ldap) -> String {
    let group = ldap_escape(config.required_group.as_str());
    if config.active_directory {
        format!("(memberOf:{LDAP_MATCHING_RULE_IN_CHAIN}:={group})")
    } else {
        format!("(memberOf={group})")
    }
}

/// Escapes a value for use inside a DN (RFC 4514 §2.4).
pub fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' | ',' | '+' | '"' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
    out
}

async fn search_then_bind(
    config: &Ldap,
    ldap: &mut LdapClient,
    login: &str,
    password: &str,
    timeout: Duration,
) -> Result<Verdict, Failure> {
    ldap.with_timeout(timeout)
        .simple_bind(&config.bind_dn, &config.bind_password)
        .await?
        .success()?;
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search(
            &config.base_dn,
            Scope::Subtree,
            &user_filter(config, login),
            attributes(config),
        )
        .await?
        .success()?;
    // Two entries for one login name is a directory fault; refusing both
    // is safer than guessing which one the password belongs to.
    if entries.len() > 1 {
        tracing::warn!(
            entries = entries.len(),
            "LDAP login matched several entries"
        );
    }
    let (1, Some(entry)) = (entries.len(), entries.into_iter().next()) else {
        // A wrong password costs a user bind; so does an unknown name, or
        // the answer's timing would tell which names exist. The DN exists
        // nowhere and the password is not the user's, so no account is
        // charged a failed attempt and no password is sent.
        let decoy = format!("cn=cloister-no-such-user,{}", config.base_dn);
        let _ = ldap
            .with_timeout(timeout)
            .simple_bind(&decoy, "cloister-decoy")
            .await?;
        return Ok(Verdict::Rejected);
    };
    let entry = SearchEntry::construct(entry);
    // Asked as the service account, before the user's bind replaces it.
    let in_group = in_required_group(config, ldap, &entry.dn, timeout).await?;
    match ldap
        .with_timeout(timeout)
        .simple_bind(&entry.dn, password)
        .await?
        .rc
    {
        0 => {}
        INVALID_CREDENTIALS => return Ok(Verdict::Rejected),
        rc => return Err(Failure::Setup(format!("user bind answered code {rc}"))),
    }
    Ok(judge(config, &entry, in_group))
}

async fn bind_by_template(
    config: &Ldap,
    ldap: &mut LdapClient,
    login: &str,
    password: &str,
    timeout: Duration,
) -> Result<Verdict, Failure> {
    let dn = config
        .bind_dn_template
        .replace("{user}", &escape_dn_value(login));
    match ldap
        .with_timeout(timeout)
        .simple_bind(&dn, password)
        .await?
        .rc
    {
        0 => {}
        INVALID_CREDENTIALS => return Ok(Verdict::Rejected),
        rc => return Err(Failure::Setup(format!("user bind answered code {rc}"))),
    }
    // Bound as the user, who may read their own entry.
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search(&dn, Scope::Base, &config.user_filter, attributes(config))
        .await?
        .success()?;
    let Some(entry) = entries.into_iter().next() else {
        // The password was right but the entry fails `user_filter`.
        return Ok(Verdict::Rejected);
    };
    let entry = SearchEntry::construct(entry);
    let in_group = in_required_group(config, ldap, &entry.dn, timeout).await?;
    Ok(judge(config, &entry, in_group))
}

async fn in_required_group(
    config: &Ldap,
    ldap: &mut LdapClient,
    dn: &str,
    timeout: Duration,
) -> Result<bool, Failure> {
    if config.required_group.is_empty() {
        return Ok(true);
    }
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search(dn, Scope::Base, &group_filter(config), vec!["1.1"])
        .await?
        .success()?;
    Ok(!entries.is_empty())
}

/// The first value of `name`; attribute names are case-insensitive, and
/// servers may answer in another case than we asked.
fn first<'a>(entry: &'a SearchEntry, name: &str) -> Option<&'a str> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// Whether Active Directory marks the entry's account disabled.
fn disabled(config: &Ldap, entry: &SearchEntry) -> bool {
    config.active_directory
        && first(entry, "userAccountControl")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|uac| uac & UAC_ACCOUNT_DISABLED != 0)
}

fn judge(config: &Ldap, entry: &SearchEntry, in_group: bool) -> Verdict {
    if disabled(config, entry) {
        return Verdict::Disabled;
    }
    if !in_group {
        return Verdict::NotInGroup;
    }
    let Some(login) = first(entry, &config.localpart_attribute) else {
        tracing::warn!("LDAP entry has no login attribute");
        return Verdict::Rejected;
    };
    Verdict::Accepted(DirectoryUser {
        login: login.to_owned(),
        display_name: first(entry, &config.display_name_attribute).map(str::to_owned),
        attributes: attributes_of(config, entry),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        let config = Ldap {
            user_filter: "(objectClass=inetOrgPerson)".into(),
            ..Ldap::default()
        };
        assert_eq!(
            user_filter(&config, "*)(uid=*"),
            "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))"
        );
    }

    #[test]
    fn a_username_placeholder_takes_the_login() {
        let config = Ldap {
            user_filter: "(&(objectClass=user)(sAMAccountName={username}))".into(),
            ..Ldap::default()
        };
        assert_eq!(
            user_filter(&config, "a*"),
            "(&(objectClass=user)(sAMAccountName=a\\2a))"
        );
        assert_eq!(
            everyone_filter(&config),
            "(&(objectClass=user)(sAMAccountName=*))"
        );
    }

    #[test]
    fn group_filters_escape_the_dn_and_follow_nesting_on_ad() {
        let mut config = Ldap {
            required_group: "cn=staff (all),dc=example".into(),
            ..Ldap::default()
        };
        assert_eq!(
            group_filter(&config),
            "(memberOf=cn=staff \\28all\\29,dc=example)"
        );
        config.active_directory = true;
        assert_eq!(
            group_filter(&config),
            "(memberOf:1.2.840.113556.1.4.1941:=cn=staff \\28all\\29,dc=example)"
        );
    }

    #[test]
    fn dn_values_are_escaped() {
        assert_eq!(escape_dn_value("a,b+c=d"), "a\\,b\\+c\\=d");
        assert_eq!(escape_dn_value("#x "), "\\#x\\ ");
        assert_eq!(escape_dn_value("alice"), "alice");
    }
}
