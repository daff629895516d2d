//! `cloister admin erase | export | keygen | open-export | report`: the
//! data-subject commands, twins of `/_cloister/admin/v1/users/…/erase`,
//! `…/export` and `/_cloister/admin/v1/report/processing`. Each action on
//! the database is audited as the operator (`system`). `keygen` and
//! `open-export` touch no database: the recipient of an export runs them on
//! their own machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use clap::Subcommand;
use cloister_audit::{Action, Actor, Target};
use cloister_server::config::Config;
use cloister_server::service::{audit, erasure, processing_report, subject_export};
use zeroize::Zeroizing;

use super::{open_state, user_id};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

#[derive(Subcommand)]
pub(crate) enum SubjectCommand {
    /// Erase a person (GDPR Art. 17): delete their data, pseudonymize what
    /// shared rooms need, keep what a legal hold covers. Prints the receipt.
    Erase {
        /// `alice` or `@alice:example.org`.
        user: String,
    },
    /// Export all the server holds about a person (GDPR Art. 15/20).
    Export {
        user: String,
        /// Seal to this X25519 public key (unpadded base64, from `keygen`).
        #[arg(long, conflicts_with = "plain", required_unless_present = "plain")]
        recipient: Option<String>,
        /// Write the export unsealed (plain JSON).
        #[arg(long)]
        plain: bool,
        /// Where to write it (stdout if omitted).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make a key pair to receive sealed exports: writes the secret key
    /// (mode 0600) and prints the public key to give the administrator.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Decrypt a sealed export with the secret key from `keygen`. Needs no
    /// server, database or configuration.
    OpenExport {
        file: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Reports for the data-protection officer.
    #[command(subcommand)]
    Report(ReportCommand),
}

#[derive(Subcommand)]
pub(crate) enum ReportCommand {
    /// The record of processing activities (GDPR Art. 30), Markdown or JSON.
    Processing {
        #[arg(long)]
        json: bool,
    },
}

fn api_error(e: cloister_server::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}

fn write_out(out: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match out {
        Some(path) => std::fs::write(path, bytes)?,
        None => std::io::stdout().write_all(bytes)?,
    }
    Ok(())
}

pub(crate) async fn run(cmd: SubjectCommand, config: Config) -> anyhow::Result<()> {
    match cmd {
        SubjectCommand::Keygen { out } => keygen(&out),
        SubjectCommand::OpenExport { file, key, out } => open_export(&file, &key, out.as_deref()),
        SubjectCommand::Erase { user } => {
            let state = open_state(config).await?;
            let id = user_id(&state.config, &user);
            let receipt = erasure::erase_user(&state, &id, Actor::system())
                .await
                .map_err(api_error)?;
            println!("{}", serde_json::to_string_pretty(&receipt)?);
            state.store.close().await;
            Ok(())
        }
        SubjectCommand::Export {
            user,
            recipient,
            plain: _,
            out,
        } => {
            let recipient = match &recipient {
                Some(key) => Some(subject_export::parse_recipient(key).map_err(api_error)?),
                None => None,
            };
            let state = open_state(config).await?;
            let id = user_id(&state.config, &user);
            let bytes = subject_export::export(&state, &id, Actor::system(), recipient.as_ref())
                .await
                .map_err(api_error)?;
            state.store.close().await;
            write_out(out.as_deref(), &bytes)
        }
        SubjectCommand::Report(ReportCommand::Processing { json }) => {
            let state = open_state(config).await?;
            let entry = audit::by_system(&state, Action::AdminCall)
                .target(Target::new("report.processing")?);
            audit::record_alone(&state, entry).await?;
            let record = processing_report::build(&state).await.map_err(api_error)?;
            state.store.close().await;
            let text = if json {
                serde_json::to_string_pretty(&record)? + "\n"
            } else {
                processing_report::to_markdown(&record)
            };
            write_out(None, text.as_bytes())
        }
    }
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    let (secret, public) = cloister_audit::seal::generate_recipient_key();
    let encoded = Zeroizing::new(format!("{}\n", B64.encode(secret.as_bytes())));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    file.write_all(encoded.as_bytes())?;
    file.sync_all()?;
    println!("{}", B64.encode(public.as_bytes()));
    Ok(())
}

fn open_export(file: &Path, key: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    let text = Zeroizing::new(
        std::fs::read_to_string(key)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key.display()))?,
    );
    let bytes = Zeroizing::new(
        B64.decode(text.trim().trim_end_matches('='))
            .map_err(|_| anyhow::anyhow!("{} does not hold a key from `keygen`", key.display()))?,
    );
    let secret: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} does not hold a key from `keygen`", key.display()))?;
    let secret = x25519_dalek::StaticSecret::from(secret);
    let container = std::fs::read(file)?;
    let plain = cloister_audit::seal::open(&container, &secret)?;
    write_out(out, &plain)
}
