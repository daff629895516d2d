//! A real SAML 2.0 identity provider for one test: pysaml2's `Server`
//! (pinned in `tests/saml-idp/requirements.txt`), signing with Debian's
//! `xmlsec1`, run from `tests/saml-idp/idp.py` on a free port of 127.0.0.1,
//! and killed when dropped. It is the IdP SAML single sign-on is tested
//! against: responses and signatures as a widely used implementation makes
//! them, and the forged ones an attacker makes from them.
//!
//! It knows one service provider, the `sp_entity_id` given to
//! [`SamlIdp::start`], whose Assertion Consumer Service is `acs_url` with
//! the HTTP-POST binding (and, for `wrong_audience`, [`OTHER_SP_ENTITY_ID`]).
//! Its entityID is `http://127.0.0.1:PORT/metadata`, where its metadata is
//! served. Its key is RSA 2048, made at start, with a self-signed SHA-256
//! certificate ([`SamlIdp::certificate_pem`]; also in the metadata and in
//! each signature's `KeyInfo`).
//!
//! # Single sign-on
//!
//! `GET /sso?SAMLRequest=…&RelayState=…` ([`SamlIdp::sso_url`]) takes an
//! AuthnRequest with the HTTP-Redirect binding (base64 of the raw DEFLATE of
//! the XML; a `SigAlg`/`Signature` is ignored, as with an IdP that does not
//! want signed requests) and parses it with pysaml2, which wants it
//! schema-valid (`ID`, `Version="2.0"`, `IssueInstant`, whose age it does
//! not check) with a `Destination`, if any, equal to the sso URL. The
//! `Issuer` must be the SP's entity ID, an `AssertionConsumerServiceURL`
//! (if any) its ACS URL and a `ProtocolBinding` (if any) HTTP-POST;
//! otherwise the answer is `400` with a line saying why, as an IdP's error
//! page. `NameIDPolicy` is not looked at. There is no login page: the
//! answer is at once `200`, pysaml2's HTTP-POST binding page, `<form
//! action="ACS" method="post">` with hidden `SAMLResponse` (base64 of the
//! Response XML) and, when the request had one, `RelayState` (echoed), and
//! a script submitting it on load. Read it with [`PostForm::from_html`] and
//! post it with [`PostForm::submit`]:
//!
//! ```no_run
//! use cloister_tests::browser::Browser;
//! use cloister_tests::saml::{PostForm, SamlIdp};
//! use serde_json::json;
//!
//! async fn sign_in(sp_entity_id: &str, acs_url: &str, login_url: &str) {
//!     let idp = SamlIdp::start(sp_entity_id, acs_url).await;
//!     idp.sign_in_as("alice-1", json!({ "uid": ["alice"] })).await;
//!     let browser = Browser::new();
//!     // The SP redirects to the IdP, which answers with its page.
//!     let page = browser.follow(login_url, acs_url).await;
//!     let form = PostForm::from_html(&page.body).expect("the IdP's form");
//!     let answer = form.submit(&browser).await; // the SP's ACS answers
//! #   let _ = answer;
//! }
//! ```
//!
//! The Response answers the request (`InResponseTo` is its `ID`) for
//! whoever [`SamlIdp::sign_in_as`] chose last. Until someone is chosen it is
//! a signed Response without an assertion, status
//! `urn:oasis:names:tc:SAML:2.0:status:Responder` with second-level
//! `…:status:AuthnFailed`. [`SamlIdp::unsolicited`] makes an IdP-initiated
//! one (no `InResponseTo`), always as `valid` below.
//!
//! # What a response looks like
//!
//! pysaml2 serialises with the prefixes `ns0` (protocol), `ns1` (assertion)
//! and `ns2` (xmldsig), all declared on the Response, plus `xsi`, and `xs`
//! on each `AttributeValue`. Signed documents start with the line
//! `<?xml version="1.0"?>` (xmlsec1 wrote them); unsigned ones have no
//! declaration. The rest is one line, but for the base64 of each
//! `SignatureValue`, wrapped at 64 columns.
//! A `valid` one (IDs are pysaml2's, `id-` and 17 letters or digits):
//!
//! ```text
//! ns0:Response ID=R InResponseTo=<request ID> Version=2.0 IssueInstant Destination=ACS
//!   ns1:Issuer Format=…:nameid-format:entity            the entityID
//!   ns2:Signature Id="Signature1"                         Reference URI="#R"
//!   ns0:Status/ns0:StatusCode Value=…:status:Success
//!   ns1:Assertion Version=2.0 ID=A IssueInstant
//!     ns1:Issuer Format=…:nameid-format:entity            the entityID
//!     ns2:Signature Id="Signature2"                       Reference URI="#A"
//!     ns1:Subject
//!       ns1:NameID NameQualifier=<entityID> SPNameQualifier=<SP entity ID>
//!                  Format=urn:oasis:names:tc:SAML:2.0:nameid-format:persistent
//!       ns1:SubjectConfirmation Method=urn:oasis:names:tc:SAML:2.0:cm:bearer
//!         ns1:SubjectConfirmationData NotOnOrAfter=+1h Recipient=ACS InResponseTo=<request ID>
//!     ns1:Conditions NotBefore=now NotOnOrAfter=+1h
//!       ns1:AudienceRestriction/ns1:Audience              the SP entity ID
//!     ns1:AuthnStatement AuthnInstant SessionIndex
//!       ns1:AuthnContext/ns1:AuthnContextClassRef         …:ac:classes:PasswordProtectedTransport
//!                       /ns1:AuthenticatingAuthority       the entityID
//!     ns1:AttributeStatement
//!       ns1:Attribute Name=<as given> NameFormat=…        one per attribute
//!         ns1:AttributeValue xsi:type="xs:string"         one per value
//! ```
//!
//! Each signature is a separate, enveloped `ds:Signature` right after the
//! `Issuer` of the element it signs, its `Reference` to that element's `ID`
//! attribute (`ID`, upper case, as SAML has it; the signatures' own `Id` is
//! `Signature1`/`Signature2`): exclusive c14n (no `InclusiveNamespaces`),
//! RSA-SHA256, SHA-256 digest, transforms enveloped-signature then exc-c14n,
//! and `KeyInfo/X509Data/X509Certificate` with the certificate. The
//! Response's signature covers the assertion too, with the assertion's own
//! signature in it. Times are UTC to the second (`2026-01-02T03:04:05Z`).
//!
//! Attribute names are exactly those given to [`SamlIdp::sign_in_as`]: a
//! name with a colon (`urn:oid:0.9.2342.19200300.100.1.1`) gets
//! `NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri"`, one
//! without (`uid`, `displayName`) `…:attrname-format:basic`; there is no
//! `FriendlyName`. (pysaml2's own converters would map `uid` to its OID or
//! lowercase names.)
//!
//! # Modes ([`SamlIdp::set_mode`]), for the responses made from then on
//!
//! - `valid` (the default): as above, Response and Assertion signed.
//! - `assertion_signed`: only the Assertion signed (no Response signature).
//! - `response_signed`: only the Response signed (no Assertion signature).
//! - `unsigned`: no signature at all.
//! - `tampered`: made as `valid`, then the NameID's text replaced by the
//!   evil person's (`evil-admin`) in the XML: neither signature verifies.
//! - `wrong_audience`: as `valid`, correctly signed, but `Audience` (and the
//!   NameID's `SPNameQualifier`) is [`OTHER_SP_ENTITY_ID`]; `Destination`
//!   and `Recipient` are still this SP's ACS.
//! - `expired`: as `valid`, correctly signed, made with pysaml2's clock two
//!   hours behind: `IssueInstant`s, `NotBefore` and `AuthnInstant` are two
//!   hours ago, `Conditions/@NotOnOrAfter` and
//!   `SubjectConfirmationData/@NotOnOrAfter` one hour ago.
//!
//! The XML Signature Wrapping modes (Somorovsky et al., "On Breaking SAML:
//! Be Whoever You Want to Be", USENIX Security 2012) all start from an
//! `assertion_signed` response for the chosen person: the Response is NOT
//! signed, the legitimate Assertion (ID `A`) is, with its signature inside
//! it. pysaml2 also makes an unsigned assertion for the evil person
//! ([`EVIL_NAME_ID`] and [`EVIL_UID`] unless [`SamlIdp::set_evil`] said
//! otherwise), with a new ID `E` and the same InResponseTo, Recipient,
//! Audience and times, so it passes every check but the signature. Then,
//! cutting and pasting the serialised text (the signed bytes are untouched):
//!
//! - `xsw_sibling` (XSW3): `Response / [Issuer, Status, Assertion E (evil,
//!   unsigned), Assertion A (signed)]`. The evil assertion comes first.
//! - `xsw_same_id`: the same, but the evil assertion's ID is `A` too: two
//!   `Assertion ID="A"` siblings, the evil one first. xmlsec1 refuses the
//!   document ("duplicate ID attribute"); a verifier whose ID lookup finds
//!   the signed one while the rest of the code reads the first is fooled.
//! - `xsw_wrapped` (XSW4, schema-valid): `Response / [Issuer, Status,
//!   Assertion E [Issuer, Subject (evil), Conditions, Advice [Assertion A
//!   (signed, whole, with its Signature)], AuthnStatement,
//!   AttributeStatement (evil)]]`. The only Assertion child of the
//!   Response is the evil one; the signed one is inside it.
//! - `xsw_extensions` (XSW7): `Response / [Issuer, ns0:Extensions [Assertion
//!   A (signed, whole)], Status, Assertion E (evil)]`.
//! - `xsw_signature_object` (XSW8): `Response / [Issuer, Status, Assertion E
//!   [Issuer, ds:Signature (A's, moved here: SignedInfo with Reference
//!   URI="#A", SignatureValue, KeyInfo, ds:Object [Assertion A without its
//!   Signature]), Subject (evil), …]]`. A verifier whose enveloped transform
//!   only strips a `Signature` found inside the referenced element gets A's
//!   old digest and accepts it; xmlsec1's transform removes the whole
//!   `Signature` subtree (the `Object` and A with it) from what the
//!   Reference selects, so there the digest fails.
//!
//! With `xmlsec1 --verify` (which checks the first `ds:Signature` in
//! document order) and the IdP's certificate, `xsw_sibling`, `xsw_wrapped`
//! and `xsw_extensions` verify, `xsw_same_id` and `xsw_signature_object`
//! do not (see `tests/tests/saml_harness.rs`).
//!
//! Python: `python3` from `PATH`, or `CLOISTER_TEST_PYTHON`, makes the
//! virtual environment `tests/saml-idp/.venv` the first time (and whenever
//! `requirements.txt` changed), under a lock shared by all test processes:
//! about 15 s with PyPI, not counted in the start timeout. On Debian's own
//! Python that needs the `python3-venv` package. pysaml2 runs `xmlsec1`
//! (Debian's `xmlsec1` package) from `PATH`. Starting the IdP then takes
//! well under a second.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::browser::{Browser, Page};
use crate::harness::{install_once, Program};

