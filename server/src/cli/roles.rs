//! `cloister admin role grant|revoke|list`: who may use the web console,
//! as operator or as data-protection officer. Decided here, at the server's
//! shell, never from the console itself.

use clap::{Subcommand, ValueEnum};
use cloister_server::config::Config;
use cloister_server::service::staff::{self, Role};

use super::{open_state, user_id};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum RoleName {
    /// Accounts, devices, registration tokens, server health.
    Operator,
    /// Retention, legal holds, erasure, exports, the audit log and the
    /// record of processing.
    Dpo,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Operator => Role::Operator,
            RoleName::Dpo => Role::Dpo,
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum RoleCommand {
    /// Give an account a console role.
    Grant { name: String, role: RoleName },
    /// Take a console role away; the account's console sessions end.
    Revoke { name: String, role: RoleName },
    /// Every account with a console role, as `user<TAB>role`.
    List,
}

pub(crate) async fn run(cmd: RoleCommand, config: Config) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    let api = |e: cloister_server::error::ApiError| anyhow::anyhow!("{}", e.message);
    match cmd {
        RoleCommand::Grant { name, role } => {
            let id = user_id(&state.config, &name);
            let role = Role::from(role);
            let new = staff::grant_role(&state, &id, role).await.map_err(api)?;
            let already = if new { "" } else { " (already held)" };
            println!("{id} is {}{already}", role.as_str());
        }
        RoleCommand::Revoke { name, role } => {
            let id = user_id(&state.config, &name);
            let role = Role::from(role);
            let had = staff::revoke_role(&state, &id, role).await.map_err(api)?;
            let note = if had { "" } else { " (did not hold it)" };
            println!("{id} is no longer {}{note}", role.as_str());
        }
        RoleCommand::List => {
            for (user, role) in staff::all_roles(&state).await.map_err(api)? {
                println!("{user}\t{}", role.as_str());
            }
        }
    }
    state.store.close().await;
    Ok(())
}
