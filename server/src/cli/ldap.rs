//! `cloister ldap sync`: the directory sync on demand, the twin of the one
//! the server runs every `ldap.sync_interval`. Prints its report as
//! JSON; each deactivation is audited as the system's.

use clap::Subcommand;
use cloister_server::config::Config;
use cloister_server::service::ldap_sync;

use super::open_state;

#[derive(Subcommand)]
pub(crate) enum LdapCommand {
    /// Deactivate accounts whose directory entry is gone, disabled or out
    /// of the required group, and refresh mail and department.
    Sync {
        /// Deactivate even more accounts than `ldap.sync_max_deactivations`.
        #[arg(long)]
        force: bool,
    },
}

pub(crate) async fn run(cmd: LdapCommand, config: Config) -> anyhow::Result<()> {
    match cmd {
        LdapCommand::Sync { force } => {
            let state = open_state(config).await?;
            let report = ldap_sync::run(&state, force)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(n) = report.held_back {
                anyhow::bail!(
                    "held back: the sync would deactivate {n} accounts, more than \
                     ldap.sync_max_deactivations; nothing changed (--force to proceed)"
                );
            }
            Ok(())
        }
    }
}
