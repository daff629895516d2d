//! `cross-signing` and `verify`: the trust commands. Verification is
//! interactive on purpose: the emoji are printed and the user answers
//! whether they match the other screen, on standard input (a script that
//! compares them itself can answer there too).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cloister_sdk::client::{Client, ClientError};
use cloister_sdk::crypto::{VerificationInfo, VerificationPhase};
use tokio::io::AsyncBufReadExt as _;

use crate::fail;

/// How long one sync waits while a verification is under way.
const POLL: Duration = Duration::from_millis(500);

/// `cross-signing setup`: create the identity, this device first trusted.
pub(crate) async fn setup(
    client: &Client,
    password: Option<&str>,
    reset: bool,
) -> Result<(), String> {
    client
        .bootstrap_cross_signing(password, reset)
        .await
        .map_err(|e| match e {
            ClientError::Server { status: 401, .. } if password.is_none() => {
                "the server asks for your password: pass --password (or CLOISTER_PASSWORD)"
                    .to_owned()
            }
            e => fail(e),
        })?;
    client.sync_once(Duration::ZERO).await.map_err(fail)?;
    println!(
        "cross-signing set up for {}; this device is trusted",
        client.user_id()
    );
    Ok(())
}

/// `cross-signing status [USER]`.
pub(crate) async fn status(client: &Client, user: Option<&str>) {
    let user = user.unwrap_or(client.user_id());
    let verified = client.is_identity_verified(user).await;
    let own_keys = client.has_cross_signing_keys().await;
    println!(
        "{user}: identity {}",
        if verified { "verified" } else { "not verified" }
    );
    if user == client.user_id() {
        println!(
            "this device {} the private cross-signing keys",
            if own_keys { "holds" } else { "does not hold" }
        );
    }
}

/// How `verify` verifies once both sides are ready.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Method {
    /// Compare emoji (the requester starts).
    Emoji,
    /// Show a QR code (its content printed as base64) for the other device
    /// to scan.
    Show,
    /// Scan the other device's QR code (its content pasted as base64).
    Scan,
}

/// Whom `verify` asks: a user, one of their devices or all, over
/// to-device or in a room (a DM, as Element does for other people).
pub(crate) struct Target<'a> {
    pub user: &'a str,
    pub device: Option<&'a str>,
    pub room: Option<&'a str>,
}

/// `verify USER [DEVICE] [--room ROOM]` (we ask) or `verify --incoming`
/// (we answer the next request, either kind). Exit 0 once both sides
/// confirmed and checked the keys.
pub(crate) async fn run(
    client: &Client,
    target: Option<Target<'_>>,
    method: Method,
    timeout: Duration,
) -> Result<ExitCode, String> {
    let deadline = Instant::now() + timeout;
    let flow = match target {
        Some(Target { user, device, room }) => {
            let devices: Vec<String> = device.into_iter().map(str::to_owned).collect();
            let flow = match room {
                Some(room) => client.request_verification_in_room(room, user).await,
                None => client.request_verification(user, &devices).await,
            }
            .map_err(fail)?;
            println!("requested verification of {user}; waiting for them to accept");
            flow
        }
        None => {
            println!("waiting for a verification request");
            let request = wait_for(client, deadline, |v| {
                !v.we_requested && v.phase == VerificationPhase::Requested
            })
            .await?
            .ok_or("no verification request arrived in time")?;
            println!(
                "verification request from {} (device {})",
                request.other_user,
                request.other_device.as_deref().unwrap_or("?")
            );
            client
                .accept_verification(&request.flow_id)
                .await
                .map_err(fail)?;
            request.flow_id
        }
    };
    let mut shown = false;
    loop {
        let Some(info) = client.verification(&flow).await else {
            return Err("the verification was forgotten".into());
        };
        match &info.phase {
            VerificationPhase::Ready if method == Method::Emoji && info.we_requested => {
                client.start_sas(&flow).await.map_err(fail)?;
            }
            VerificationPhase::Ready if method == Method::Show && !shown => {
                shown = true;
                let code = client.verification_qr_code(&flow).await.map_err(fail)?;
                println!("qr: {}", STANDARD.encode(code));
                println!("(show this as a QR code, byte mode, for the other device to scan)");
            }
            VerificationPhase::Ready if method == Method::Scan => {
                let line = read_line("Paste the other device's QR code content (base64): ").await?;
                let code = STANDARD
                    .decode(line.trim())
                    .map_err(|_| "that is not base64".to_owned())?;
                client
                    .scan_verification_qr_code(&flow, &code)
                    .await
                    .map_err(fail)?;
                println!("scanned; waiting for the other side");
            }
            VerificationPhase::QrScanned => {
                if ask("The other device scanned the code: did it say so? [y/N] ").await? {
                    client.confirm_qr_scanned(&flow).await.map_err(fail)?;
                } else {
                    client.cancel_verification(&flow).await.map_err(fail)?;
                    println!("cancelled");
                    return Ok(ExitCode::FAILURE);
                }
            }
            VerificationPhase::ShowSas { emoji, decimals } if !shown => {
                shown = true;
                let symbols: Vec<&str> = emoji.iter().map(|e| e.symbol).collect();
                let names: Vec<&str> = emoji.iter().map(|e| e.description).collect();
                println!("emoji: {}", symbols.join(" "));
                println!("emoji-names: {}", names.join(", "));
                println!("numbers: {} {} {}", decimals.0, decimals.1, decimals.2);
                if ask("Do they match the other screen? [y/N] ").await? {
                    client.confirm_sas(&flow).await.map_err(fail)?;
                    println!("confirmed; waiting for the other side");
                } else {
                    client.sas_mismatch(&flow).await.map_err(fail)?;
                    println!("cancelled: the emoji do not match");
                    return Ok(ExitCode::FAILURE);
                }
            }
            VerificationPhase::Done => {
                println!(
                    "verified {} (device {})",
                    info.other_user,
                    info.other_device.as_deref().unwrap_or("?")
                );
                return Ok(ExitCode::SUCCESS);
            }
            VerificationPhase::Cancelled {
                code,
                reason,
                by_us,
            } => {
                let who = if *by_us { "we" } else { "they" };
                println!("cancelled ({who}): {code}: {reason}");
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            client.cancel_verification(&flow).await.map_err(fail)?;
            return Err("timed out; the verification was cancelled".into());
        }
        sync(client).await?;
    }
}

/// One short sync; a failure to send what the crypto core queued (a
/// signature the server refused, say) is shown, not swallowed.
async fn sync(client: &Client) -> Result<(), String> {
    let summary = client.sync_once(POLL).await.map_err(fail)?;
    if let Some(error) = summary.crypto_error {
        eprintln!("cloister-cli: {error}");
    }
    Ok(())
}

/// Sync until a verification matches `wanted`, or the deadline.
async fn wait_for(
    client: &Client,
    deadline: Instant,
    wanted: impl Fn(&VerificationInfo) -> bool,
) -> Result<Option<VerificationInfo>, String> {
    while Instant::now() < deadline {
        if let Some(found) = client.verifications().await.into_iter().find(&wanted) {
            return Ok(Some(found));
        }
        sync(client).await?;
    }
    Ok(None)
}

/// Ask a yes/no question on standard input; anything but yes is no.
async fn ask(question: &str) -> Result<bool, String> {
    let line = read_line(question).await?;
    Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// One line from standard input, after a prompt.
async fn read_line(prompt: &str) -> Result<String, String> {
    print!("{prompt}");
    std::io::stdout().flush().map_err(fail)?;
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .map_err(fail)?;
    Ok(line)
}
