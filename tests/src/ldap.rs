//! A real OpenLDAP `slapd` for one test: its own config, database and free
//! port in a temporary directory, filled with a few people and a group, and
//! killed when dropped. It listens on `ldap://` (StartTLS too) and `ldaps://`
//! with a certificate from a throwaway CA. Needs Debian's `slapd`, `ldap-utils`
//! and `openssl`.
//!
//! The people (password in brackets), each with `mail` `<uid>@example.org`
//! and a `departmentNumber`:
//! - `alice` (`alice-secret`): "Alice Liddell", Finance, in the `matrix` group
//! - `bob` (`bob-secret`): Parks, not in the group
//! - `carol` (`carol-secret`): Finance, in the group, but disabled the AD
//!   way (`userAccountControl` 514)
//!
//! Each has `sAMAccountName` too (its name capitalised), from a small
//! stand-in schema, for the Active Directory settings.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloister_server::config::Config;
use tempfile::TempDir;

pub const BASE_DN: &str = "dc=example,dc=org";
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
pub const GROUP_DN: &str = "cn=matrix,ou=groups,dc=example,dc=org";
pub const SERVICE_DN: &str = "cn=cloister,ou=services,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "service-secret";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PASSWORD: &str = "admin-secret";

/// OpenLDAP has no AD schema; these stand in for the two attributes the
/// server reads in Active Directory mode.
const AD_SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'userAccountControl' EQUALITY integerMatch \
SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch \
SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'adLikeUser' AUXILIARY MAY ( userAccountControl $ sAMAccountName ) )
";

/// The LDIF of one person (see the module's list for the attributes).
pub fn person(uid: &str, name: &str, password: &str, uac: u32, department: &str) -> String {
    let sam = format!("{}{}", uid[..1].to_uppercase(), &uid[1..]);
    format!(
        "dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nobjectClass: adLikeUser\n\
         uid: {uid}\ncn: {name}\nsn: {name}\ndisplayName: {name}\nuserPassword: {password}\n\
         sAMAccountName: {sam}\nuserAccountControl: {uac}\nmail: {uid}@example.org\n\
         departmentNumber: {department}\n\n"
    )
}

fn entries() -> String {
    let mut ldif = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: cloister\nuserPassword: {SERVICE_PASSWORD}\n\n"
    );
    ldif += &person("alice", "Alice Liddell", "alice-secret", 512, "Finance");
    ldif += &person("bob", "Bob Builder", "bob-secret", 512, "Parks");
    ldif += &person("carol", "Carol Disabled", "carol-secret", 514, "Finance");
    // Members are added after the people: the memberof overlay fills in
    // their `memberOf` as the group is written.
    ldif += &format!(
        "dn: {GROUP_DN}\nobjectClass: groupOfNames\ncn: matrix\n\
         member: uid=alice,{PEOPLE_DN}\nmember: uid=carol,{PEOPLE_DN}\n\n"
    );
    ldif
}

/// A running `slapd`; killed on drop.
pub struct TestDirectory {
    child: Option<Child>,
    port: u16,
    tls_port: u16,
    dir: TempDir,
}

fn binary(name: &str) -> PathBuf {
    // slapd lives in /usr/sbin, which is not on every PATH.
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    PathBuf::from(name)
}

/// A throwaway CA and a certificate for 127.0.0.1 it signed, with openssl.
fn make_certificates(root: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(root)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=Cloister test CA",
            ],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        root.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the certificate extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

