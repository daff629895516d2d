//! Server configuration: a TOML file overlaid with `CLOISTER_*` environment
//! variables. Every key has a working default, so `cloister serve` runs with
//! no file at all.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod console;
mod directory;
mod environment;
mod ldap;
mod oauth;
mod processing;
mod retention;
mod sso;
pub use console::Console;
pub use directory::Directory;
pub use environment::near_misses;
pub use ldap::Ldap;
pub use oauth::OAuth;
pub use processing::Processing;
pub use retention::{Lifetime, Retention};
pub use sso::{Oidc, PasswordLoginMode, Saml, Sso};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The `server_name` part of every user id and room alias.
    pub server_name: String,
    pub listen: SocketAddr,
    /// The URL clients reach us on; derived from `listen` when empty.
    pub public_baseurl: String,
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; empty means SQLite in `data_dir`.
    pub database_url: String,
    pub registration: Registration,
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// Which requests get a log line: `all`, `errors` or `off`.
    pub access_log: AccessLog,
    /// Reverse proxies whose `X-Forwarded-For` names the real client (for
    /// per-address rate limits). Loopback by default.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub limits: Limits,
    pub rate_limit: RateLimit,
    pub encryption: Encryption,
    pub audit: Audit,
    pub retention: Retention,
    pub processing: Processing,
    pub directory: Directory,
    pub ldap: Ldap,
    pub sso: Sso,
    /// OpenID Connect providers, `[[oidc]]` tables.
    pub oidc: Vec<Oidc>,
    /// SAML 2.0 identity providers, `[[saml]]` tables.
    pub saml: Vec<Saml>,
    pub console: Console,
    pub oauth: OAuth,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Audit {
    /// How often new audit entries get a signed checkpoint, in seconds.
    pub checkpoint_interval_secs: u64,
    /// Witnesses each new checkpoint is sent to (C2SP tlog-witness), e.g.
    /// `cloister audit witness` on a machine the DPO's office runs.
    pub witnesses: Vec<AuditWitness>,
    /// A directory (say, a share the DPO's office controls) where each new
    /// checkpoint is also written, as `<size>.checkpoint`; empty: none.
    pub checkpoint_drop_dir: String,
}

/// One witness: where it listens and its public key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditWitness {
    /// The submission prefix: `add-checkpoint` is posted below it.
    pub url: String,
    /// Its cosignature key, `<name>+<id>+<base64>`, as the witness printed it.
    pub key: String,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            checkpoint_interval_secs: 3600,
            witnesses: Vec::new(),
            checkpoint_drop_dir: String::new(),
        }
    }
}

