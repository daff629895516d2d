//! Signing in through LDAP against a real OpenLDAP `slapd` (started per
//! test by `cloister_tests::ldap`), on both backends: the account a first
//! login creates, what is refused and how, the directory going down, and
//! what never reaches the database or the log.

use cloister_tests::ldap::{TestDirectory, PEOPLE_DN};
use cloister_tests::{both_backends, encode, errcode, Backend, Client, ServerProcess, TestServer};
use serde_json::{json, Value};

const R: &str = "/_matrix/client/v3";

async fn login(url: &str, user: &str, password: &str) -> Result<Client, (u16, Value)> {
    Client::try_login(url, user, password, None).await
}

fn assert_forbidden(got: Result<Client, (u16, Value)>, code: &str, what: &str) {
    match got {
        Ok(client) => panic!("{what}: signed in as {}", client.user_id),
        Err((status, body)) => {
            assert_eq!(
                (status, errcode(&body)),
                (403, Some(code)),
                "{what}: {body}"
            )
        }
    }
}

async fn first_login_creates_the_account(backend: Backend) {
    let directory = TestDirectory::start().await;
    let server = TestServer::start_with(backend, |c| {
        directory.configure(c);
        c.ldap.required_group = cloister_tests::ldap::GROUP_DN.into();
    })
    .await;
    let url = server.url();

    let alice = login(&url, "alice", "alice-secret").await.unwrap();
    assert_eq!(alice.user_id, "@alice:localhost");
    let (status, profile) = alice.get(&format!("{R}/profile/@alice:localhost")).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["displayname"], "Alice Liddell");
    // No local password exists for it, and the account is marked as the
    // directory's.
    let with_hash = "SELECT COUNT(*) FROM users WHERE user_id = $1 AND password_hash IS NOT NULL";
    assert_eq!(server.count(with_hash, &alice.user_id).await, 0);
    let marked = "SELECT COUNT(*) FROM ldap_accounts WHERE user_id = $1";
    assert_eq!(server.count(marked, &alice.user_id).await, 1);
    assert_eq!(
        server.audit_count("%\"account_created\"%\"ldap\"%").await,
        1
    );

    for name in ["ALICE", "Alice", "@alice:localhost", "@ALICE:localhost"] {
        let again = login(&url, name, "alice-secret").await.unwrap();
        assert_eq!(again.user_id, "@alice:localhost", "{name}");
    }
    assert_eq!(server.audit_count("%\"account_created\"%").await, 1);

    // Wrong password and unknown user: the same answer.
    assert_forbidden(
        login(&url, "alice", "wrong").await,
        "M_FORBIDDEN",
        "wrong password",
    );
    assert_forbidden(
        login(&url, "nobody", "wrong").await,
        "M_FORBIDDEN",
        "unknown user",
    );
    // An empty password would be an anonymous bind, which slapd accepts.
    assert_forbidden(
        login(&url, "alice", "").await,
        "M_FORBIDDEN",
        "empty password",
    );
    // Filter injection: unescaped, `alice)(uid=*` would find alice's entry
    // and her password would sign in under the injected name.
    for injected in ["alice)(uid=*", "*)(uid=*", "*", "alice*"] {
        assert_forbidden(
            login(&url, injected, "alice-secret").await,
            "M_FORBIDDEN",
            injected,
        );
    }
    // Names the directory would match loosely (spaces) are not asked for:
    // each would be a rate-limit bucket of its own for one person.
    for loose in [" alice", "alice ", "al ice"] {
        assert_forbidden(
            login(&url, loose, "alice-secret").await,
            "M_FORBIDDEN",
            loose,
        );
    }
    // Another server's user id is not the directory's.
    assert_forbidden(
        login(&url, "@alice:elsewhere.example", "alice-secret").await,
        "M_FORBIDDEN",
        "foreign user id",
    );
    // The right password, but not in the required group: refused, audited.
    assert_forbidden(
        login(&url, "bob", "bob-secret").await,
        "M_FORBIDDEN",
        "not in group",
    );
    assert_eq!(server.audit_count("%ldap_not_in_group%").await, 1);
    let bob = "SELECT COUNT(*) FROM users WHERE user_id = $1";
    assert_eq!(server.count(bob, "@bob:localhost").await, 0);

    // User-interactive auth asks the directory too: deleting a device.
    let other = login(&url, "alice", "alice-secret").await.unwrap();
    let path = format!("{R}/devices/{}", other.device_id);
    let (status, challenge) = alice.delete(&path, json!({})).await;
    assert_eq!(status, 401, "{challenge}");
    let auth = |password: &str| {
        json!({ "auth": {
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": "alice" },
            "password": password,
            "session": challenge["session"],
        } })
    };
    let (status, body) = alice.delete(&path, auth("wrong")).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = alice.delete(&path, auth("alice-secret")).await;
    assert_eq!(status, 200, "{body}");
    // The password belongs to the directory: no local one can be set.
    let (status, body) = alice
        .post(
            &format!("{R}/account/password"),
            json!({ "new_password": "local-pw" }),
        )
        .await;
    assert_eq!(
        (status, errcode(&body)),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );

    // A local account the directory does not know still uses its password,
    // and a directory name cannot take over a local account.
    let local = Client::register(&url, "dave", "dave-pw").await;
    assert_eq!(
        login(&url, "dave", "dave-pw").await.unwrap().user_id,
        local.user_id
    );
    Client::register(&url, "carol", "local-carol-pw").await;
    assert_forbidden(
        login(&url, "carol", "carol-secret").await,
        "M_FORBIDDEN",
        "directory password for a local account",
    );
    assert!(login(&url, "carol", "local-carol-pw").await.is_ok());
    server.stop().await;
}