impl TestDirectory {
    /// Starts slapd and loads the people; returns once it answers.
    pub async fn start() -> TestDirectory {
        let dir = tempfile::Builder::new()
            .prefix("cloister-slapd-")
            .tempdir()
            .expect("create a directory for slapd");
        let root = dir.path();
        std::fs::write(root.join("ad.schema"), AD_SCHEMA).expect("write the schema");
        make_certificates(root);
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include {root}/ad.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n\
             pidfile {root}/slapd.pid\n\
             TLSCACertificateFile {root}/ca.pem\n\
             TLSCertificateFile {root}/server.pem\n\
             TLSCertificateKeyFile {root}/server.key\n\
             database mdb\nmaxsize 10485760\nsuffix \"{BASE_DN}\"\n\
             rootdn \"{ADMIN_DN}\"\nrootpw {ADMIN_PASSWORD}\ndirectory {root}/data\n\
             overlay memberof\n\
             access to attrs=userPassword by anonymous auth by self read by * none\n\
             access to * by * read\n",
            root = root.display()
        );
        std::fs::write(root.join("slapd.conf"), conf).expect("write slapd.conf");
        let mut directory = TestDirectory {
            child: None,
            port: 0,
            tls_port: 0,
            dir,
        };
        // Free ports are picked before slapd binds them, so another test
        // can take one in between (slapd then exits, or the probe reaches
        // someone else's listener): start again on new ports, a few times.
        let mut failures = Vec::new();
        for _ in 0..3 {
            directory.spawn();
            let started = match directory.wait_until_listening().await {
                Ok(()) => directory.as_admin("ldapadd", &entries()),
                Err(error) => Err(error),
            };
            match started {
                Ok(()) => return directory,
                Err(error) => {
                    failures.push(error);
                    directory.stop();
                }
            }
        }
        panic!("slapd did not start: {failures:?}\n{}", directory.log());
    }

    /// Starts slapd on two new free ports, in the foreground (`-d 0`), so
    /// that it dies with its Child handle and needs no init scripts.
    fn spawn(&mut self) {
        let root = self.dir.path();
        // An empty database each time: a start that failed half-way may
        // have loaded some of the people.
        let _ = std::fs::remove_dir_all(root.join("data"));
        std::fs::create_dir(root.join("data")).expect("create slapd's data directory");
        let (port, tls_port) = (crate::free_port(), crate::free_port());
        let log = std::fs::File::create(root.join("slapd.log")).expect("create slapd.log");
        let child = Command::new(binary("slapd"))
            .args(["-d", "0", "-h"])
            .arg(format!(
                "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
            ))
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("share slapd.log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start slapd (apt-get install slapd ldap-utils): {e}"));
        self.child = Some(child);
        self.port = port;
        self.tls_port = tls_port;
    }

    async fn wait_until_listening(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let plain = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await;
            let tls = tokio::net::TcpStream::connect(("127.0.0.1", self.tls_port)).await;
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("slapd exited ({status})"));
            }
            if plain.is_ok() && tls.is_ok() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("slapd did not listen within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Adds the entries of `ldif`, as the directory's administrator.
    pub fn load(&self, ldif: &str) {
        if let Err(error) = self.as_admin("ldapadd", ldif) {
            panic!("{error}");
        }
    }

    /// Applies LDIF change records (`changetype: modify`, `delete`, …), as
    /// an administrator changing the directory would.
    pub fn change(&self, ldif: &str) {
        if let Err(error) = self.as_admin("ldapmodify", ldif) {
            panic!("{error}");
        }
    }

    fn as_admin(&self, tool: &str, ldif: &str) -> Result<(), String> {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).expect("write the LDIF");
        let out = Command::new(binary(tool))
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
                "-f",
            ])
            .arg(&path)
            .output()
            .expect("run ldapadd/ldapmodify (apt-get install ldap-utils)");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ))
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The same directory over TLS; its certificate is for 127.0.0.1,
    /// issued by [`TestDirectory::ca_file`].
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The test CA (PEM) that issued slapd's certificate.
    pub fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Kills slapd: the directory is down from now on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Turns on `[ldap]` in `config` with the service account
    /// (search-then-bind), inetOrgPerson people by `uid`.
    pub fn configure(&self, config: &mut Config) {
        let ldap = &mut config.ldap;
        ldap.enabled = true;
        ldap.url = vec![self.url()];
        ldap.bind_dn = SERVICE_DN.into();
        ldap.bind_password = SERVICE_PASSWORD.into();
        ldap.base_dn = BASE_DN.into();
        ldap.user_filter = "(objectClass=inetOrgPerson)".into();
        ldap.localpart_attribute = "uid".into();
        ldap.display_name_attribute = "displayName".into();
        ldap.timeout_ms = 2000;
    }

    /// The same as `CLOISTER_*` variables, for a `cloister serve` process.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("CLOISTER_LDAP__ENABLED", "true".to_owned()),
            ("CLOISTER_LDAP__URL", format!("[\"{}\"]", self.url())),
            ("CLOISTER_LDAP__BIND_DN", SERVICE_DN.to_owned()),
            ("CLOISTER_LDAP__BIND_PASSWORD", SERVICE_PASSWORD.to_owned()),
            ("CLOISTER_LDAP__BASE_DN", BASE_DN.to_owned()),
            (
                "CLOISTER_LDAP__USER_FILTER",
                "(objectClass=inetOrgPerson)".to_owned(),
            ),
            ("CLOISTER_LDAP__TIMEOUT_MS", "2000".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for TestDirectory {
    fn drop(&mut self) {
        self.stop();
    }
}
