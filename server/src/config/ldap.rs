//! The `[ldap]` section: signing in against an LDAP directory (OpenLDAP,
//! Active Directory). Off by default; local accounts work either way.

use serde::{Deserialize, Deserializer, Serialize};

use super::retention::Lifetime;

/// One string or a list of them.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(url) => vec![url],
        Raw::Many(urls) => urls,
    })
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ldap {
    pub enabled: bool,
    /// `ldap://` or `ldaps://` URLs, tried in order until one answers: one
    /// URL as a string, or a list (`urls`, the earlier name, still reads).
    #[serde(alias = "urls", deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS before binding.
    pub start_tls: bool,
    /// PEM file of the CA(s) the directory's certificate must chain to;
    /// empty trusts the system's roots. (Plain strings rather than options
    /// here and below, so `CLOISTER_LDAP__*` variables can set them.)
    pub ca_file: String,
    /// The service account that searches for users (search-then-bind).
    pub bind_dn: String,
    pub bind_password: String,
    /// A file holding the service account's password (a trailing newline
    /// is dropped), so it need not sit in the config or the environment.
    pub bind_password_file: String,
    /// Without a service account: the user's DN, `{user}` standing for the
    /// login name (escaped as a DN value), e.g. `uid={user},ou=people,dc=example,dc=org`.
    pub bind_dn_template: String,
    pub base_dn: String,
    /// Which entries are people who may sign in. Either the whole filter
    /// with `{username}` where the escaped login name goes, e.g.
    /// `(&(objectClass=person)(uid={username}))`, or conditions ANDed with
    /// `(localpart_attribute=<name>)`, e.g. `(objectClass=inetOrgPerson)`.
    pub user_filter: String,
    /// `uid` (OpenLDAP) or `sAMAccountName` (AD): its value, lower-cased,
    /// is the Matrix localpart (`login_attribute`, the earlier name, still reads).
    #[serde(alias = "login_attribute")]
    pub localpart_attribute: String,
    pub display_name_attribute: String,
    /// Imported at login and by the sync, searchable and shown in the user
    /// directory; empty (the default) imports nothing (data minimisation).
    pub mail_attribute: String,
    /// Likewise, e.g. `department` or `ou`.
    pub department_attribute: String,
    /// Connect and per-operation timeout, in milliseconds.
    pub timeout_ms: u64,
    /// A group DN the user must belong to (by `memberOf`); empty for none.
    pub required_group: String,
    /// Active Directory: nested groups count for `required_group`, and the
    /// `userAccountControl` disabled bit refuses the login.
    pub active_directory: bool,
    /// How often the directory sync runs, written like
    /// `retention.purge_interval` (`30m`, `1h`); `none` or `0s`: never on its
    /// own (`cloister ldap sync` still runs it). Needs the service account.
    pub sync_interval: Lifetime,
    /// The most accounts one sync may deactivate; a run that would
    /// deactivate more changes nothing and says so, as a directory answering
    /// for the wrong base DN would otherwise lock everyone out. `cloister
    /// ldap sync --force` overrides it.
    pub sync_max_deactivations: u64,
    /// Entries per page of the sync's searches (Paged Results, RFC 2696).
    pub page_size: u32,
}

// By hand, so the service account's password never reaches a log line.
impl std::fmt::Debug for Ldap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ldap")
            .field("enabled", &self.enabled)
            .field("urls", &self.url)
            .field("start_tls", &self.start_tls)
            .field("bind_dn", &self.bind_dn)
            .field("base_dn", &self.base_dn)
            .finish_non_exhaustive()
    }
}

