//! A real OpenID provider for one test: panva's `oidc-provider` (the npm
//! package, pinned in `tests/oidc-provider/package-lock.json`) under Node,
//! from `tests/oidc-provider/provider.mjs`, on a free port of 127.0.0.1, and
//! killed when dropped. It is the provider single sign-on is tested against:
//! discovery, signed ID tokens, the userinfo endpoint and back-channel
//! logout as a certified implementation does them, not as we imagine them.
//!
//! It knows one client, [`CLIENT_ID`] with [`CLIENT_SECRET`]
//! (`client_secret_basic`), code flow only, PKCE (S256) required, its
//! `redirect_uri` and `backchannel_logout_uri` those given to
//! [`OidcProvider::start`], `backchannel_logout_session_required` (ID and
//! logout tokens carry `sid`). Scopes `openid profile email`; ID tokens carry
//! the scopes' claims too (`conformIdTokenClaims: false`), signed RS256 with a
//! key made at start. The issuer is plain `http://127.0.0.1:PORT`, which
//! oidc-provider accepts as it is (its cookies are `Secure` only over TLS).
//!
//! There is no login page: whoever [`OidcProvider::sign_in_as`] chose signs
//! in at every login interaction from then on, and every scope and claim
//! asked for is granted, so `/auth` → `/interaction/…` → `/auth/…` → the
//! redirect_uri with `code` and `state` is three redirects for a
//! [`Browser`](crate::browser::Browser). Until someone is chosen the
//! provider answers `error=access_denied`. As at a real provider, a browser
//! that signed in once stays signed in there (single sign-on): use a new
//! `Browser` for another person. Switching accounts in one browser
//! (`prompt=login`) goes through an auto-submitting logout form that
//! `Browser` does not submit by itself.
//!
//! Node: `node` from `PATH`, or `CLOISTER_TEST_NODE`. oidc-provider 9 (the
//! newest, 9.13.3) asks for Node 22 or later and warns on older ones, but
//! needs no more than Node 20.18 (`URL.parse`, `crypto.hash`), and the whole
//! flow, key rotation and back-channel logout were checked on Node 20.20;
//! `provider.mjs` refuses Nodes older than 20.18 with a clear message. The
//! Node 24 that `tests/js` gets from npm would be one more large download
//! for no gain here. `npm ci` runs the first time (and after the lockfile changed),
//! under a lock shared by all test processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::harness::{install_once, Program};

pub const CLIENT_ID: &str = "cloister";
pub const CLIENT_SECRET: &str = "cloister-oidc-test-secret";

/// How long node may take to print its issuer (after `npm ci`), per
/// attempt; generous, as a test building the `cloister` binary meanwhile
/// can starve it of CPU.
const START_TIMEOUT: Duration = Duration::from_secs(40);

/// `npm ci`'s copy of the lockfile it installed, in `node_modules`.
const INSTALLED_LOCKFILE: &str = ".cloister-installed-package-lock.json";

/// A running oidc-provider; killed on drop.
pub struct OidcProvider {
    program: Program,
    _log_dir: TempDir,
}

/// `tests/oidc-provider`.
fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// Runs `npm ci` in [`harness_dir`] unless `node_modules` holds what the
/// lockfile says; once per process, and one process at a time.
async fn install_packages() {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    install_once(&INSTALLED, "cloister-oidc-provider-npm-ci.lock", install).await;
}

