//! `cloister admin retention|purge|hold …`: the operator's twins of the
//! retention, purge and legal-hold admin API. Each call is audited as an
//! `admin_call` by the system, besides the entry its action writes.

use clap::{Args, Subcommand};
use cloister_audit::{Action, Actor, Target};
use cloister_server::config::{Config, Lifetime};
use cloister_server::service::holds::{self as hold_service, By, NewHold};
use cloister_server::service::Context;
use cloister_server::service::{audit, purge, retention};
use cloister_server::store::holds::{self, Scope};
use serde_json::{json, Map, Value};

use super::{open_state, user_id};

#[derive(Subcommand)]
pub(crate) enum ComplianceCommand {
    /// Show or set retention policies.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Run the retention purge now and print its summary.
    Purge,
    /// Place, release and list legal holds.
    #[command(subcommand)]
    Hold(HoldCommand),
}

#[derive(Subcommand)]
pub(crate) enum RetentionCommand {
    /// The server's settings, or one room's policy.
    Show { room: Option<String> },
    /// Set a room's policy (sends m.room.retention as the server).
    Set {
        room: String,
        /// e.g. 1h, 30d, 52w.
        #[arg(long)]
        max_lifetime: Option<Lifetime>,
        #[arg(long)]
        min_lifetime: Option<Lifetime>,
    },
    /// Return a room to the server default.
    Clear { room: String },
}

#[derive(Subcommand)]
pub(crate) enum HoldCommand {
    /// Hold a user (custodian) or a room.
    Set(SetHold),
    /// Release a hold by its id.
    Release { hold_id: String },
    /// List holds (active ones unless --all).
    List {
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args)]
pub(crate) struct SetHold {
    /// A user name or id (custodian hold).
    #[arg(long, conflicts_with = "room", required_unless_present = "room")]
    user: Option<String>,
    /// A room id.
    #[arg(long)]
    room: Option<String>,
    /// The legal case this hold is for.
    #[arg(long = "case")]
    case_id: String,
    #[arg(long)]
    reason: String,
}

fn operator() -> By {
    By {
        name: "operator".into(),
        actor: Actor::system(),
    }
}

async fn record_call(state: &Context, name: &str) -> anyhow::Result<()> {
    let entry = audit::by_system(state, Action::AdminCall).target(Target::new(name)?);
    audit::record_alone(state, entry).await?;
    Ok(())
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub(crate) async fn run(cmd: ComplianceCommand, config: Config) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    let result = dispatch(&state, cmd).await;
    state.store.close().await;
    result
}

async fn dispatch(state: &Context, cmd: ComplianceCommand) -> anyhow::Result<()> {
    let api = |e: cloister_server::error::ApiError| anyhow::anyhow!("{}", e.message);
    match cmd {
        ComplianceCommand::Retention(RetentionCommand::Show { room }) => {
            record_call(state, "retention.show").await?;
            match room {
                None => print_json(&serde_json::to_value(&state.config.retention)?),
                Some(room) => {
                    let mut c = state.store.read().await?;
                    anyhow::ensure!(
                        cloister_server::store::rooms::exists(&mut c, &room).await?,
                        "no such room {room}"
                    );
                    print_json(
                        &retention::room_policy(state, &mut c, &room)
                            .await?
                            .to_json(),
                    );
                }
            }
        }
        ComplianceCommand::Retention(RetentionCommand::Set {
            room,
            max_lifetime,
            min_lifetime,
        }) => {
            record_call(state, "retention.set").await?;
            let mut content = Map::new();
            for (name, value) in [
                ("max_lifetime", max_lifetime),
                ("min_lifetime", min_lifetime),
            ] {
                match value {
                    Some(Lifetime::Millis(ms)) => {
                        content.insert(name.into(), json!(ms));
                    }
                    Some(Lifetime::Forever) => {
                        anyhow::bail!("--{} needs a duration", name.replace('_', "-"))
                    }
                    None => {}
                }
            }
            anyhow::ensure!(
                !content.is_empty(),
                "give --max-lifetime and/or --min-lifetime"
            );
            let content = Value::Object(content);
            let event = retention::set_room_policy(state, Actor::system(), &room, &content)
                .await
                .map_err(api)?;
            let policy = retention::policy_from_content(state, Some(&event.content));
            println!(
                "{room}: messages now expire after {} ({})",
                policy.max_lifetime, event.event_id
            );
        }
        ComplianceCommand::Retention(RetentionCommand::Clear { room }) => {
            record_call(state, "retention.clear").await?;
            retention::set_room_policy(state, Actor::system(), &room, &json!({}))
                .await
                .map_err(api)?;
            println!(
                "{room}: back to the server default ({})",
                state.config.retention.default_max_lifetime
            );
        }
        ComplianceCommand::Purge => {
            record_call(state, "purge").await?;
            let summary = purge::run(state).await?;
            print_json(&serde_json::to_value(&summary)?);
            anyhow::ensure!(
                summary.errors.is_empty(),
                "the purge had {} failed step(s); see above",
                summary.errors.len()
            );
        }
        ComplianceCommand::Hold(HoldCommand::Set(set)) => {
            record_call(state, "hold.set").await?;
            let (scope, target) = match (&set.user, &set.room) {
                (Some(user), _) => (Scope::User, user_id(&state.config, user)),
                (None, Some(room)) => (Scope::Room, room.clone()),
                (None, None) => anyhow::bail!("give --user or --room"),
            };
            let new = NewHold {
                scope,
                target: &target,
                case_id: &set.case_id,
                reason: &set.reason,
            };
            let hold = hold_service::set(state, operator(), new)
                .await
                .map_err(api)?;
            println!("{}", hold.hold_id);
        }
        ComplianceCommand::Hold(HoldCommand::Release { hold_id }) => {
            record_call(state, "hold.release").await?;
            hold_service::release(state, operator(), &hold_id)
                .await
                .map_err(api)?;
            println!("released {hold_id}");
        }
        ComplianceCommand::Hold(HoldCommand::List { all }) => {
            record_call(state, "hold.list").await?;
            let list = holds::list(&mut *state.store.read().await?, !all).await?;
            print_json(&json!({ "holds": list }));
        }
    }
    Ok(())
}