impl Audit {
    fn validate(&self) -> Result<(), String> {
        for w in &self.witnesses {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(format!(
                    "audit.witnesses: {:?} is not an http(s) URL",
                    w.url
                ));
            }
            cloister_audit::witness::CosignatureVerifier::parse(&w.key)
                .map_err(|e| format!("audit.witnesses: the key for {}: {e}", w.url))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Closed,
    Open,
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// One line per request costs a write to standard error, and the log
/// collector's work on it; at thousands of requests a second a site may
/// keep only the failures, or rely on the metrics' per-route histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// Every request.
    All,
    /// Requests answered with a 4xx or 5xx status.
    Errors,
    Off,
}

impl AccessLog {
    pub fn logs(self, status: u16) -> bool {
        match self {
            AccessLog::All => true,
            AccessLog::Errors => status >= 400,
            AccessLog::Off => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest JSON request body, in bytes.
    pub max_request_body: usize,
    /// Largest event (its serialized content), in bytes; the Matrix limit is 65536.
    pub max_event_size: usize,
    /// Largest media upload, in bytes.
    pub max_upload_size: usize,
    /// Longest long-poll `/sync` timeout honoured, in milliseconds.
    pub max_sync_timeout_ms: u64,
    /// How long a woken long-poll waits for more news before it answers, in
    /// milliseconds: in very busy rooms a burst of events then costs one
    /// response per client instead of one per event. Off (0) by default:
    /// measured, it bought throughput only at rates where each room sees an
    /// event every few milliseconds, and cost latency at everyday rates.
    pub sync_coalesce_ms: u64,
    /// Password hashes computed at once (each argon2id hash holds 19 MiB
    /// while it runs); the number of CPU cores by default.
    pub max_password_hashes: usize,
    /// Requests that may wait (up to 5 seconds) for a hashing slot; beyond
    /// them, requests that need a password hash are refused with 429.
    pub password_hash_queue: usize,
    /// Sends and to-device messages are refused with 429 while the oldest
    /// one waiting for the database writer has waited longer than this, in
    /// milliseconds, so an overloaded server answers at once instead of
    /// queueing without end. 0: never refused.
    pub max_write_wait_ms: u64,
    /// How long a request may use a copy of its access token's row instead
    /// of reading it, in milliseconds (`store::token_cache`). A session
    /// ended through any node, or by the admin commands, stops working at
    /// once (on PostgreSQL within milliseconds) whatever this says; one
    /// ended where nothing announces it stops working within this time.
    /// 0: every request reads its token.
    pub access_token_cache_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    pub enabled: bool,
    /// Sustained requests per second per user (or per IP when unauthenticated).
    pub per_second: f64,
    pub burst: f64,
    /// Login and registration attempts per second per IP.
    pub login_per_second: f64,
    pub login_burst: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Encryption {
    /// Room ids exempt from the encryption-only rule. Empty by default.
    pub plaintext_rooms: BTreeSet<String>,
    /// Whether reactions may name their emoji in the clear (an unencrypted
    /// `m.reaction`, or an annotation `key` beside the ciphertext), so the
    /// server can count them. Element sends reactions unencrypted.
    pub plaintext_reactions: bool,
    /// Longest reaction key, in bytes.
    pub max_reaction_key_bytes: usize,
}

impl Default for Encryption {
    fn default() -> Self {
        Encryption {
            plaintext_rooms: BTreeSet::new(),
            plaintext_reactions: true,
            max_reaction_key_bytes: 64,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "localhost".into(),
            listen: "127.0.0.1:8008".parse().expect("valid default address"),
            public_baseurl: String::new(),
            data_dir: PathBuf::from("./cloister-data"),
            database_url: String::new(),
            registration: Registration::Closed,
            log_format: LogFormat::Human,
            access_log: AccessLog::All,
            trusted_proxies: vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv6Addr::LOCALHOST.into(),
            ],
            limits: Limits::default(),
            rate_limit: RateLimit::default(),
            encryption: Encryption::default(),
            audit: Audit::default(),
            retention: Retention::default(),
            processing: Processing::default(),
            directory: Directory::default(),
            ldap: Ldap::default(),
            sso: Sso::default(),
            console: Console::default(),
            oauth: OAuth::default(),
            oidc: Vec::new(),
            saml: Vec::new(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body: 1024 * 1024,
            max_event_size: 65_536,
            max_upload_size: 50 * 1024 * 1024,
            max_sync_timeout_ms: 60_000,
            sync_coalesce_ms: 0,
            max_password_hashes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            password_hash_queue: 64,
            max_write_wait_ms: 500,
            // Both backends: a request without a statement of its own for its
            // token is a third faster at the median on PostgreSQL at 100
            // msg/s and on SQLite at 1,000 (docs/performance.md).
            access_token_cache_ms: 1000,
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            enabled: true,
            per_second: 20.0,
            burst: 200.0,
            login_per_second: 0.5,
            login_burst: 10.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads `path` (if given), then applies `CLOISTER_*` overrides from `env`.
    ///
    /// Nested keys use a double underscore: `CLOISTER_LIMITS__MAX_UPLOAD_SIZE`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        environment::apply(&mut table, env)?;
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        config.ldap.read_secrets().map_err(ConfigError::Invalid)?;
        for provider in &mut config.oidc {
            provider.read_secret().map_err(ConfigError::Invalid)?;
        }
        for provider in &mut config.saml {
            provider.read_certificates().map_err(ConfigError::Invalid)?;
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !crate::ids::is_valid_server_name(&self.server_name) {
            return Err(ConfigError::Invalid(format!(
                "server_name {:?} is not a valid Matrix server name",
                self.server_name
            )));
        }
        if self.limits.max_event_size > 65_536 {
            return Err(ConfigError::Invalid(
                "limits.max_event_size may not exceed the Matrix limit of 65536".into(),
            ));
        }
        if self.limits.max_password_hashes == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_password_hashes must be at least 1".into(),
            ));
        }
        self.retention.validate().map_err(ConfigError::Invalid)?;
        self.ldap.validate().map_err(ConfigError::Invalid)?;
        self.audit.validate().map_err(ConfigError::Invalid)?;
        self.console.validate().map_err(ConfigError::Invalid)?;
        self.oauth.validate().map_err(ConfigError::Invalid)?;
        sso::validate_providers(&self.oidc, &self.saml).map_err(ConfigError::Invalid)?;
        if self.sso.password_login != PasswordLoginMode::On
            && self.oidc.is_empty()
            && self.saml.is_empty()
        {
            return Err(ConfigError::Invalid(
                "sso.password_login is not \"on\" but no [[oidc]] or [[saml]] provider is configured: \
                 nobody could sign in"
                    .into(),
            ));
        }
        if self.ldap.enabled && self.sso.password_login != PasswordLoginMode::On {
            return Err(ConfigError::Invalid(
                "[ldap] signs people in with their password: it cannot be combined with \
                 sso.password_login other than \"on\""
                    .into(),
            ));
        }
        if self.ldap.enabled && self.registration == Registration::Open {
            // Accounts are created at a person's first directory login; with
            // open registration anyone could take a colleague's name first.
            return Err(ConfigError::Invalid(
                "registration = \"open\" cannot be combined with [ldap] enabled: anyone could register \
                 a colleague's directory name before their first login; use \"token\" or \"closed\""
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("cloister.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    /// How long copies of access-token rows are used
    /// (`limits.access_token_cache_ms`).
    pub fn access_token_cache(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.limits.access_token_cache_ms)
    }

    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media")
    }

    pub fn public_baseurl(&self) -> String {
        let url = if self.public_baseurl.is_empty() {
            format!("http://{}/", self.listen)
        } else {
            self.public_baseurl.clone()
        };
        if url.ends_with('/') {
            url
        } else {
            url + "/"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_without_a_file() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8008");
        assert_eq!(config.registration, Registration::Closed);
        assert!(config.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn environment_overrides_file_and_nested_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "server_name = \"file.example\"\n[limits]\nmax_upload_size = 5\n",
        )
        .unwrap();
        let env = vec![
            (
                "CLOISTER_SERVER_NAME".to_string(),
                "env.example".to_string(),
            ),
            ("CLOISTER_REGISTRATION".into(), "token".into()),
            ("CLOISTER_LIMITS__MAX_EVENT_SIZE".into(), "1000".into()),
            ("CLOISTER_TEST_SOMETHING_ELSE".into(), "ignored".into()),
            ("PATH".into(), "/bin".into()),
        ];
        let config = Config::load(Some(&path), env).unwrap();
        assert_eq!(config.server_name, "env.example");
        assert_eq!(config.registration, Registration::Token);
        assert_eq!(config.limits.max_upload_size, 5);
        assert_eq!(config.limits.max_event_size, 1000);
    }

    #[test]
    fn the_access_token_copies_can_be_set_from_the_environment() {
        let load = |env: Vec<(String, String)>| Config::load(None, env).unwrap();
        let default = load(Vec::new());
        assert_eq!(
            default.access_token_cache(),
            std::time::Duration::from_secs(1)
        );
        let set = load(vec![(
            "CLOISTER_LIMITS__ACCESS_TOKEN_CACHE_MS".into(),
            "250".into(),
        )]);
        assert_eq!(set.limits.access_token_cache_ms, 250);
        assert_eq!(
            set.access_token_cache(),
            std::time::Duration::from_millis(250)
        );
    }

    #[test]
    fn the_access_log_can_keep_only_failures_or_nothing() {
        let load = |value: &str| {
            Config::load(None, vec![("CLOISTER_ACCESS_LOG".into(), value.into())])
                .map(|c| c.access_log)
        };
        assert_eq!(
            Config::load(None, Vec::new()).unwrap().access_log,
            AccessLog::All
        );
        let errors = load("errors").unwrap();
        assert!(!errors.logs(200) && !errors.logs(304));
        assert!(errors.logs(404) && errors.logs(429) && errors.logs(500));
        let off = load("off").unwrap();
        assert!(!off.logs(200) && !off.logs(500));
        assert!(AccessLog::All.logs(200));
        assert!(load("some").is_err());
    }

    #[test]
    fn open_registration_is_refused_next_to_ldap() {
        let ldap = |registration: &str| {
            let env: Vec<(String, String)> = [
                ("CLOISTER_REGISTRATION", registration),
                ("CLOISTER_LDAP__ENABLED", "true"),
                ("CLOISTER_LDAP__URL", "[\"ldap://127.0.0.1:1\"]"),
                ("CLOISTER_LDAP__BASE_DN", "dc=example,dc=org"),
                (
                    "CLOISTER_LDAP__BIND_DN_TEMPLATE",
                    "uid={user},dc=example,dc=org",
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            Config::load(None, env)
        };
        let err = ldap("open").unwrap_err().to_string();
        assert!(err.contains("cannot be combined with [ldap]"), "{err}");
        ldap("token").unwrap();
        ldap("closed").unwrap();
    }

    #[test]
    fn identity_providers_come_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from-file\n").unwrap();
        std::fs::write(
            &path,
            format!(
                "[[oidc]]\nid = \"keycloak\"\nissuer = \"https://id.example.org/realms/staff\"\n\
                 client_id = \"cloister\"\nclient_secret_file = {:?}\n",
                secret.display().to_string()
            ),
        )
        .unwrap();
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let config = Config::load(
            Some(&path),
            env(&[
                ("CLOISTER_OIDC__0__NAME", "Staff login"),
                ("CLOISTER_OIDC__1__ID", "entra"),
                ("CLOISTER_OIDC__1__ISSUER", "https://login.example.com/v2.0"),
                ("CLOISTER_OIDC__1__CLIENT_ID", "abc"),
                ("CLOISTER_OIDC__1__CLIENT_SECRET", "s3cret"),
            ]),
        )
        .unwrap();
        assert_eq!(config.oidc.len(), 2);
        assert_eq!(config.oidc[0].display_name(), "Staff login");
        assert_eq!(config.oidc[0].client_secret, "from-file");
        assert_eq!(config.oidc[1].id, "entra");
        assert_eq!(config.oidc[1].localpart_claim, "preferred_username");
        assert!(!format!("{:?}", config.oidc[1]).contains("s3cret"));

        let twice = Config::load(
            Some(&path),
            env(&[
                ("CLOISTER_OIDC__1__ID", "keycloak"),
                ("CLOISTER_OIDC__1__ISSUER", "https://other.example.org"),
                ("CLOISTER_OIDC__1__CLIENT_ID", "x"),
            ]),
        );
        assert!(twice.unwrap_err().to_string().contains("share the id"));
        let not_a_url = Config::load(
            Some(&path),
            env(&[("CLOISTER_OIDC__0__ISSUER", "id.example.org")]),
        );
        assert!(not_a_url
            .unwrap_err()
            .to_string()
            .contains("not an http(s) URL"));
    }

    #[test]
    fn a_saml_provider_without_its_certificate_stops_the_start() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            let mut all = vec![
                ("CLOISTER_SAML__0__ID", "uni"),
                (
                    "CLOISTER_SAML__0__IDP_ENTITY_ID",
                    "https://idp.example.edu/idp",
                ),
                (
                    "CLOISTER_SAML__0__IDP_SSO_URL",
                    "https://idp.example.edu/sso",
                ),
            ];
            all.extend_from_slice(pairs);
            all.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let err = Config::load(None, env(&[])).unwrap_err().to_string();
        assert!(err.contains("idp_certificate_file is required"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let path = empty.display().to_string();
        let err = Config::load(
            None,
            env(&[("CLOISTER_SAML__0__IDP_CERTIFICATE_FILE", &path)]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let two = dir.path().join("two.pem");
        let block = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(&two, format!("{block}{block}")).unwrap();
        let path = two.display().to_string();
        let config = Config::load(
            None,
            env(&[("CLOISTER_SAML__0__IDP_CERTIFICATE_FILE", &path)]),
        )
        .unwrap();
        assert_eq!(config.saml[0].idp_certificates.len(), 2);
    }

    #[test]
    fn invalid_values_are_reported() {
        let env = vec![("CLOISTER_REGISTRATION".to_string(), "sometimes".to_string())];
        assert!(Config::load(None, env).is_err());
        let env = vec![("CLOISTER_SERVER_NAME".to_string(), "bad name!".to_string())];
        assert!(Config::load(None, env).is_err());
    }
}
