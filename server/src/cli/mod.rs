//! The administration subcommands of `cloister` that act on the database
//! directly, as the operator: each is audited like its admin API twin.

pub(crate) mod admin;
pub(crate) mod audit_verify;
pub(crate) mod audit_witness;
pub(crate) mod compliance;
pub(crate) mod ldap;
pub(crate) mod roles;
pub(crate) mod subject;

use std::sync::Arc;

use cloister_server::clock::SystemClock;
use cloister_server::config::Config;
use cloister_server::service::audit;
use cloister_server::service::Context;
use cloister_server::store::Store;

/// The store and audit keys, for commands that change accounts: their
/// changes are audited like the API's.
pub(crate) async fn open_state(config: Config) -> anyhow::Result<Context> {
    let store = open_store(&config).await?;
    let auditor = audit::Auditor::load_or_create(&config.data_dir, &config.server_name)?;
    Ok(Context::new(config, store, Arc::new(SystemClock), auditor))
}

pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    // Private from the start: SQLite would otherwise create it with the
    // umask's mode.
    cloister_server::store::file_modes::create_private_dir(&config.data_dir)?;
    let store = Store::connect(&config.database_url()).await?;
    store.migrate().await?;
    // Running nodes drop their copies of access tokens as soon as a
    // command here ends sessions.
    store.announce_to_running_nodes(cloister_server::cluster::sessions_ended_notice());
    Ok(store)
}

/// A full user id from `name` (`alice` or `@alice:example.org`).
pub(crate) fn user_id(config: &Config, name: &str) -> String {
    if name.starts_with('@') {
        name.to_owned()
    } else {
        format!("@{}:{}", name.to_lowercase(), config.server_name)
    }
}
