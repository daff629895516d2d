//! `cloister audit witness`: a minimal C2SP tlog-witness an institution runs
//! on a machine the server's administrators do not control (the DPO's
//! office, another department). It follows the audit logs whose keys it is
//! given, keeps the newest checkpoint it cosigned of each in a file, and
//! cosigns a new checkpoint only if it extends that one
//! (`cloister_audit::witness::add_checkpoint` decides; this is the HTTP and
//! the file around it). Needs no server configuration or database.
//!
//! The check and the write of the new state happen under one lock, and the
//! state is on disk (written to a temporary file, synced, renamed) before the
//! cosignature leaves: a witness that answered has remembered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::{engine::general_purpose::STANDARD, Engine};
use cloister_audit::witness::{add_checkpoint, Cosigner, WitnessedHead};
use cloister_audit::NoteVerifier;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

const KEY_FILE: &str = "witness.key";
const STATE_FILE: &str = "witness-state.json";
/// A request is a few proof lines and a checkpoint.
const MAX_BODY: usize = 64 * 1024;

#[derive(Serialize, Deserialize, Default)]
struct Heads(BTreeMap<String, StoredHead>);

#[derive(Serialize, Deserialize, Clone, Copy)]
struct StoredHead {
    size: u64,
    #[serde(with = "root_b64")]
    root: [u8; 32],
}

mod root_b64 {
    use base64::{engine::general_purpose::STANDARD, Engine};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(root: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(root))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| serde::de::Error::custom("a root is the base64 of 32 bytes"))
    }
}

struct Witness {
    cosigner: Cosigner,
    logs: Vec<NoteVerifier>,
    state_path: PathBuf,
    heads: Mutex<Heads>,
}

/// Loads or creates the witness key in `dir`; runs until Ctrl-C or SIGTERM.
pub(crate) async fn run(
    listen: SocketAddr,
    dir: &Path,
    name: Option<&str>,
    logs: &[String],
) -> anyhow::Result<()> {
    let logs = logs
        .iter()
        .map(|k| {
            NoteVerifier::parse(k.trim())
                .map_err(|e| anyhow::anyhow!("--log {k:?} is not a log key: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!logs.is_empty(), "name at least one --log key to follow");
    cloister_server::store::file_modes::create_private_dir(dir)?;
    let cosigner = load_or_create_key(dir, name)?;
    let state_path = dir.join(STATE_FILE);
    let heads = match std::fs::read(&state_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", state_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Heads::default(),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", state_path.display())),
    };
    println!("witness key: {}", cosigner.verifier());
    for log in &logs {
        println!("following:   {}", log.name());
    }
    let witness = Arc::new(Witness {
        cosigner,
        logs,
        state_path,
        heads: Mutex::new(heads),
    });
    let app = Router::new()
        .route("/add-checkpoint", post(add))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(witness);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening:   http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn load_or_create_key(dir: &Path, name: Option<&str>) -> anyhow::Result<Cosigner> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = Cosigner::parse(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if let Some(name) = name {
                anyhow::ensure!(
                    key.verifier().name() == name,
                    "{} holds the key of witness {:?}, not {name:?}",
                    path.display(),
                    key.verifier().name()
                );
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = name.ok_or_else(|| {
                anyhow::anyhow!("no witness key yet: give --name (e.g. dpo.example.org/witness)")
            })?;
            let key = Cosigner::generate(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            cloister_server::store::file_modes::write_private_file(
                &path,
                key.to_key_string().as_bytes(),
            )?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// `POST /add-checkpoint` (C2SP tlog-witness).
async fn add(State(w): State<Arc<Witness>>, body: String) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut heads = w.heads.lock().await;
    let stored = |origin: &str| {
        heads.0.get(origin).map(|h| WitnessedHead {
            size: h.size,
            root: h.root,
        })
    };
    match add_checkpoint(&w.cosigner, &w.logs, stored, &body, now) {
        Ok((origin, head, line)) => {
            let previous = heads.0.insert(
                origin.clone(),
                StoredHead {
                    size: head.size,
                    root: head.root,
                },
            );
            if let Err(e) = persist(&w.state_path, &heads) {
                // Not remembered, so not cosigned.
                match previous {
                    Some(p) => heads.0.insert(origin, p),
                    None => heads.0.remove(&origin),
                };
                eprintln!(
                    "cloister witness: cannot save {}: {e}",
                    w.state_path.display()
                );
                return (StatusCode::INTERNAL_SERVER_ERROR, "cannot save state\n").into_response();
            }
            println!(
                "cosigned:    {origin} at {} entries ({})",
                head.size,
                STANDARD.encode(head.root)
            );
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], line).into_response()
        }
        Err(refusal) => {
            println!("refused:     {refusal}");
            let (text, content_type) = refusal.body();
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (status, [(header::CONTENT_TYPE, content_type)], text).into_response()
        }
    }
}

fn persist(path: &Path, heads: &Heads) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(heads).map_err(std::io::Error::other)?;
    cloister_server::store::file_modes::write_private_file(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