/// The audience of `wrong_audience` responses: another SP the IdP knows.
pub const OTHER_SP_ENTITY_ID: &str = "https://other-sp.example.org/saml/metadata";

/// The NameID of the forged assertions (`xsw_*`), and what `tampered` puts
/// in the NameID, unless [`SamlIdp::set_evil`] chose another.
pub const EVIL_NAME_ID: &str = "evil-admin";

/// `uid` and `urn:oid:0.9.2342.19200300.100.1.1` of the forged assertions
/// (with `displayName` "Evil Admin" and `mail` "admin@example.org").
pub const EVIL_UID: &str = "admin";

/// Every mode [`SamlIdp::set_mode`] takes (see the module's doc).
pub const MODES: [&str; 12] = [
    "valid",
    "assertion_signed",
    "response_signed",
    "unsigned",
    "tampered",
    "wrong_audience",
    "expired",
    "xsw_sibling",
    "xsw_same_id",
    "xsw_wrapped",
    "xsw_extensions",
    "xsw_signature_object",
];

/// How long idp.py may take to print its URL (after the install).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// pip's copy of the requirements it installed, in the virtual environment.
const INSTALLED_REQUIREMENTS: &str = ".cloister-installed-requirements.txt";

/// A running pysaml2 identity provider; killed on drop.
pub struct SamlIdp {
    program: Program,
    certificate: String,
    // Its key, certificate, log and pysaml2's temporary files.
    _dir: TempDir,
}