async fn bind_dn_template_mode(backend: Backend) {
    let directory = TestDirectory::start().await;
    let server = TestServer::start_with(backend, |c| {
        directory.configure(c);
        c.ldap.bind_dn.clear();
        c.ldap.bind_password.clear();
        c.ldap.base_dn.clear();
        c.ldap.bind_dn_template = format!("uid={{user}},{PEOPLE_DN}");
    })
    .await;
    let url = server.url();
    let bob = login(&url, "bob", "bob-secret").await.unwrap();
    assert_eq!(bob.user_id, "@bob:localhost");
    let (_, profile) = bob.get(&format!("{R}/profile/@bob:localhost")).await;
    assert_eq!(profile["displayname"], "Bob Builder");
    assert_eq!(
        login(&url, "BOB", "bob-secret").await.unwrap().user_id,
        bob.user_id
    );
    assert_forbidden(
        login(&url, "bob", "wrong").await,
        "M_FORBIDDEN",
        "wrong password",
    );
    assert_forbidden(
        login(&url, "nobody", "x").await,
        "M_FORBIDDEN",
        "unknown user",
    );
    // DN injection: the name is escaped as a DN value.
    assert_forbidden(
        login(&url, "bob,ou=people", "bob-secret").await,
        "M_FORBIDDEN",
        "DN injection",
    );
    server.stop().await;
}

async fn active_directory_disabled_account(backend: Backend) {
    let directory = TestDirectory::start().await;
    let server = TestServer::start_with(backend, |c| {
        directory.configure(c);
        c.ldap.active_directory = true;
        c.ldap.localpart_attribute = "sAMAccountName".into();
    })
    .await;
    let url = server.url();
    // sAMAccountName is "Alice"; the localpart is its lower case.
    let alice = login(&url, "alice", "alice-secret").await.unwrap();
    assert_eq!(alice.user_id, "@alice:localhost");
    assert_forbidden(
        login(&url, "carol", "carol-secret").await,
        "M_FORBIDDEN",
        "disabled",
    );
    assert_eq!(server.audit_count("%ldap_disabled%").await, 1);
    server.stop().await;
}

