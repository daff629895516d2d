//! `cloister admin …`: the compliance commands, in two groups with their
//! own modules (retention, purges and holds; erasure, exports and reports),
//! and the console roles.

use clap::Subcommand;
use cloister_server::config::Config;

use super::{compliance, roles, subject};

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    #[command(flatten)]
    Compliance(compliance::ComplianceCommand),
    #[command(flatten)]
    Subject(subject::SubjectCommand),
    /// Console roles: who may sign in to /_cloister/console/ as operator
    /// or data-protection officer.
    #[command(subcommand)]
    Role(roles::RoleCommand),
}

pub(crate) async fn run(cmd: AdminCommand, config: Config) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Compliance(cmd) => compliance::run(cmd, config).await,
        AdminCommand::Subject(cmd) => subject::run(cmd, config).await,
        AdminCommand::Role(cmd) => roles::run(cmd, config).await,
    }
}