fn install() {
    let dir = harness_dir();
    let lockfile = std::fs::read(dir.join("package-lock.json")).expect("read package-lock.json");
    let installed = dir.join("node_modules").join(INSTALLED_LOCKFILE);
    if std::fs::read(&installed).is_ok_and(|copy| copy == lockfile) {
        return;
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run npm ci in {} (is npm installed?): {e}", dir.display()));
    assert!(
        out.status.success(),
        "npm ci in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&installed, lockfile).expect("note the installed lockfile");
}

impl OidcProvider {
    /// Installs the packages if needed, starts the provider for a client
    /// at `redirect_uri` and `backchannel_logout_uri`, and returns once it
    /// listens.
    pub async fn start(redirect_uri: &str, backchannel_logout_uri: &str) -> OidcProvider {
        install_packages().await;
        let log_dir = tempfile::Builder::new()
            .prefix("cloister-oidc-provider-")
            .tempdir()
            .expect("create a directory for the provider's log");
        let log = log_dir.path().join("provider.log");
        let node = std::env::var_os("CLOISTER_TEST_NODE").unwrap_or_else(|| "node".into());
        let mut command = Command::new(&node);
        command
            .arg("provider.mjs")
            .current_dir(harness_dir())
            .env("OIDC_PORT", "0")
            .env("OIDC_REDIRECT_URI", redirect_uri)
            .env("OIDC_BACKCHANNEL_LOGOUT_URI", backchannel_logout_uri)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_EXIT_ON_STDIN_EOF", "1");
        let what = format!("{node:?} provider.mjs (is Node installed?)");
        let program = Program::start(command, &log, "ISSUER", &what, START_TIMEOUT).await;
        OidcProvider {
            program,
            _log_dir: log_dir,
        }
    }

    /// `http://127.0.0.1:<port>` (no trailing slash), as in its discovery
    /// document at `<issuer>/.well-known/openid-configuration`.
    pub fn issuer(&self) -> String {
        self.program.url.clone()
    }

    /// What the provider logged so far: each request, and its errors.
    pub fn log(&self) -> String {
        self.program.log()
    }

    /// Who signs in at the login interactions from now on, and the
    /// account's claims (`preferred_username`, `name`, `email`, …) served
    /// in ID tokens and from userinfo. With an `email`, `email_verified`
    /// is `true` unless given.
    pub async fn sign_in_as(&self, sub: &str, claims: Value) {
        self.program
            .control("next-login", json!({ "sub": sub, "claims": claims }))
            .await;
    }

    /// While `Some`, authorization requests (`GET /auth`) get this nonce in
    /// place of theirs before the provider sees them: ID tokens signed as
    /// ever, with the wrong nonce.
    pub async fn override_nonce(&self, nonce: Option<&str>) {
        self.program
            .control("nonce", json!({ "nonce": nonce }))
            .await;
    }

    /// The lifetime of ID tokens issued from now on (at least 1 second).
    pub async fn set_id_token_ttl(&self, seconds: u64) {
        self.program
            .control("id-token-ttl", json!({ "seconds": seconds }))
            .await;
    }

    /// Replaces the signing key by a new one, with a new `kid`: the JWKS
    /// has only the new key, and new tokens are signed with it. Returns the
    /// new `kid`. (oidc-provider cannot change keys in place: a new
    /// instance takes over the port, with the same sessions and settings.)
    pub async fn rotate_keys(&self) -> String {
        let answer = self.program.control("rotate-keys", json!({})).await;
        answer["kid"].as_str().expect("a kid").to_owned()
    }

    /// Has the provider send a logout token (its own, signed, with `sid`)
    /// to the backchannel_logout_uri for each session of `sub`, then end
    /// those sessions at the provider. Returns
    /// `{"sent": n, "statuses": [the relying party's HTTP status, or null
    /// when unreachable], "deliveries": [{"sid", "status", "body",
    /// "logout_token", "error"}], "sessions_ended": n}`.
    pub async fn backchannel_logout(&self, sub: &str) -> Value {
        self.program
            .control("backchannel-logout", json!({ "sub": sub }))
            .await
    }

    /// The `sid`s of `sub`'s sessions at the provider, as its ID and logout
    /// tokens carry them.
    pub async fn session_ids(&self, sub: &str) -> Vec<String> {
        let answer = self.program.query("sessions", &[("sub", sub)]).await;
        answer["sessions"]
            .as_array()
            .expect("a list of sessions")
            .iter()
            .filter_map(|session| session["sid"].as_str().map(str::to_owned))
            .collect()
    }
}