/// `tests/saml-idp`.
fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("saml-idp")
}

fn venv_dir() -> PathBuf {
    harness_dir().join(".venv")
}

fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// Makes the virtual environment with `requirements.txt` installed unless
/// it holds what the file says; once per process, one process at a time.
async fn install_packages() {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    install_once(&INSTALLED, "cloister-saml-idp-venv.lock", install).await;
}

fn install() {
    let dir = harness_dir();
    let venv = venv_dir();
    let requirements =
        std::fs::read(dir.join("requirements.txt")).expect("read saml-idp/requirements.txt");
    let installed = venv.join(INSTALLED_REQUIREMENTS);
    if venv_python().exists() && std::fs::read(&installed).is_ok_and(|copy| copy == requirements) {
        return;
    }
    let started = Instant::now();
    // Anew: nothing left over from other pins or another Python.
    if venv.exists() {
        std::fs::remove_dir_all(&venv).unwrap_or_else(|e| panic!("remove {}: {e}", venv.display()));
    }
    let python = std::env::var_os("CLOISTER_TEST_PYTHON").unwrap_or_else(|| "python3".into());
    run(
        std::process::Command::new(&python)
            .args(["-m", "venv"])
            .arg(&venv),
        &format!(
            "{python:?} -m venv {} (is Python 3 installed, and on Debian python3-venv?)",
            venv.display()
        ),
    );
    run(
        std::process::Command::new(venv_python())
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                "-r",
                "requirements.txt",
            ])
            .current_dir(&dir),
        "pip install -r tests/saml-idp/requirements.txt",
    );
    std::fs::write(&installed, requirements).expect("note the installed requirements");
    eprintln!(
        "saml: installed tests/saml-idp/requirements.txt into {} in {:.1?}",
        venv.display(),
        started.elapsed()
    );
}

