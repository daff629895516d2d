//! Listing everyone the directory knows, for the directory sync: who may
//! still sign in, who is disabled or out of the required group, and the
//! attributes the user directory shows. Read with the Paged Results
//! control (RFC 2696), so a directory of tens of thousands of people is
//! read in pages rather than hitting the server's size limit.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap as LdapClient, Scope, SearchEntry};

use super::{
    attributes_of, connect, disabled, everyone_filter, first, group_filter, on_each_server,
    profile_attributes, Attributes, Failure, Unreachable,
};
use crate::config::Ldap;

/// Whether a listed person may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active,
    /// Disabled in the directory (Active Directory's `userAccountControl`).
    Disabled,
    /// Not in `ldap.required_group`.
    NotInGroup,
}

/// One person in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPerson {
    /// The login attribute's value, lower-cased: the account's localpart.
    pub login: String,
    pub standing: Standing,
    pub attributes: Attributes,
}

/// Everyone under `base_dn` matching `user_filter` who has a login
/// attribute. Needs the service account (`bind_dn`): without one there is
/// nobody to list as.
pub async fn list_people(
    config: &Ldap,
    errors: &AtomicU64,
) -> Result<Vec<ListedPerson>, Unreachable> {
    let op_timeout = Duration::from_millis(config.timeout_ms);
    // Large directories take a while; the backstop only catches a server
    // that stopped answering mid-way, which per-page timeouts also do.
    on_each_server(config, errors, op_timeout * 600, |url| {
        list_on(config, url, op_timeout)
    })
    .await
}

async fn list_on(
    config: &Ldap,
    url: &str,
    timeout: Duration,
) -> Result<Vec<ListedPerson>, Failure> {
    let mut ldap = connect(config, url, timeout).await?;
    ldap.with_timeout(timeout)
        .simple_bind(&config.bind_dn, &config.bind_password)
        .await?
        .success()?;
    let has_login = everyone_filter(config);
    let mut attrs = vec![config.localpart_attribute.as_str()];
    attrs.extend(profile_attributes(config));
    let everyone = paged_search(&mut ldap, config, &has_login, attrs, timeout).await?;
    let in_group: Option<HashSet<String>> = if config.required_group.is_empty() {
        None
    } else {
        let members = format!("(&{}{})", has_login, group_filter(config));
        let entries = paged_search(
            &mut ldap,
            config,
            &members,
            vec![config.localpart_attribute.as_str()],
            timeout,
        )
        .await?;
        Some(
            entries
                .iter()
                .filter_map(|e| first(e, &config.localpart_attribute))
                .map(str::to_lowercase)
                .collect(),
        )
    };
    let _ = ldap.unbind().await;
    Ok(everyone
        .iter()
        .filter_map(|entry| {
            let login = first(entry, &config.localpart_attribute)?.to_lowercase();
            let standing = if disabled(config, entry) {
                Standing::Disabled
            } else if in_group.as_ref().is_some_and(|g| !g.contains(&login)) {
                Standing::NotInGroup
            } else {
                Standing::Active
            };
            Some(ListedPerson {
                login,
                standing,
                attributes: attributes_of(config, entry),
            })
        })
        .collect())
}

async fn paged_search(
    ldap: &mut LdapClient,
    config: &Ldap,
    filter: &str,
    attrs: Vec<&str>,
    timeout: Duration,
) -> Result<Vec<SearchEntry>, Failure> {
    let page_size = i32::try_from(config.page_size).unwrap_or(i32::MAX);
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(page_size)),
    ];
    let mut stream = ldap
        .with_timeout(timeout)
        .streaming_search_with(adapters, &config.base_dn, Scope::Subtree, filter, attrs)
        .await?;
    let mut out = Vec::new();
    while let Some(entry) = stream.next().await? {
        out.push(SearchEntry::construct(entry));
    }
    stream.finish().await.success()?;
    Ok(out)
}
