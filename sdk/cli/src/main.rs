//! `cloister-cli`: an end-to-end encrypted Matrix client for scripts and
//! terminals, built on the Cloister SDK.
//!
//! State (keys, sessions, sync position, rooms) lives in an encrypted
//! store: `--store DIR` (default: the user's data directory), unlocked
//! with `--passphrase` or `CLOISTER_STORE_PASSPHRASE` (prompted for on a
//! terminal). Every command catches up with a short sync first; message
//! events that arrive then are kept (encrypted, in the store) for the next
//! `listen`, so scripts do not lose messages between commands.

mod output;
mod recovery;
mod verify;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use cloister_sdk::client::{Client, ClientError, CreateRoom, Direction, TimelineEvent};
use cloister_sdk::crypto::{DeviceTrust, LocalTrust};
use cloister_sdk::store::{SqliteStore, StoreError};

use output::{print_event, Inbox};

#[derive(Parser)]
#[command(
    name = "cloister-cli",
    version,
    about = "End-to-end encrypted messaging on a Cloister (Matrix) homeserver"
)]
struct Cli {
    /// Homeserver base URL (needed for `login`; later taken from the store).
    #[arg(long, global = true, env = "CLOISTER_HOMESERVER")]
    homeserver: Option<String>,
    /// Directory of the encrypted store [default: <data dir>/cloister-cli].
    #[arg(long, global = true, env = "CLOISTER_STORE")]
    store: Option<PathBuf>,
    /// Passphrase of the store (prompted for on a terminal when absent).
    #[arg(
        long,
        global = true,
        env = "CLOISTER_STORE_PASSPHRASE",
        hide_env_values = true
    )]
    passphrase: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in and create this device's keys.
    Login {
        /// User id or localpart.
        user: String,
        /// Password (prompted for when absent).
        #[arg(long, env = "CLOISTER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long, default_value = "cloister-cli")]
        device_name: String,
    },
    /// Log out: the server deletes the device, the store is wiped.
    Logout,
    /// Show the logged-in user, device and fingerprint.
    Whoami,
    /// List rooms.
    Rooms {
        #[arg(long)]
        json: bool,
    },
    /// Create an encrypted room; prints its id.
    CreateRoom {
        #[arg(long)]
        name: Option<String>,
        /// User to invite (repeatable).
        #[arg(long)]
        invite: Vec<String>,
    },
    /// Invite a user to a room.
    Invite { room: String, user: String },
    /// Join a room (id or alias).
    Join { room: String },
    /// Leave a room.
    Leave { room: String },
    /// Send an encrypted text message; prints the event id.
    Send { room: String, text: String },
    /// Send an encrypted file; prints the event id.
    SendFile {
        room: String,
        path: PathBuf,
        #[arg(long, default_value = "application/octet-stream")]
        mimetype: String,
    },
    /// Print decrypted messages as they arrive.
    Listen {
        /// Only this room.
        room: Option<String>,
        /// Stop after this many messages (exit 1 if the timeout comes first).
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show a room's history, decrypted, oldest first.
    History {
        room: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Download and decrypt the file of a file message.
    Download { event_id: String, path: PathBuf },
    /// List this account's devices, or with a user id that user's devices
    /// as this device knows them: fingerprint and trust.
    Devices { user: Option<String> },
    /// Record your decision about another device, after comparing its
    /// fingerprint with its owner out of band.
    Trust {
        user: String,
        device: String,
        decision: TrustDecision,
    },
    /// Recovery key, secret storage and key backup.
    Recovery {
        #[command(subcommand)]
        action: RecoveryAction,
    },
    /// Cross-signing: one identity that vouches for all your devices.
    CrossSigning {
        #[command(subcommand)]
        action: CrossSigningAction,
    },
    /// Verify a device by comparing emoji: `verify USER [DEVICE]` asks
    /// them, `verify --incoming` answers the next request. Prints the emoji
    /// and asks on standard input whether they match the other screen.
    Verify {
        /// Whom to verify (yourself for your other devices).
        #[arg(required_unless_present = "incoming")]
        user: Option<String>,
        /// Only this device of theirs [default: all they have].
        device: Option<String>,
        /// Ask in this room (a DM with them), as Element verifies other
        /// people, instead of over to-device messages.
        #[arg(long, conflicts_with = "device")]
        room: Option<String>,
        /// Wait for another device's request instead of sending one.
        #[arg(long, conflicts_with = "user")]
        incoming: bool,
        /// Compare emoji, or show or scan a QR code.
        #[arg(long, value_enum, default_value = "emoji")]
        method: verify::Method,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

/// What `recovery` does.
#[derive(Subcommand)]
enum RecoveryAction {
    /// Make a recovery key (printed once) that keeps your cross-signing keys
    /// and your key backup's key on the server, encrypted; your room keys
    /// go to the backup from now on.
    Setup {
        /// Derive the key from this passphrase instead (the recovery key
        /// is still printed, as a fallback).
        #[arg(long, env = "CLOISTER_RECOVERY_PASSPHRASE", hide_env_values = true)]
        recovery_passphrase: Option<String>,
    },
    /// On a new device: take your history's keys and your trust back with
    /// the recovery key (or passphrase).
    Restore {
        #[arg(long, env = "CLOISTER_RECOVERY_KEY", hide_env_values = true)]
        key: Option<String>,
    },
}

/// What `cross-signing` does.
#[derive(Subcommand)]
enum CrossSigningAction {
    /// Create your cross-signing identity on this device (the server may ask
    /// for your password; replacing an identity always does).
    Setup {
        /// Replace the identity you have (everyone will see it changed).
        #[arg(long)]
        reset: bool,
        #[arg(long, env = "CLOISTER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Whether a user's identity (yours by default) is verified.
    Status { user: Option<String> },
}

/// What `trust` records.
#[derive(Clone, Copy, clap::ValueEnum)]
enum TrustDecision {
    /// Trusted: its messages show as verified.
    Verified,
    /// Never send it room keys.
    Blocked,
    /// Back to no decision.
    Unset,
}

/// How `devices USER` prints a trust level.
fn trust_word(trust: Option<DeviceTrust>) -> &'static str {
    match trust {
        Some(DeviceTrust::Verified) => "verified",
        Some(DeviceTrust::CrossSigned) => "cross-signed (owner not verified)",
        Some(DeviceTrust::NotSignedByOwner) => "NOT SIGNED BY ITS OWNER",
        Some(DeviceTrust::Unverified) => "unverified",
        Some(DeviceTrust::Blocked) => "blocked",
        None => "unknown",
    }
}

fn default_store_dir() -> PathBuf {
    dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cloister-cli")
}

fn fail(message: impl std::fmt::Display) -> String {
    message.to_string()
}

fn secret(given: Option<String>, prompt: &str, what: &str) -> Result<String, String> {
    if let Some(value) = given {
        return Ok(value);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).map_err(fail);
    }
    Err(format!("no {what} given and no terminal to ask on"))
}

async fn open_store(cli: &Cli) -> Result<Arc<SqliteStore>, String> {
    let dir = cli.store.clone().unwrap_or_else(default_store_dir);
    let passphrase = secret(
        cli.passphrase.clone(),
        "Store passphrase: ",
        "store passphrase (--passphrase or CLOISTER_STORE_PASSPHRASE)",
    )?;
    match SqliteStore::open(dir.join("store.db"), &passphrase).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(StoreError::WrongPassphrase) => Err(format!(
            "wrong passphrase for the store in {}",
            dir.display()
        )),
        Err(error) => Err(format!(
            "cannot open the store in {}: {error}",
            dir.display()
        )),
    }
}

async fn restore(cli: &Cli) -> Result<Client, String> {
    let store = open_store(cli).await?;
    Client::restore(store).await.map_err(fail)?.ok_or_else(|| {
        "not logged in: run `cloister-cli --homeserver URL login USER` first".to_owned()
    })
}

/// Catch up, keeping new messages for the next `listen`.
async fn catch_up(client: &Client) -> Result<(), ClientError> {
    let summary = client.sync_once(Duration::ZERO).await?;
    let mut inbox = Inbox::load(client).await;
    inbox.extend(
        summary
            .events
            .into_iter()
            .filter(|e| output::is_message(client, e)),
    );
    inbox.save(client).await
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("cloister-cli: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<ExitCode, String> {
    if let Command::Login {
        user,
        password,
        device_name,
    } = &cli.command
    {
        let homeserver = cli
            .homeserver
            .clone()
            .ok_or("login needs --homeserver URL")?;
        let store = open_store(cli).await?;
        let password = secret(password.clone(), "Password: ", "password (--password)")?;
        let client = Client::login(&homeserver, user, &password, store, Some(device_name))
            .await
            .map_err(fail)?;
        catch_up(&client).await.map_err(fail)?;
        println!(
            "logged in as {} (device {})",
            client.user_id(),
            client.device_id()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let client = restore(cli).await?;
    if let Command::Logout = &cli.command {
        client.logout().await.map_err(fail)?;
        println!("logged out; the store was wiped");
        return Ok(ExitCode::SUCCESS);
    }
    catch_up(&client).await.map_err(fail)?;
    match &cli.command {
        Command::Login { .. } | Command::Logout => unreachable!("handled above"),
        Command::Whoami => {
            println!("user:        {}", client.user_id());
            println!("device:      {}", client.device_id());
            println!("homeserver:  {}", client.session().homeserver);
            println!("fingerprint: {}", client.fingerprint().await);
        }
        Command::Rooms { json } => output::print_rooms(&client.rooms().await, *json),
        Command::CreateRoom { name, invite } => {
            let options = CreateRoom {
                name: name.clone(),
                invite: invite.clone(),
                ..Default::default()
            };
            println!("{}", client.create_room(&options).await.map_err(fail)?);
        }
        Command::Invite { room, user } => client.invite(room, user).await.map_err(fail)?,
        Command::Join { room } => println!("{}", client.join(room).await.map_err(fail)?),
        Command::Leave { room } => client.leave(room).await.map_err(fail)?,
        Command::Send { room, text } => {
            println!("{}", client.send_text(room, text).await.map_err(fail)?);
        }
        Command::SendFile {
            room,
            path,
            mimetype,
        } => {
            let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let name = file_name(path);
            let event_id = client
                .send_file(room, &name, mimetype, &data)
                .await
                .map_err(fail)?;
            println!("{event_id}");
        }
        Command::Listen {
            room,
            count,
            timeout,
            json,
        } => return listen(&client, room.as_deref(), *count, *timeout, *json).await,
        Command::History { room, limit, json } => {
            let page = client
                .messages(room, None, Direction::Backward, *limit)
                .await
                .map_err(fail)?;
            for event in page.events.iter().rev() {
                if event.state_key.is_none() {
                    print_event(event, *json);
                }
            }
        }
        Command::Download { event_id, path } => {
            let event = client.find_event(event_id).await.map_err(fail)?;
            let file = event.encrypted_file().ok_or_else(|| {
                format!(
                    "{event_id} is not an encrypted file message (type {})",
                    event.event_type
                )
            })?;
            let data = client.download_attachment(&file).await.map_err(fail)?;
            std::fs::write(path, &data).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("saved {} bytes to {}", data.len(), path.display());
        }
        Command::Devices { user: Some(user) } => {
            for device in client.user_devices(user).await {
                let trust = client.device_trust(user, &device.device_id).await;
                println!(
                    "{}\t{}\t{}\t{}",
                    device.device_id,
                    device.ed25519.to_base64(),
                    trust_word(trust),
                    device.display_name.unwrap_or_default()
                );
            }
        }
        Command::Trust {
            user,
            device,
            decision,
        } => {
            let trust = match decision {
                TrustDecision::Verified => LocalTrust::Verified,
                TrustDecision::Blocked => LocalTrust::Blocked,
                TrustDecision::Unset => LocalTrust::Unset,
            };
            if !client
                .set_device_trust(user, device, trust)
                .await
                .map_err(fail)?
            {
                return Err(format!(
                    "{user} has no device {device} that this device knows (sync first)"
                ));
            }
            let now = client.device_trust(user, device).await;
            println!("{user} {device}: {}", trust_word(now));
        }
        Command::Recovery {
            action: RecoveryAction::Setup {
                recovery_passphrase,
            },
        } => recovery::setup(&client, recovery_passphrase.clone()).await?,
        Command::Recovery {
            action: RecoveryAction::Restore { key },
        } => recovery::restore(&client, key.clone()).await?,
        Command::CrossSigning {
            action: CrossSigningAction::Setup { reset, password },
        } => verify::setup(&client, password.as_deref(), *reset).await?,
        Command::CrossSigning {
            action: CrossSigningAction::Status { user },
        } => verify::status(&client, user.as_deref()).await,
        Command::Verify {
            user,
            device,
            room,
            method,
            timeout,
            ..
        } => {
            let target = user.as_deref().map(|user| verify::Target {
                user,
                device: device.as_deref(),
                room: room.as_deref(),
            });
            return verify::run(&client, target, *method, Duration::from_secs(*timeout)).await;
        }
        Command::Devices { user: None } => {
            for device in client.devices().await.map_err(fail)? {
                println!(
                    "{}{}\t{}",
                    device.device_id,
                    if device.is_current {
                        " (this device)"
                    } else {
                        ""
                    },
                    device.display_name.unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned())
}

async fn listen(
    client: &Client,
    room: Option<&str>,
    count: Option<usize>,
    timeout: Option<u64>,
    json: bool,
) -> Result<ExitCode, String> {
    let deadline = timeout.map(|s| Instant::now() + Duration::from_secs(s));
    let wanted = |e: &TimelineEvent| room.is_none_or(|r| e.room_id == r);
    let mut inbox = Inbox::load(client).await;
    let mut printed = 0;
    let done = |printed: usize| count.is_some_and(|c| printed >= c);
    loop {
        // Kept messages first, then new ones; what is not printed stays.
        let (now, later) = inbox.take_matching(&wanted, count.map(|c| c - printed));
        for event in &now {
            print_event(event, json);
        }
        printed += now.len();
        inbox = later;
        inbox.save(client).await.map_err(fail)?;
        if done(printed) {
            return Ok(ExitCode::SUCCESS);
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            if let Some(count) = count {
                eprintln!("cloister-cli: timed out with {printed} of {count} messages");
                return Ok(ExitCode::FAILURE);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let poll = remaining
            .unwrap_or(Duration::from_secs(30))
            .min(Duration::from_secs(30));
        let summary = client.sync_once(poll).await.map_err(fail)?;
        inbox.extend(
            summary
                .events
                .into_iter()
                .filter(|e| output::is_message(client, e)),
        );
    }
}
