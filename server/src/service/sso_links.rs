//! The operator's side of identity links (`cloister user link`, `unlink`,
//! `links`): how a local account moves to single sign-on, and how a name
//! conflict a sign-in refused is settled. Each change is audited.

use crate::service::sso::providers;
use crate::service::{audit, Context};
use crate::store::sso as store;
use crate::store::users;

/// Why the operator could not link or unlink an identity.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("there is no identity provider {0:?} in the configuration")]
    UnknownProvider(String),
    #[error("no active account {0}")]
    NoAccount(String),
    #[error("that identity is already linked to {0}; unlink it there first")]
    LinkedElsewhere(String),
    #[error("{0} is not linked to that identity")]
    NotLinked(String),
    #[error("database error: {0}")]
    Store(#[from] sqlx::Error),
}

fn issuer_of<'a>(state: &'a Context, idp_id: &str) -> Result<&'a str, LinkError> {
    providers(state)
        .into_iter()
        .find(|p| p.id == idp_id)
        .map(|p| p.issuer)
        .ok_or_else(|| LinkError::UnknownProvider(idp_id.to_owned()))
}

/// Links an existing account to a person at a provider (`cloister user
/// link`): how a local account moves to single sign-on, or how the operator
/// settles a name conflict the sign-in refused.
pub async fn link_account(
    state: &Context,
    user_id: &str,
    idp_id: &str,
    subject: &str,
) -> Result<(), LinkError> {
    let issuer = issuer_of(state, idp_id)?;
    let account = users::get(&mut *state.store.read().await?, user_id).await?;
    if account.is_none_or(|a| a.deactivated) {
        return Err(LinkError::NoAccount(user_id.to_owned()));
    }
    let now = state.now_ms();
    let mut tx = state.store.write().await?;
    if !store::link(&mut tx, issuer, subject, user_id, now).await? {
        drop(tx);
        let other = store::linked_user(&mut *state.store.read().await?, issuer, subject).await?;
        return Err(LinkError::LinkedElsewhere(other.unwrap_or_default()));
    }
    audit::record(
        &mut tx,
        audit::system_on_account(state, user_id, "sso_link"),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes a link (`cloister user unlink`).
pub async fn unlink_account(
    state: &Context,
    user_id: &str,
    idp_id: &str,
    subject: &str,
) -> Result<(), LinkError> {
    let issuer = issuer_of(state, idp_id)?;
    let linked = store::linked_user(&mut *state.store.read().await?, issuer, subject).await?;
    if linked.as_deref() != Some(user_id) {
        return Err(LinkError::NotLinked(user_id.to_owned()));
    }
    let mut tx = state.store.write().await?;
    store::unlink(&mut tx, issuer, subject).await?;
    audit::record(
        &mut tx,
        audit::system_on_account(state, user_id, "sso_unlink"),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// An account's links as (issuer, subject).
pub async fn links(state: &Context, user_id: &str) -> Result<Vec<(String, String)>, LinkError> {
    Ok(store::links_of(&mut *state.store.read().await?, user_id).await?)
}
