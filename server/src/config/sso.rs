//! Single sign-on: the `[sso]` section (what every provider shares), one
//! `[[oidc]]` table per OpenID Connect provider and one `[[saml]]` table
//! per SAML 2.0 identity provider. Off until a provider is configured;
//! local and LDAP accounts work either way.

use serde::{Deserialize, Serialize};

use super::retention::Lifetime;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sso {
    /// Client URLs (prefixes, e.g. `https://element.example.org/`) that
    /// receive the login token straight away. Any other `redirectUrl` gets
    /// a page naming the app and asking the person to continue, so a link
    /// from an attacker cannot quietly collect a colleague's login.
    pub client_allowlist: Vec<String>,
    /// How long a sign-in at the identity provider may take, from the
    /// redirect to the callback.
    pub login_timeout: Lifetime,
    /// This server's SAML entity id; empty: its metadata URL,
    /// `<public_baseurl>_cloister/client/saml/metadata`.
    pub saml_entity_id: String,
    /// Who may sign in with `m.login.password`: everyone (`on`), server
    /// admins only (`admins`: a way in when the providers are down), or
    /// nobody (`off`). LDAP logins are password logins.
    pub password_login: PasswordLoginMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordLoginMode {
    On,
    Admins,
    Off,
}

impl Default for Sso {
    fn default() -> Self {
        Sso {
            client_allowlist: Vec::new(),
            login_timeout: Lifetime::Millis(10 * 60 * 1000),
            saml_entity_id: String::new(),
            password_login: PasswordLoginMode::On,
        }
    }
}

/// One OpenID Connect provider (Keycloak, Entra ID, …).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Oidc {
    /// The id in `/login/sso/redirect/{id}` and in `identity_providers`;
    /// letters, digits, `-`, `_` and `.`. Accounts are linked on the issuer
    /// and `sub`, not on this id, so it may be renamed.
    pub id: String,
    /// The button label clients show.
    pub name: String,
    /// The button's icon, an `mxc://` URI (upload it with any client).
    pub icon: String,
    /// A brand hint clients may style the button by (`apple`, `github`, …).
    pub brand: String,
    /// The issuer URL; its discovery document is read from
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// A file holding the client secret (a trailing newline is dropped).
    pub client_secret_file: String,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The claim whose value, lower-cased, is the localpart of a new
    /// account.
    pub localpart_claim: String,
    pub display_name_claim: String,
    /// Imported into the user directory when set (off by default: data
    /// minimisation).
    pub mail_claim: String,
    /// Clock difference tolerated on the ID token's times.
    pub leeway: Lifetime,
    /// Also read the userinfo endpoint for the claims above.
    pub userinfo: bool,
    /// Accept back-channel logout tokens from this provider at
    /// `/_cloister/client/oidc/backchannel_logout`.
    pub backchannel_logout: bool,
}

impl Default for Oidc {
    fn default() -> Self {
        Oidc {
            id: String::new(),
            name: String::new(),
            icon: String::new(),
            brand: String::new(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            scopes: vec!["profile".into(), "email".into()],
            localpart_claim: "preferred_username".into(),
            display_name_claim: "name".into(),
            mail_claim: String::new(),
            leeway: Lifetime::Millis(60_000),
            userinfo: false,
            backchannel_logout: true,
        }
    }
}

// By hand, so the client secret never reaches a log line.
impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// One SAML 2.0 identity provider (Shibboleth, ADFS, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Saml {
    /// As for `[[oidc]]`: the id in URLs; accounts are linked on the
    /// provider's entity id and the person's persistent id, not on this.
    pub id: String,
    pub name: String,
    /// As for `[[oidc]]`: an `mxc://` icon and a brand hint for the button.
    pub icon: String,
    pub brand: String,
    /// The provider's entity id: the `Issuer` its responses must carry.
    pub idp_entity_id: String,
    /// Its single sign-on endpoint for the HTTP-Redirect binding.
    pub idp_sso_url: String,
    /// PEM file with the provider's signing certificate(s); every
    /// response must be signed by one of them (two during a rollover).
    pub idp_certificate_file: String,
    /// The attribute whose value, lower-cased, is a new account's localpart
    /// (a friendly name or an `urn:oid:` name).
    pub localpart_attribute: String,
    pub display_name_attribute: String,
    /// Imported into the user directory when set (off by default).
    pub mail_attribute: String,
    /// The attribute holding the person's stable id (e.g.
    /// `urn:oasis:names:tc:SAML:attribute:subject-id`); empty: the
    /// persistent NameID.
    pub subject_attribute: String,
    /// Clock difference tolerated on the assertion's validity window.
    pub clock_skew: Lifetime,
    /// The PEM certificates read from `idp_certificate_file` at start.
    #[serde(skip)]
    pub idp_certificates: Vec<String>,
}

