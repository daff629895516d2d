//! `cloister`: run the homeserver and administer it from the command line.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cloister_audit::{Action, Target};
use cloister_server::config::{Config, LogFormat};
use cloister_server::service::{audit, sso_links, staff};
use cloister_server::store::users;
use cloister_server::Server;

/// jemalloc, not glibc's malloc, for everything the server allocates in
/// Rust: measured (docs/performance.md, "The allocator"), it answered a
/// quarter more sends at full load for the same memory; mimalloc held a
/// third more. SQLite's own pages still come from glibc (`password.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod cli;
use cli::{open_state, open_store, user_id};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "cloister",
    version,
    about = "Cloister: an end-to-end-encrypted Matrix homeserver"
)]
struct Cli {
    /// Configuration file (TOML). Every key can also be set as CLOISTER_<KEY>.
    #[arg(long, short, global = true, env = "CLOISTER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until SIGTERM or Ctrl-C.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage registration tokens (for `registration = "token"`).
    #[command(subcommand, name = "registration-token")]
    RegistrationToken(TokenCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Compliance: retention, purges, legal holds, erasure, subject-access
    /// exports and the record of processing.
    #[command(subcommand)]
    Admin(cli::admin::AdminCommand),
    /// The LDAP directory: sync accounts with it now.
    #[command(subcommand)]
    Ldap(cli::ldap::LdapCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the public key that verifies this server's audit checkpoints.
    Key,
    /// Sign a checkpoint of the log now.
    Checkpoint,
    /// Write the whole log with its checkpoints as JSON (to stdout or --out).
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify an exported log offline. Needs no server, database or config.
    Verify {
        export: PathBuf,
        /// The verifier key printed by `cloister audit key`.
        #[arg(long)]
        key: String,
        /// A checkpoint kept from an earlier verification (its signed note,
        /// as `--save-trusted` wrote it): the log must extend it, so a
        /// truncated, rolled-back or forked log fails.
        #[arg(long)]
        trusted: Option<PathBuf>,
        /// After a successful verification, write the newest checkpoint
        /// here, to pass as `--trusted` next time (may be the same file).
        #[arg(long)]
        save_trusted: Option<PathBuf>,
        /// A witness's key (`cloister audit witness` prints it); repeatable.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// How many of those witnesses must have cosigned the newest
        /// checkpoint (default: 1 when any --witness is given).
        #[arg(long)]
        min_witnesses: Option<usize>,
    },
    /// Run a witness for audit logs (C2SP tlog-witness) on another machine:
    /// it cosigns a log's checkpoints only while they extend what it saw.
    /// Needs no server, database or config.
    Witness {
        /// Where to listen, e.g. 0.0.0.0:7380 (put TLS in front of it).
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: std::net::SocketAddr,
        /// Where its key and the checkpoints it saw are kept.
        #[arg(long)]
        dir: PathBuf,
        /// The witness's name, for a new key (e.g. dpo.example.org/witness).
        #[arg(long)]
        name: Option<String>,
        /// The verifier key of each audit log to follow (`cloister audit key`).
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. Without --password, the password is read from stdin.
    Create {
        name: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password and log out every device.
    ResetPassword {
        name: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Leave all rooms, delete all devices and lock the account.
    Deactivate { name: String },
    /// Link an account to a person at an identity provider: their OIDC
    /// `sub` or SAML persistent NameID (or subject-id).
    Link {
        name: String,
        /// The provider's `id` in `[[oidc]]` or `[[saml]]`.
        #[arg(long)]
        provider: String,
        #[arg(long)]
        subject: String,
    },
    /// Remove a link made by `link` or by a sign-in.
    Unlink {
        name: String,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        subject: String,
    },
    /// List an account's identity links as `issuer<TAB>subject`.
    Links { name: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a registration token and print it once.
    Create {
        /// How many registrations it allows (unlimited if omitted).
        #[arg(long)]
        uses: Option<i64>,
        /// Lifetime in hours (no expiry if omitted).
        #[arg(long)]
        hours: Option<i64>,
    },
}

fn main() -> ExitCode {
    cloister_server::password::unmap_large_blocks_on_free();
    cloister_server::store::sqlite_process::tune_before_first_connection();
    // With the Rust allocations: ALLOCATOR above.
    cloister_server::store::sqlite_process::allocate_with_jemalloc();
    let cli = Cli::parse();
    match &cli.command {
        Command::Audit(AuditCommand::Verify {
            export,
            key,
            trusted,
            save_trusted,
            witnesses,
            min_witnesses,
        }) => {
            let checks = cli::audit_verify::Checks {
                trusted: trusted.as_deref(),
                save_trusted: save_trusted.as_deref(),
                witnesses,
                min_witnesses: *min_witnesses,
            };
            return cli::audit_verify::run(export, key, &checks);
        }
        Command::Audit(AuditCommand::Witness {
            listen,
            dir,
            name,
            logs,
        }) => {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            return match runtime.block_on(cli::audit_witness::run(
                *listen,
                dir,
                name.as_deref(),
                logs,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("cloister: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match Config::load(cli.config.as_deref(), env.iter().cloned()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("cloister: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    for warning in cloister_server::config::near_misses(&env) {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cloister: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            open_store(&config).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::User(cmd) => user_command(cmd, config).await,
        Command::RegistrationToken(TokenCommand::Create { uses, hours }) => {
            let state = open_state(config).await?;
            let new = staff::create_registration_token(&state, staff::By::Shell, uses, hours)
                .await
                .map_err(api_error)?;
            println!("{}", new.token.as_str());
            state.store.close().await;
            Ok(())
        }
        Command::Audit(cmd) => audit_command(cmd, config).await,
        Command::Admin(cmd) => cli::admin::run(cmd, config).await,
        Command::Ldap(cmd) => cli::ldap::run(cmd, config).await,
    }
}

async fn audit_command(cmd: AuditCommand, config: Config) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    match cmd {
        AuditCommand::Key => println!("{}", state.audit.verifier_key()),
        AuditCommand::Checkpoint => print!("{}", audit::checkpoint(&state).await?),
        AuditCommand::Export { out } => {
            // The export itself is audited, and the checkpoint signed after it
            // covers every entry the file contains.
            let entry = audit::by_system(&state, Action::Export).target(Target::new("audit_log")?);
            audit::record_alone(&state, entry).await?;
            audit::checkpoint(&state).await?;
            let json = audit::export(&state).await?.to_json();
            match out {
                Some(path) => std::fs::write(path, json)?,
                None => std::io::Write::write_all(&mut std::io::stdout(), &json)?,
            }
        }
        AuditCommand::Verify { .. } | AuditCommand::Witness { .. } => {
            unreachable!("handled before the configuration is loaded")
        }
    }
    state.store.close().await;
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config.clone()).await?;
    tracing::info!(
        address = %server.local_addr()?,
        server_name = %config.server_name,
        registration = ?config.registration,
        "cloister is listening"
    );
    server.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn read_password(given: Option<String>) -> anyhow::Result<Zeroizing<String>> {
    if let Some(p) = given {
        return Ok(Zeroizing::new(p));
    }
    eprintln!("password (one line on stdin):");
    let mut line = Zeroizing::new(String::new());
    std::io::stdin().lock().read_line(&mut line)?;
    let password = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    anyhow::ensure!(!password.is_empty(), "empty password");
    Ok(password)
}

async fn user_command(cmd: UserCommand, config: Config) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    let config = state.config.clone();
    match cmd {
        UserCommand::Create {
            name,
            password,
            admin,
        } => {
            let password = read_password(password)?;
            let id = staff::create_account(&state, staff::By::Shell, &name, password, admin)
                .await
                .map_err(api_error)?;
            println!("created {id}{}", if admin { " (admin)" } else { "" });
        }
        UserCommand::ResetPassword { name, password } => {
            let id = user_id(&config, &name);
            let password = read_password(password)?;
            staff::reset_password(&state, staff::By::Shell, &id, password)
                .await
                .map_err(api_error)?;
            println!("password reset for {id}; all sessions logged out");
        }
        UserCommand::Deactivate { name } => {
            let id = user_id(&config, &name);
            anyhow::ensure!(
                users::get(&mut *state.store.read().await?, &id)
                    .await?
                    .is_some(),
                "no such user {id}"
            );
            let entry = audit::by_system(&state, Action::AccountDeactivated)
                .target(state.audit.target(&id));
            cloister_server::service::devices::deactivate_user(&state, &id, entry)
                .await
                .map_err(api_error)?;
            println!("deactivated {id}");
        }
        UserCommand::Link {
            name,
            provider,
            subject,
        } => {
            let id = user_id(&config, &name);
            sso_links::link_account(&state, &id, &provider, &subject).await?;
            println!("linked {id} to {subject} at {provider}");
        }
        UserCommand::Unlink {
            name,
            provider,
            subject,
        } => {
            let id = user_id(&config, &name);
            sso_links::unlink_account(&state, &id, &provider, &subject).await?;
            println!("unlinked {id} from {subject} at {provider}");
        }
        UserCommand::Links { name } => {
            let id = user_id(&config, &name);
            for (issuer, subject) in sso_links::links(&state, &id).await? {
                println!("{issuer}\t{subject}");
            }
        }
    }
    state.store.close().await;
    Ok(())
}

/// A refusal from a service, as the CLI reports it.
fn api_error(e: cloister_server::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}