impl Default for Ldap {
    fn default() -> Self {
        Ldap {
            enabled: false,
            url: Vec::new(),
            start_tls: false,
            ca_file: String::new(),
            bind_dn: String::new(),
            bind_password: String::new(),
            bind_password_file: String::new(),
            bind_dn_template: String::new(),
            base_dn: String::new(),
            user_filter: "(objectClass=*)".into(),
            localpart_attribute: "uid".into(),
            display_name_attribute: "displayName".into(),
            mail_attribute: String::new(),
            department_attribute: String::new(),
            timeout_ms: 5000,
            required_group: String::new(),
            active_directory: false,
            sync_interval: Lifetime::hours(1),
            sync_max_deactivations: 50,
            page_size: 500,
        }
    }
}

impl Ldap {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.url.is_empty() {
            return Err("ldap.url must name at least one directory server".into());
        }
        if let Some(url) = self
            .url
            .iter()
            .find(|u| !(u.starts_with("ldap://") || u.starts_with("ldaps://")))
        {
            return Err(format!(
                "ldap.url: {url:?} is not an ldap:// or ldaps:// URL"
            ));
        }
        if self.bind_dn.is_empty() == self.bind_dn_template.is_empty() {
            return Err("ldap: set either bind_dn (a service account) or bind_dn_template".into());
        }
        // An empty password makes the service bind anonymous (RFC 4513
        // §5.1.2): it would "work" and then find nobody, or too much.
        if !self.bind_dn.is_empty()
            && self.bind_password.is_empty()
            && self.bind_password_file.is_empty()
        {
            return Err("ldap.bind_password or bind_password_file is required with bind_dn".into());
        }
        if !self.bind_password.is_empty() && !self.bind_password_file.is_empty() {
            return Err("ldap: set bind_password or bind_password_file, not both".into());
        }
        if !self.bind_dn_template.is_empty() && !self.bind_dn_template.contains("{user}") {
            return Err("ldap.bind_dn_template must contain {user}".into());
        }
        if self.bind_dn_template.is_empty() && self.base_dn.is_empty() {
            return Err("ldap.base_dn is required with a service account".into());
        }
        if self.localpart_attribute.is_empty() || self.timeout_ms == 0 {
            return Err("ldap.localpart_attribute and ldap.timeout_ms must be set".into());
        }
        if !self.user_filter.starts_with('(') || !self.user_filter.ends_with(')') {
            return Err("ldap.user_filter must be a parenthesised LDAP filter".into());
        }
        if self.page_size == 0 {
            return Err("ldap.page_size must be at least 1".into());
        }
        Ok(())
    }

    /// Reads `bind_password_file` into `bind_password`, once at start.
    pub(super) fn read_secrets(&mut self) -> Result<(), String> {
        if !self.enabled || self.bind_password_file.is_empty() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.bind_password_file)
            .map_err(|e| format!("ldap.bind_password_file {:?}: {e}", self.bind_password_file))?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err("ldap.bind_password_file is empty".into());
        }
        self.bind_password = password.to_owned();
        Ok(())
    }

    /// The periodic sync's interval in milliseconds; None when it is off.
    pub fn sync_every_ms(&self) -> Option<i64> {
        self.sync_interval
            .as_millis()
            .filter(|ms| *ms > 0 && self.can_sync())
    }

    /// Whether the directory can be listed: sync needs a service account.
    pub fn can_sync(&self) -> bool {
        self.enabled && !self.bind_dn.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(env: &[(&str, &str)]) -> Result<Config, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(None, env).map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_set_from_the_environment() {
        assert!(!load(&[]).unwrap().ldap.enabled);
        let config = load(&[
            ("CLOISTER_LDAP__ENABLED", "true"),
            (
                "CLOISTER_LDAP__URL",
                r#"["ldaps://a.example", "ldap://b.example"]"#,
            ),
            ("CLOISTER_LDAP__BIND_DN", "cn=svc,dc=example,dc=org"),
            ("CLOISTER_LDAP__BIND_PASSWORD", "svc-secret"),
            ("CLOISTER_LDAP__BASE_DN", "dc=example,dc=org"),
            (
                "CLOISTER_LDAP__REQUIRED_GROUP",
                "cn=matrix,dc=example,dc=org",
            ),
        ])
        .unwrap();
        assert_eq!(config.ldap.url.len(), 2);
        assert_eq!(config.ldap.required_group, "cn=matrix,dc=example,dc=org");
        assert!(!format!("{config:?}").contains("svc-secret"));
    }

    #[test]
    fn one_url_earlier_names_and_a_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("ldap-password");
        std::fs::write(&secret, "from-a-file\n").unwrap();
        let toml = dir.path().join("cloister.toml");
        std::fs::write(
            &toml,
            format!(
                "[ldap]\nenabled = true\nurls = [\"ldap://a.example\"]\nlogin_attribute = \"cn\"\n\
                 bind_dn = \"cn=svc\"\nbase_dn = \"dc=example\"\nbind_password_file = {:?}\n\
                 sync_interval = \"15m\"\n",
                secret.display().to_string()
            ),
        )
        .unwrap();
        let config = Config::load(Some(&toml), Vec::new()).unwrap().ldap;
        assert_eq!(config.url, ["ldap://a.example"]);
        assert_eq!(config.localpart_attribute, "cn");
        assert_eq!(config.bind_password, "from-a-file");
        assert_eq!(config.sync_every_ms(), Some(15 * 60 * 1000));
        let config = load(&[
            ("CLOISTER_LDAP__ENABLED", "true"),
            ("CLOISTER_LDAP__URL", "ldaps://one.example"),
            ("CLOISTER_LDAP__BIND_DN_TEMPLATE", "uid={user},dc=example"),
            ("CLOISTER_LDAP__SYNC_INTERVAL", "none"),
        ])
        .unwrap()
        .ldap;
        assert_eq!(config.url, ["ldaps://one.example"]);
        assert_eq!(config.sync_every_ms(), None, "no service account, no sync");
        let both = load(&[
            ("CLOISTER_LDAP__ENABLED", "true"),
            ("CLOISTER_LDAP__URL", "ldaps://one.example"),
            ("CLOISTER_LDAP__BIND_DN", "cn=svc"),
            ("CLOISTER_LDAP__BASE_DN", "dc=example"),
            ("CLOISTER_LDAP__BIND_PASSWORD", "x"),
            ("CLOISTER_LDAP__BIND_PASSWORD_FILE", "/nonexistent"),
        ]);
        assert!(both.is_err());
        let missing = load(&[
            ("CLOISTER_LDAP__ENABLED", "true"),
            ("CLOISTER_LDAP__URL", "ldaps://one.example"),
            ("CLOISTER_LDAP__BIND_DN", "cn=svc"),
            ("CLOISTER_LDAP__BASE_DN", "dc=example"),
            (
                "CLOISTER_LDAP__BIND_PASSWORD_FILE",
                "/nonexistent/ldap-password",
            ),
        ]);
        assert!(missing.unwrap_err().contains("bind_password_file"));
    }

    #[test]
    fn incomplete_settings_are_refused() {
        let on = ("CLOISTER_LDAP__ENABLED", "true");
        let url = ("CLOISTER_LDAP__URL", r#"["ldap://a.example"]"#);
        let template = ("CLOISTER_LDAP__BIND_DN_TEMPLATE", "uid={user},dc=example");
        assert!(load(&[on]).is_err(), "no URL");
        assert!(load(&[on, url]).is_err(), "neither bind mode");
        assert!(load(&[on, url, template]).is_ok());
        let bad_url = ("CLOISTER_LDAP__URL", r#"["http://a.example"]"#);
        assert!(load(&[on, bad_url, template]).is_err());
        let service = ("CLOISTER_LDAP__BIND_DN", "cn=svc,dc=example");
        let base = ("CLOISTER_LDAP__BASE_DN", "dc=example");
        assert!(
            load(&[on, url, service, base]).is_err(),
            "no service password"
        );
        assert!(
            load(&[on, url, service, base, template]).is_err(),
            "both modes"
        );
    }
}
