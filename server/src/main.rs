//! `cloister`: run the homeserver and administer it from the command line.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cloister_server::config::{Config, LogFormat};
use cloister_server::extract::hash_token;
use cloister_server::store::{users, Store};
use cloister_server::{ids, Server};
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
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("cloister: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
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
            let store = open_store(&config).await?;
            let token = ids::random_string(32);
            let now = now_ms();
            let expiry = hours.map(|h| now + h * 3_600_000);
            users::create_registration_token(
                &mut *store.read().await?,
                &hash_token(&token),
                uses,
                expiry,
                now,
            )
            .await?;
            println!("{token}");
            Ok(())
        }
    }
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

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)?;
    let store = Store::connect(&config.database_url()).await?;
    store.migrate().await?;
    Ok(store)
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

fn now_ms() -> i64 {
    use cloister_server::clock::{Clock, SystemClock};
    SystemClock.now_ms()
}

fn user_id(config: &Config, name: &str) -> String {
    if name.starts_with('@') {
        name.to_owned()
    } else {
        format!("@{}:{}", name.to_lowercase(), config.server_name)
    }
}

async fn user_command(cmd: UserCommand, config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match cmd {
        UserCommand::Create {
            name,
            password,
            admin,
        } => {
            let localpart = name.to_lowercase();
            anyhow::ensure!(
                ids::is_valid_localpart(&localpart),
                "user names may contain only a-z, 0-9 and . _ = - / +"
            );
            let password = read_password(password)?;
            let hash = cloister_server::password::hash(password).await?;
            let id = user_id(&config, &localpart);
            let created = users::create(
                &mut *store.read().await?,
                &id,
                Some(&hash),
                admin,
                &localpart,
                now_ms(),
            )
            .await?;
            anyhow::ensure!(created, "user {id} already exists");
            println!("created {id}{}", if admin { " (admin)" } else { "" });
        }
        UserCommand::ResetPassword { name, password } => {
            let id = user_id(&config, &name);
            let password = read_password(password)?;
            let hash = cloister_server::password::hash(password).await?;
            let mut tx = store.write().await?;
            anyhow::ensure!(
                users::set_password_hash(tx.conn(), &id, &hash).await?,
                "no such user {id}"
            );
            let devices = cloister_server::store::devices::list(tx.conn(), &id).await?;
            for device in devices {
                users::delete_tokens_for_device(tx.conn(), &id, &device.device_id).await?;
            }
            tx.commit().await?;
            println!("password reset for {id}; all sessions logged out");
        }
        UserCommand::Deactivate { name } => {
            let id = user_id(&config, &name);
            anyhow::ensure!(
                users::get(&mut *store.read().await?, &id).await?.is_some(),
                "no such user {id}"
            );
            let state = cloister_server::state::AppState::new(
                config,
                store.clone(),
                std::sync::Arc::new(cloister_server::clock::SystemClock),
            );
            cloister_server::service::devices::deactivate_user(&state, &id)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("deactivated {id}");
        }
    }
    store.close().await;
    Ok(())
}