async fn directory_down(backend: Backend) {
    let mut directory = TestDirectory::start().await;
    // A dead server first: the next URL is tried.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("ldap://{}", dead.local_addr().unwrap());
    drop(dead);
    let server = TestServer::start_with(backend, |c| {
        directory.configure(c);
        c.ldap.url.insert(0, dead_url);
    })
    .await;
    let url = server.url();
    let admin = server.register_admin("root").await;
    let alice = login(&url, "alice", "alice-secret").await.unwrap();
    let errors = || {
        server
            .state()
            .metrics
            .ldap_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(errors(), 1, "the dead URL counts");

    directory.stop();
    for (name, password) in [("alice", "alice-secret"), ("nobody", "x")] {
        let (status, body) = login(&url, name, password).await.unwrap_err();
        assert_eq!((status, errcode(&body)), (503, Some("M_UNKNOWN")), "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("directory"),
            "{body}"
        );
    }
    assert!(errors() >= 5);
    // Local accounts do not need the directory; existing sessions go on.
    let again = login(&url, "root", "admin-pw").await.unwrap();
    assert_eq!(again.user_id, admin.user_id);
    assert_eq!(alice.whoami().await["user_id"], "@alice:localhost");
    let metrics = server.metrics().await;
    assert!(metrics.contains("cloister_ldap_errors_total"), "{metrics}");
    server.stop().await;
}

/// A server that accepts connections and never answers: `timeout_ms`
/// bounds the wait.
async fn directory_hangs(backend: Backend) {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("ldap://{}", silent.local_addr().unwrap());
    let directory = TestDirectory::start().await;
    let server = TestServer::start_with(backend, |c| {
        directory.configure(c);
        c.ldap.url = vec![silent_url];
        c.ldap.timeout_ms = 300;
    })
    .await;
    let started = std::time::Instant::now();
    let (status, body) = login(&server.url(), "alice", "alice-secret")
        .await
        .unwrap_err();
    assert_eq!((status, errcode(&body)), (503, Some("M_UNKNOWN")), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(silent);
    server.stop().await;
}

async fn deactivated_stays_out(backend: Backend) {
    let directory = TestDirectory::start().await;
    let server = TestServer::start_with(backend, |c| directory.configure(c)).await;
    let url = server.url();
    let alice = login(&url, "alice", "alice-secret").await.unwrap();
    // She deactivates herself, confirming with her directory password.
    let path = format!("{R}/account/deactivate");
    let (status, challenge) = alice.post(&path, json!({})).await;
    assert_eq!(status, 401, "{challenge}");
    let (status, body) = alice
        .post(
            &path,
            json!({ "auth": {
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "alice" },
                "password": "alice-secret",
                "session": challenge["session"],
            } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_forbidden(
        login(&url, "alice", "alice-secret").await,
        "M_USER_DEACTIVATED",
        "deactivated",
    );
    // Only the right password learns that.
    assert_forbidden(
        login(&url, "alice", "wrong").await,
        "M_FORBIDDEN",
        "wrong password",
    );

    // Erased, the account's directory mark goes with it (the personal-data
    // registry lists the table), and the directory cannot recreate it.
    let admin = server.register_admin("root").await;
    let export = format!(
        "/_cloister/admin/v1/users/{}/export",
        encode(&alice.user_id)
    );
    let (status, doc) = admin.post(&export, json!({ "plain": true })).await;
    assert_eq!(status, 200, "{doc}");
    let rows = doc["sections"]["directory_login"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{doc}");
    let erase = format!("/_cloister/admin/v1/users/{}/erase", encode(&alice.user_id));
    let (status, body) = admin.post(&erase, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let marked = "SELECT COUNT(*) FROM ldap_accounts WHERE user_id = $1";
    assert_eq!(server.count(marked, &alice.user_id).await, 0);
    assert_forbidden(
        login(&url, "alice", "alice-secret").await,
        "M_USER_DEACTIVATED",
        "erased",
    );
    let users = "SELECT COUNT(*) FROM users WHERE user_id = $1";
    assert_eq!(server.count(users, &alice.user_id).await, 0);
    server.stop().await;
}

async fn tls(backend: Backend) {
    let directory = TestDirectory::start().await;
    for (what, url, start_tls) in [
        ("ldaps", directory.ldaps_url(), false),
        ("StartTLS", directory.url(), true),
    ] {
        let server = TestServer::start_with(backend, |c| {
            directory.configure(c);
            c.ldap.url = vec![url.clone()];
            c.ldap.start_tls = start_tls;
            c.ldap.ca_file = directory.ca_file();
        })
        .await;
        let alice = login(&server.url(), "alice", "alice-secret").await;
        assert_eq!(alice.unwrap().user_id, "@alice:localhost", "{what}");
        server.stop().await;
    }
    // Without the test CA the certificate is not trusted: no login, and no
    // password sent over an unverified connection (which also shows that
    // StartTLS really was negotiated above).
    for (what, url, start_tls) in [
        ("ldaps", directory.ldaps_url(), false),
        ("StartTLS", directory.url(), true),
    ] {
        let server = TestServer::start_with(backend, |c| {
            directory.configure(c);
            c.ldap.url = vec![url.clone()];
            c.ldap.start_tls = start_tls;
        })
        .await;
        let (status, body) = login(&server.url(), "alice", "alice-secret")
            .await
            .unwrap_err();
        assert_eq!(
            (status, errcode(&body)),
            (503, Some("M_UNKNOWN")),
            "{what}: {body}"
        );
        server.stop().await;
    }
}

/// `cloister serve` as a process configured by `CLOISTER_LDAP__*`
/// variables, so its whole log can be read: no password in it.
async fn passwords_never_logged(backend: Backend) {
    let mut directory = TestDirectory::start().await;
    let server = TestServer::start(backend).await;
    // The harness opens registration, which the server refuses next to LDAP.
    let mut env = directory.env();
    env.push(("CLOISTER_REGISTRATION".into(), "closed".into()));
    let mut node = ServerProcess::start_peer_with_env(&server, env).await;
    let url = node.url();
    login(&url, "alice", "alice-secret").await.unwrap();
    assert_forbidden(
        login(&url, "alice", "wrong-Pa55").await,
        "M_FORBIDDEN",
        "wrong",
    );
    directory.stop();
    let (status, _) = login(&url, "alice", "alice-secret").await.unwrap_err();
    assert_eq!(status, 503);
    let log = node.log();
    assert!(log.contains("LDAP"), "the outage is logged:\n{log}");
    for secret in ["alice-secret", "wrong-Pa55", "service-secret"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    node.kill().await;
    server.stop().await;
}

both_backends!(
    first_login, first_login_creates_the_account;
    template, bind_dn_template_mode;
    active_directory, active_directory_disabled_account;
    down, directory_down;
    hangs, directory_hangs;
    deactivated, deactivated_stays_out;
    no_password_in_log, passwords_never_logged;
    over_tls, tls;
);