fn run(command: &mut std::process::Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SamlIdp {
    /// Installs pysaml2 if needed, starts the IdP for the service provider
    /// `sp_entity_id` with its ACS at `acs_url` (HTTP-POST), and returns
    /// once it listens.
    pub async fn start(sp_entity_id: &str, acs_url: &str) -> SamlIdp {
        install_packages().await;
        let dir = tempfile::Builder::new()
            .prefix("cloister-saml-idp-")
            .tempdir()
            .expect("create a directory for the IdP");
        let log = dir.path().join("idp.log");
        let mut command = Command::new(venv_python());
        command
            .arg("idp.py")
            .current_dir(harness_dir())
            .env("SAML_SP_ENTITY_ID", sp_entity_id)
            .env("SAML_SP_ACS_URL", acs_url)
            .env("SAML_IDP_PORT", "0")
            .env("SAML_IDP_DIR", dir.path())
            .env("SAML_EXIT_ON_STDIN_EOF", "1")
            // pysaml2 writes the documents it hands to xmlsec1 here.
            .env("TMPDIR", dir.path())
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let what = format!("{} idp.py (the SAML IdP)", venv_python().display());
        let program = Program::start(command, &log, "IDP", &what, START_TIMEOUT).await;
        let cert = dir.path().join("idp-cert.pem");
        let certificate = std::fs::read_to_string(&cert)
            .unwrap_or_else(|e| panic!("read {}: {e}", cert.display()));
        SamlIdp {
            program,
            certificate,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:<port>/metadata`: the IdP's entityID, the `Issuer`
    /// of its responses and assertions, and where its metadata is.
    pub fn entity_id(&self) -> String {
        format!("{}/metadata", self.program.url)
    }

    /// `http://127.0.0.1:<port>/sso`: its SingleSignOnService
    /// (HTTP-Redirect binding).
    pub fn sso_url(&self) -> String {
        format!("{}/sso", self.program.url)
    }

    /// Its signing certificate, PEM (`-----BEGIN CERTIFICATE-----…`).
    pub fn certificate_pem(&self) -> String {
        self.certificate.clone()
    }

    /// What the IdP logged so far: each request, and its errors.
    pub fn log(&self) -> String {
        self.program.log()
    }

    /// Who signs in from now on: the persistent NameID and the attributes,
    /// `{"name": ["value", …]}` (a lone string is one value), each an
    /// `Attribute` named exactly so.
    pub async fn sign_in_as(&self, name_id: &str, attributes: Value) {
        self.program
            .control(
                "next-login",
                json!({ "name_id": name_id, "attributes": attributes }),
            )
            .await;
    }

    /// Who the forged assertions of the `xsw_*` modes are for, and whose
    /// NameID `tampered` puts in, in place of [`EVIL_NAME_ID`] and
    /// [`EVIL_UID`].
    pub async fn set_evil(&self, name_id: &str, attributes: Value) {
        self.program
            .control(
                "evil",
                json!({ "name_id": name_id, "attributes": attributes }),
            )
            .await;
    }

    /// How responses are made from now on: one of [`MODES`], described in
    /// the module's doc.
    pub async fn set_mode(&self, mode: &str) {
        self.program.control("mode", json!({ "mode": mode })).await;
    }

    /// An IdP-initiated (unsolicited) response for whoever signs in now, as
    /// `valid` makes them but without `InResponseTo` (in the Response and in
    /// `SubjectConfirmationData`): the form the IdP would have the browser
    /// post to the ACS, with `RelayState` when given.
    pub async fn unsolicited(&self, relay_state: Option<&str>) -> PostForm {
        let query: &[(&str, &str)] = match relay_state {
            Some(relay_state) => &[("relay_state", relay_state)],
            None => &[],
        };
        let answer = self.program.query("unsolicited", query).await;
        let mut fields = vec![(
            "SAMLResponse".to_owned(),
            answer["SAMLResponse"]
                .as_str()
                .expect("a SAMLResponse")
                .to_owned(),
        )];
        if let Some(relay_state) = answer["RelayState"].as_str() {
            fields.push(("RelayState".to_owned(), relay_state.to_owned()));
        }
        PostForm {
            action: answer["action"].as_str().expect("an action").to_owned(),
            fields,
        }
    }

    /// The XML of the last response made (by `/sso` or
    /// [`SamlIdp::unsolicited`]), or "" before the first.
    pub async fn last_response(&self) -> String {
        let answer = self.program.query("last-response", &[]).await;
        answer["xml"].as_str().expect("the XML").to_owned()
    }
}

/// An HTML form to post, as an IdP's HTTP-POST binding page holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostForm {
    /// Where to post it (HTML-unescaped).
    pub action: String,
    /// Its hidden inputs, in order: name and value (HTML-unescaped).
    pub fields: Vec<(String, String)>,
}

impl PostForm {
    /// The first `<form>` of `html` whose `method` is `post` (any case) and
    /// its `type="hidden"` inputs; `None` when there is none or it has no
    /// `action`. A small tag scanner, not an HTML parser: enough for the
    /// pages IdPs send.
    pub fn from_html(html: &str) -> Option<PostForm> {
        let lower = html.to_ascii_lowercase();
        let mut at = 0;
        while let Some(found) = find_tag(&lower, "form", at) {
            let (attributes, end) = tag_attributes(html, found + "<form".len());
            at = end;
            let method = attribute(&attributes, "method").unwrap_or_default();
            if !method.eq_ignore_ascii_case("post") {
                continue;
            }
            let action = attribute(&attributes, "action")?;
            let close = lower[end..].find("</form").map_or(html.len(), |i| end + i);
            let mut fields = Vec::new();
            let mut input_at = end;
            while let Some(input) = find_tag(&lower[..close], "input", input_at) {
                let (attributes, input_end) = tag_attributes(html, input + "<input".len());
                input_at = input_end;
                let hidden = attribute(&attributes, "type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("hidden"));
                if let (true, Some(name)) = (hidden, attribute(&attributes, "name")) {
                    let value = attribute(&attributes, "value").unwrap_or_default();
                    fields.push((name, value));
                }
            }
            return Some(PostForm { action, fields });
        }
        None
    }

    /// The value of the first field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The fields as [`Browser::post_form`] takes them.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }

    /// Posts the form with `browser`, as the page's script would.
    pub async fn submit(&self, browser: &Browser) -> Page {
        browser.post_form(&self.action, &self.pairs()).await
    }

    /// The XML in the `SAMLResponse` field (base64-decoded), if any.
    pub fn saml_response(&self) -> Option<String> {
        let encoded: String = self
            .field("SAMLResponse")?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        String::from_utf8(STANDARD.decode(encoded).ok()?).ok()
    }
}

/// Where the next `<name` tag (followed by a space, `/` or `>`) starts in
/// `lower` (the page in ASCII lower case), from `from` on.
fn find_tag(lower: &str, name: &str, from: usize) -> Option<usize> {
    let open = format!("<{name}");
    let mut at = from;
    while let Some(i) = lower.get(at..)?.find(&open) {
        let start = at + i;
        let next = lower[start + open.len()..].chars().next();
        if next.is_some_and(|c| c.is_ascii_whitespace() || c == '/' || c == '>') {
            return Some(start);
        }
        at = start + open.len();
    }
    None
}

/// The attributes of the tag whose name ends at `at` (names in lower case,
/// values unescaped), and where the tag ends (after its `>`).
fn tag_attributes(html: &str, mut at: usize) -> (Vec<(String, String)>, usize) {
    let bytes = html.as_bytes();
    let mut attributes = Vec::new();
    loop {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'/') {
            at += 1;
        }
        if at >= bytes.len() {
            return (attributes, at);
        }
        if bytes[at] == b'>' {
            return (attributes, at + 1);
        }
        let name_start = at;
        while at < bytes.len()
            && !bytes[at].is_ascii_whitespace()
            && !matches!(bytes[at], b'=' | b'>' | b'/')
        {
            at += 1;
        }
        let name = html[name_start..at].to_ascii_lowercase();
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let mut value = String::new();
        if at < bytes.len() && bytes[at] == b'=' {
            at += 1;
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            if at < bytes.len() && matches!(bytes[at], b'"' | b'\'') {
                let quote = bytes[at];
                let start = at + 1;
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b == quote)
                    .map_or(bytes.len(), |i| start + i);
                value = html_unescape(&html[start..end]);
                at = (end + 1).min(bytes.len());
            } else {
                let start = at;
                while at < bytes.len() && !bytes[at].is_ascii_whitespace() && bytes[at] != b'>' {
                    at += 1;
                }
                value = html_unescape(&html[start..at]);
            }
        }
        if !name.is_empty() {
            attributes.push((name, value));
        }
    }
}

fn attribute(attributes: &[(String, String)], name: &str) -> Option<String> {
    attributes
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
}

/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;` and numeric references
/// decoded; anything else left as it is.
fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let number = entity.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pysaml2s_post_page() {
        let html = r#"<!DOCTYPE html>
<html><body onload="document.forms[0].submit()">
<noscript><p>Press the button</p></noscript>
<form action="http://sp/acs?a=1&amp;b=2" method="post">
  <input type="hidden" name="SAMLResponse" value="PHg+"/>
  <input type="hidden" name="RelayState" value="a&amp;b&lt;&#39;&#x22;&unknown;"/>
  <noscript><input type="submit" value="Continue"/></noscript>
</form></body></html>"#;
        let form = PostForm::from_html(html).expect("a form");
        assert_eq!(form.action, "http://sp/acs?a=1&b=2");
        assert_eq!(
            form.fields,
            vec![
                ("SAMLResponse".to_owned(), "PHg+".to_owned()),
                ("RelayState".to_owned(), "a&b<'\"&unknown;".to_owned()),
            ]
        );
        assert_eq!(form.saml_response().as_deref(), Some("<x>"));
    }

    #[test]
    fn skips_forms_that_are_not_posted_and_reads_odd_quoting() {
        let html = "<FORM action=/search><input type=hidden name=q value=x></FORM>\
                    <formx></formx>\
                    <Form METHOD='POST' ACTION='/acs'><INPUT TYPE='HIDDEN' NAME='k' VALUE='v w'>\
                    <input name=visible value=no></Form><input type=hidden name=after value=no>";
        let form = PostForm::from_html(html).expect("a form");
        assert_eq!(form.action, "/acs");
        assert_eq!(form.fields, vec![("k".to_owned(), "v w".to_owned())]);
        assert_eq!(PostForm::from_html("<p>no form</p>"), None);
    }
}
