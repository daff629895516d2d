//! The directory sync: keeps the accounts the LDAP directory created in
//! step with it. An account whose entry is gone, disabled or out of the
//! required group is deactivated — its sessions end and it leaves its
//! rooms, as when an admin deactivates it — and each change is audited as
//! the system's, with the reason. Mail and department are refreshed for the
//! user directory.
//!
//! Runs every `ldap.sync_interval` on the node that runs the
//! background jobs, and on demand with `cloister ldap sync`. Local accounts
//! are never touched. An account the sync deactivated stays deactivated
//! when its entry comes back (deactivation is final in Matrix); an operator
//! creates a new account for a returning person.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use cloister_audit::{Action, Details};
use serde::Serialize;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::ldap::{self, ListedPerson, Standing};
use crate::service::{audit, devices, Context};
use crate::store::{directory, ldap as store};

/// What one sync did.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    /// People the directory listed.
    pub listed: usize,
    /// Active accounts the directory created.
    pub accounts: usize,
    /// Accounts deactivated, with the reason.
    pub deactivated: Vec<Deactivation>,
    /// Accounts whose mail or department changed.
    pub attributes_updated: usize,
    /// Set when the run would have deactivated more accounts than
    /// `ldap.sync_max_deactivations` allows, and so changed nothing.
    pub held_back: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct Deactivation {
    pub user_id: String,
    /// `ldap_entry_gone`, `ldap_disabled` or `ldap_not_in_group`.
    pub reason: &'static str,
}

/// Why an account may no longer sign in; None while it may.
fn reason(person: Option<&ListedPerson>) -> Option<&'static str> {
    match person.map(|p| p.standing) {
        None => Some("ldap_entry_gone"),
        Some(Standing::Disabled) => Some("ldap_disabled"),
        Some(Standing::NotInGroup) => Some("ldap_not_in_group"),
        Some(Standing::Active) => None,
    }
}

/// Runs one sync. `force` deactivates even beyond
/// `ldap.sync_max_deactivations`.
pub async fn run(state: &Context, force: bool) -> ApiResult<SyncReport> {
    let config = &state.config.ldap;
    if !config.can_sync() {
        return Err(ApiError::invalid_param(
            "the directory sync needs [ldap] enabled with a service account (bind_dn)",
        ));
    }
    let people = ldap::list_people(config, &state.metrics.ldap_errors)
        .await
        .map_err(|ldap::Unreachable| {
            state
                .metrics
                .ldap_sync_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("LDAP sync impossible: no directory server answered; nothing changed");
            ApiError::new(
                ErrCode::Unknown,
                "The directory cannot be reached; nothing was changed",
            )
            .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
        })?;
    let by_login: HashMap<&str, &ListedPerson> =
        people.iter().map(|p| (p.login.as_str(), p)).collect();
    let mut c = state.store.read().await?;
    let accounts = store::active_accounts(&mut c).await?;
    let stored = directory::all_attributes(&mut c).await?;
    drop(c);

    let mut report = SyncReport {
        listed: people.len(),
        accounts: accounts.len(),
        ..SyncReport::default()
    };
    let mut refreshed = Vec::new();
    for user_id in &accounts {
        let localpart = crate::ids::parse_user_id(user_id).map_or("", |(l, _)| l);
        let person = by_login.get(localpart).copied();
        if let Some(reason) = reason(person) {
            report.deactivated.push(Deactivation {
                user_id: user_id.clone(),
                reason,
            });
        } else if let Some(person) = person {
            if stored.get(user_id).cloned().unwrap_or_default() != person.attributes {
                refreshed.push((user_id, &person.attributes));
            }
        }
    }
    let limit = usize::try_from(config.sync_max_deactivations).unwrap_or(usize::MAX);
    if report.deactivated.len() > limit && !force {
        tracing::error!(
            would_deactivate = report.deactivated.len(),
            limit,
            "LDAP SYNC HELD BACK: it would deactivate more accounts than ldap.sync_max_deactivations; \
             check base_dn and user_filter, then run `cloister ldap sync --force` if this is right"
        );
        state
            .metrics
            .ldap_sync_failures
            .fetch_add(1, Ordering::Relaxed);
        report.held_back = Some(report.deactivated.len());
        report.deactivated.clear();
        return Ok(report);
    }

    if !refreshed.is_empty() {
        let now = state.now_ms();
        let mut tx = state.store.write().await?;
        for (user_id, attributes) in &refreshed {
            directory::set_attributes(&mut tx, user_id, attributes, now).await?;
        }
        tx.commit().await?;
        report.attributes_updated = refreshed.len();
    }
    for gone in &report.deactivated {
        let details = Details::new()
            .with(gone.reason, 1)
            .expect("a valid detail name");
        let entry = audit::by_system(state, Action::AccountDeactivated)
            .target(state.audit.target(&gone.user_id))
            .details(details);
        devices::deactivate_user(state, &gone.user_id, entry).await?;
        tracing::info!(
            reason = gone.reason,
            "directory sync deactivated an account"
        );
    }
    state
        .metrics
        .ldap_sync_deactivations
        .fetch_add(report.deactivated.len() as u64, Ordering::Relaxed);
    state.metrics.ldap_syncs.fetch_add(1, Ordering::Relaxed);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::Attributes;

    #[test]
    fn reasons_follow_the_entry() {
        let person = |standing| ListedPerson {
            login: "alice".into(),
            standing,
            attributes: Attributes::default(),
        };
        assert_eq!(reason(None), Some("ldap_entry_gone"));
        assert_eq!(
            reason(Some(&person(Standing::Disabled))),
            Some("ldap_disabled")
        );
        assert_eq!(
            reason(Some(&person(Standing::NotInGroup))),
            Some("ldap_not_in_group")
        );
        assert_eq!(reason(Some(&person(Standing::Active))), None);
    }
}
