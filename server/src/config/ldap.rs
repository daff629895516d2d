//! The `[ldap]` section: signing in against an LDAP directory (OpenLDAP,
//! Active Directory). Off by default; local accounts work either way.

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ldap {
    pub enabled: bool,
    /// `ldap://` or `ldaps://` URLs, tried in order until one answers.
    pub urls: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS before binding.
    pub start_tls: bool,
    /// PEM file of the CA(s) the directory's certificate must chain to;
    /// empty trusts the system's roots. (Plain strings rather than options
    /// here and below, so `CLOISTER_LDAP__*` variables can set them.)
    pub ca_file: String,
    /// The service account that searches for users (search-then-bind).
    pub bind_dn: String,
    pub bind_password: String,
    /// Without a service account: the user's DN, `{user}` standing for the
    /// login name (escaped as a DN value), e.g. `uid={user},ou=people,dc=example,dc=org`.
    pub bind_dn_template: String,
    pub base_dn: String,
    /// Further conditions on a user entry, ANDed with the login match.
    pub user_filter: String,
    /// `uid` (OpenLDAP), `sAMAccountName` or `userPrincipalName` (AD).
    pub login_attribute: String,
    pub display_name_attribute: String,
    /// Reserved for the directory sync; login does not read it.
    pub mail_attribute: String,
    /// Connect and per-operation timeout, in milliseconds.
    pub timeout_ms: u64,
    /// A group DN the user must belong to (by `memberOf`); empty for none.
    pub required_group: String,
    /// Active Directory: nested groups count for `required_group`, and the
    /// `userAccountControl` disabled bit refuses the login.
    pub active_directory: bool,
}

// By hand, so the service account's password never reaches a log line.
impl std::fmt::Debug for Ldap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ldap")
            .field("enabled", &self.enabled)
            .field("urls", &self.urls)
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
            urls: Vec::new(),
            start_tls: false,
            ca_file: String::new(),
            bind_dn: String::new(),
            bind_password: String::new(),
            bind_dn_template: String::new(),
            base_dn: String::new(),
            user_filter: "(objectClass=*)".into(),
            login_attribute: "uid".into(),
            display_name_attribute: "displayName".into(),
            mail_attribute: "mail".into(),
            timeout_ms: 5000,
            required_group: String::new(),
            active_directory: false,
        }
    }
}

impl Ldap {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.urls.is_empty() {
            return Err("ldap.urls must name at least one directory server".into());
        }
        if let Some(url) = self
            .urls
            .iter()
            .find(|u| !(u.starts_with("ldap://") || u.starts_with("ldaps://")))
        {
            return Err(format!(
                "ldap.urls: {url:?} is not an ldap:// or ldaps:// URL"
            ));
        }
        if self.bind_dn.is_empty() == self.bind_dn_template.is_empty() {
            return Err("ldap: set either bind_dn (a service account) or bind_dn_template".into());
        }
        // An empty password makes the service bind anonymous (RFC 4513
        // §5.1.2): it would "work" and then find nobody, or too much.
        if !self.bind_dn.is_empty() && self.bind_password.is_empty() {
            return Err("ldap.bind_password is required with bind_dn".into());
        }
        if !self.bind_dn_template.is_empty() && !self.bind_dn_template.contains("{user}") {
            return Err("ldap.bind_dn_template must contain {user}".into());
        }
        if self.bind_dn_template.is_empty() && self.base_dn.is_empty() {
            return Err("ldap.base_dn is required with a service account".into());
        }
        if self.login_attribute.is_empty() || self.timeout_ms == 0 {
            return Err("ldap.login_attribute and ldap.timeout_ms must be set".into());
        }
        if !self.user_filter.starts_with('(') || !self.user_filter.ends_with(')') {
            return Err("ldap.user_filter must be a parenthesised LDAP filter".into());
        }
        Ok(())
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
                "CLOISTER_LDAP__URLS",
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
        assert_eq!(config.ldap.urls.len(), 2);
        assert_eq!(config.ldap.required_group, "cn=matrix,dc=example,dc=org");
        assert!(!format!("{config:?}").contains("svc-secret"));
    }

    #[test]
    fn incomplete_settings_are_refused() {
        let on = ("CLOISTER_LDAP__ENABLED", "true");
        let url = ("CLOISTER_LDAP__URLS", r#"["ldap://a.example"]"#);
        let template = ("CLOISTER_LDAP__BIND_DN_TEMPLATE", "uid={user},dc=example");
        assert!(load(&[on]).is_err(), "no URL");
        assert!(load(&[on, url]).is_err(), "neither bind mode");
        assert!(load(&[on, url, template]).is_ok());
        let bad_url = ("CLOISTER_LDAP__URLS", r#"["http://a.example"]"#);
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