impl Default for Saml {
    fn default() -> Self {
        Saml {
            id: String::new(),
            name: String::new(),
            icon: String::new(),
            brand: String::new(),
            idp_entity_id: String::new(),
            idp_sso_url: String::new(),
            idp_certificate_file: String::new(),
            localpart_attribute: "uid".into(),
            display_name_attribute: "displayName".into(),
            mail_attribute: String::new(),
            subject_attribute: String::new(),
            clock_skew: Lifetime::Millis(120_000),
            idp_certificates: Vec::new(),
        }
    }
}

impl Saml {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !is_valid_idp_id(&self.id) {
            return Err(format!(
                "saml.id {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                self.id
            ));
        }
        if self.idp_entity_id.is_empty() {
            return Err(format!("saml {}: idp_entity_id is required", self.id));
        }
        let http =
            self.idp_sso_url.starts_with("https://") || self.idp_sso_url.starts_with("http://");
        if !http {
            return Err(format!(
                "saml {}: idp_sso_url {:?} is not an http(s) URL",
                self.id, self.idp_sso_url
            ));
        }
        // Fail closed: without the provider's certificate no response could
        // be verified, and an unverified one must never sign anyone in.
        if self.idp_certificate_file.is_empty() {
            return Err(format!(
                "saml {}: idp_certificate_file is required (responses are only accepted signed)",
                self.id
            ));
        }
        if self.localpart_attribute.is_empty() {
            return Err(format!("saml {}: localpart_attribute is required", self.id));
        }
        Ok(())
    }

    /// The button label: `name`, or the id when there is none.
    pub fn display_name(&self) -> &str {
        label(&self.name, &self.id)
    }

    /// Reads the certificates of `idp_certificate_file`, each PEM block
    /// on its own, so a rollover file with two works.
    pub(super) fn read_certificates(&mut self) -> Result<(), String> {
        let text = std::fs::read_to_string(&self.idp_certificate_file).map_err(|e| {
            format!(
                "saml {}: cannot read idp_certificate_file {}: {e}",
                self.id, self.idp_certificate_file
            )
        })?;
        const END: &str = "-----END CERTIFICATE-----";
        self.idp_certificates = text
            .split_inclusive(END)
            .filter_map(|block| {
                let start = block.find("-----BEGIN CERTIFICATE-----")?;
                block.ends_with(END).then(|| block[start..].to_owned())
            })
            .collect();
        if self.idp_certificates.is_empty() {
            return Err(format!(
                "saml {}: {} holds no PEM certificate",
                self.id, self.idp_certificate_file
            ));
        }
        Ok(())
    }
}

fn label<'a>(name: &'a str, id: &'a str) -> &'a str {
    if name.is_empty() {
        id
    } else {
        name
    }
}

fn is_valid_idp_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Oidc {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !is_valid_idp_id(&self.id) {
            return Err(format!(
                "oidc.id {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                self.id
            ));
        }
        let http = self.issuer.starts_with("https://") || self.issuer.starts_with("http://");
        if !http {
            return Err(format!(
                "oidc {}: issuer {:?} is not an http(s) URL",
                self.id, self.issuer
            ));
        }
        if self.client_id.is_empty() {
            return Err(format!("oidc {}: client_id is required", self.id));
        }
        if self.localpart_claim.is_empty() {
            return Err(format!("oidc {}: localpart_claim is required", self.id));
        }
        Ok(())
    }

    /// Reads `client_secret_file`, if set, into `client_secret`.
    pub(super) fn read_secret(&mut self) -> Result<(), String> {
        if self.client_secret_file.is_empty() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.client_secret_file).map_err(|e| {
            format!(
                "oidc {}: cannot read client_secret_file {}: {e}",
                self.id, self.client_secret_file
            )
        })?;
        self.client_secret = text.trim_end_matches(['\r', '\n']).to_owned();
        Ok(())
    }

    /// The button label: `name`, or the id when there is none.
    pub fn display_name(&self) -> &str {
        label(&self.name, &self.id)
    }
}

fn check_icon(id: &str, icon: &str) -> Result<(), String> {
    if icon.is_empty() || icon.starts_with("mxc://") {
        Ok(())
    } else {
        Err(format!("{id}: icon {icon:?} must be an mxc:// URI"))
    }
}

/// Checks the providers together: ids are unique across both kinds.
pub(super) fn validate_providers(oidc: &[Oidc], saml: &[Saml]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    let ids = oidc
        .iter()
        .map(|p| {
            p.validate()
                .and(check_icon(&p.id, &p.icon))
                .map(|()| p.id.as_str())
        })
        .chain(saml.iter().map(|p| {
            p.validate()
                .and(check_icon(&p.id, &p.icon))
                .map(|()| p.id.as_str())
        }));
    for id in ids {
        let id = id?;
        if !seen.insert(id) {
            return Err(format!("two identity providers share the id {id:?}"));
        }
    }
    Ok(())
}
