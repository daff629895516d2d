//! The LDAP directory sync against a real OpenLDAP `slapd`, on both
//! backends: accounts whose entry is gone, out of the group or disabled are
//! deactivated (sessions ended, audited with the reason), local accounts are
//! left alone, mail and department reach the user directory, large
//! directories are read in pages, and a sync that would deactivate too many
//! changes nothing until `cloister ldap sync --force`.

use cloister_server::config::Lifetime;
use cloister_server::service::ldap_sync;
use cloister_tests::ldap::{person, TestDirectory, GROUP_DN, PEOPLE_DN};
use cloister_tests::process::run_command;
use cloister_tests::{both_backends, errcode, Backend, Client, ManualClock, TestServer};
use serde_json::{json, Value};

const R: &str = "/_matrix/client/v3";

/// `POST /user_directory/search` as `c`: (user id, mail, department) found.
async fn search(c: &Client, term: &str) -> Vec<(String, Value, Value)> {
    let (status, body) = c
        .post(
            &format!("{R}/user_directory/search"),
            json!({ "search_term": term }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["user_id"].as_str().unwrap().to_owned(),
                r["org.cloister.mail"].clone(),
                r["org.cloister.department"].clone(),
            )
        })
        .collect()
}

async fn login(url: &str, name: &str, password: &str) -> Client {
    Client::login(url, name, password, None).await
}

/// Whether `c`'s access token still works.
async fn signed_in(c: &Client) -> bool {
    let (status, body) = c.get(&format!("{R}/account/whoami")).await;
    match status {
        200 => true,
        401 => {
            assert_eq!(errcode(&body), Some("M_UNKNOWN_TOKEN"), "{body}");
            false
        }
        _ => panic!("whoami answered {status}: {body}"),
    }
}

fn staff(n: usize) -> String {
    format!("staff{n}")
}

async fn sync_follows_the_directory(backend: Backend) {
    let directory = TestDirectory::start().await;
    let mut more = String::new();
    let mut members = format!("dn: {GROUP_DN}\nchangetype: modify\nadd: member\n");
    for n in 0..5 {
        let name = format!("Staff Member {n}");
        more += &person(&staff(n), &name, "staff-secret", 512, "Library");
        members += &format!("member: uid={},{PEOPLE_DN}\n", staff(n));
    }
    directory.load(&more);
    directory.change(&members);
    let server = TestServer::start_with(backend, |c| {
        directory.configure(c);
        c.ldap.required_group = GROUP_DN.into();
        c.ldap.mail_attribute = "mail".into();
        c.ldap.department_attribute = "departmentNumber".into();
        // Eight people listed two at a time: the sync must follow the pages.
        c.ldap.page_size = 2;
        c.ldap.sync_interval = Lifetime::Forever;
        c.directory.search_all_users = true;
    })
    .await;
    let url = server.url();
    let admin = server.register_admin("admin").await;
    let alice = login(&url, "alice", "alice-secret").await;
    let mut staffers = Vec::new();
    for n in 0..3 {
        staffers.push(login(&url, &staff(n), "staff-secret").await);
    }

    // What the first logins imported, searchable by department and mail.
    let found = search(&staffers[0], "finance").await;
    assert_eq!(
        found,
        [(
            alice.user_id.clone(),
            json!("alice@example.org"),
            json!("Finance")
        )]
    );
    let library: Vec<String> = search(&alice, "library")
        .await
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(library.len(), 3, "{library:?}");
    // Nothing changed in the directory: a sync changes nothing here.
    let report = ldap_sync::run(server.state(), false).await.unwrap();
    assert_eq!(report.listed, 8, "{report:?}");
    assert_eq!(report.accounts, 4, "{report:?}");
    assert!(report.deactivated.is_empty(), "{report:?}");
    assert_eq!(report.attributes_updated, 0, "{report:?}");

    // The directory changes: staff0 leaves, staff1 leaves the group,
    // staff2 moves department, alice's address changes.
    directory.change(&format!(
        "dn: uid=staff0,{PEOPLE_DN}\nchangetype: delete\n\n\
         dn: {GROUP_DN}\nchangetype: modify\ndelete: member\nmember: uid=staff1,{PEOPLE_DN}\n\n\
         dn: uid=staff2,{PEOPLE_DN}\nchangetype: modify\nreplace: departmentNumber\ndepartmentNumber: Archives\n\n\
         dn: uid=alice,{PEOPLE_DN}\nchangetype: modify\nreplace: mail\nmail: a.liddell@example.org\n"
    ));
    let report = ldap_sync::run(server.state(), false).await.unwrap();
    let gone: Vec<(&str, &str)> = report
        .deactivated
        .iter()
        .map(|d| (d.user_id.as_str(), d.reason))
        .collect();
    assert_eq!(
        gone,
        [
            (staffers[0].user_id.as_str(), "ldap_entry_gone"),
            (staffers[1].user_id.as_str(), "ldap_not_in_group"),
        ]
    );
    assert_eq!(report.attributes_updated, 2, "{report:?}");
    assert!(!signed_in(&staffers[0]).await);
    assert!(!signed_in(&staffers[1]).await);
    assert!(signed_in(&staffers[2]).await);
    assert!(signed_in(&alice).await);
    assert!(signed_in(&admin).await, "local accounts are not the sync's");
    assert_eq!(
        server
            .audit_count("%\"account_deactivated\"%\"ldap_entry_gone\"%")
            .await,
        1
    );
    assert_eq!(
        server
            .audit_count("%\"account_deactivated\"%\"ldap_not_in_group\"%")
            .await,
        1
    );
    // Deactivated people leave the directory and their attributes go.
    let left = "SELECT COUNT(*) FROM directory_attributes WHERE user_id = $1";
    assert_eq!(server.count(left, &staffers[0].user_id).await, 0);
    assert_eq!(server.count(left, &staffers[1].user_id).await, 0);
    let library: Vec<String> = search(&alice, "library")
        .await
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert!(library.is_empty(), "{library:?}");
    assert_eq!(
        search(&alice, "archives").await,
        [(
            staffers[2].user_id.clone(),
            json!("staff2@example.org"),
            json!("Archives")
        )]
    );
    assert_eq!(
        search(&staffers[2], "a.liddell@exa").await[0].1,
        json!("a.liddell@example.org")
    );
    // Back in the group, staff1 still cannot sign in: deactivation is final.
    directory.change(&format!(
        "dn: {GROUP_DN}\nchangetype: modify\nadd: member\nmember: uid=staff1,{PEOPLE_DN}\n"
    ));
    let again = Client::try_login(&url, "staff1", "staff-secret", None).await;
    let (status, body) = again.map(|c| c.user_id).unwrap_err();
    assert_eq!((status, errcode(&body)), (403, Some("M_USER_DEACTIVATED")));
    let report = ldap_sync::run(server.state(), false).await.unwrap();
    assert!(report.deactivated.is_empty(), "{report:?}");

    // The directory down: an error, and nothing changes.
    directory_down_changes_nothing(&server, directory).await;
    server.stop().await;
}

async fn directory_down_changes_nothing(server: &TestServer, mut directory: TestDirectory) {
    let active = "SELECT COUNT(*) FROM users WHERE deactivated = 0 AND user_id <> $1";
    let before = server.count(active, "").await;
    directory.stop();
    let err = ldap_sync::run(server.state(), false).await.unwrap_err();
    assert_eq!(err.status.as_u16(), 503, "{}", err.message);
    assert_eq!(server.count(active, "").await, before);
}

async fn held_back_and_forced(backend: Backend) {
    let directory = TestDirectory::start().await;
    let server = TestServer::start_with(backend, |c| {
        directory.configure(c);
        // The whole filter, with the login name's place marked.
        c.ldap.user_filter = "(&(objectClass=inetOrgPerson)(uid={username}))".into();
        c.ldap.active_directory = true;
        c.ldap.sync_interval = Lifetime::Forever;
        c.ldap.sync_max_deactivations = 1;
    })
    .await;
    let url = server.url();
    let alice = login(&url, "alice", "alice-secret").await;
    let bob = login(&url, "bob", "bob-secret").await;
    // Bob is disabled the Active Directory way, Alice's entry is deleted:
    // two deactivations, one more than allowed.
    directory.change(&format!(
        "dn: uid=bob,{PEOPLE_DN}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\n\
         dn: uid=alice,{PEOPLE_DN}\nchangetype: delete\n"
    ));
    let report = ldap_sync::run(server.state(), false).await.unwrap();
    assert_eq!(report.held_back, Some(2), "{report:?}");
    assert!(report.deactivated.is_empty(), "{report:?}");
    assert!(signed_in(&alice).await && signed_in(&bob).await);

    // The operator's command: refuses the same way, then `--force`.
    let mut env = directory.env();
    env.push(("CLOISTER_LDAP__ACTIVE_DIRECTORY".into(), "true".into()));
    env.push((
        "CLOISTER_LDAP__USER_FILTER".into(),
        "(&(objectClass=inetOrgPerson)(uid={username}))".into(),
    ));
    env.push(("CLOISTER_LDAP__SYNC_MAX_DEACTIVATIONS".into(), "1".into()));
    let held = run_command(&server, &["ldap", "sync"], env.clone()).await;
    assert!(!held.status.success());
    let stderr = String::from_utf8_lossy(&held.stderr);
    assert!(stderr.contains("held back"), "{stderr}");
    assert!(signed_in(&alice).await && signed_in(&bob).await);
    let forced = run_command(&server, &["ldap", "sync", "--force"], env).await;
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let report: Value = serde_json::from_slice(&forced.stdout).unwrap();
    let reasons: Vec<&str> = report["deactivated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["ldap_entry_gone", "ldap_disabled"], "{report}");
    // The command is another process: the server notices once its copies
    // of the tokens' rows are older than `access_token_cache_ms`.
    let copies = server.config().access_token_cache();
    tokio::time::sleep(copies + std::time::Duration::from_millis(50)).await;
    assert!(!signed_in(&alice).await && !signed_in(&bob).await);
    assert_eq!(
        server
            .audit_count("%\"account_deactivated\"%\"ldap_disabled\"%")
            .await,
        1
    );
    server.stop().await;
}

/// The server runs the sync on its own: first a minute after start, then
/// every `sync_interval` (on the server's clock, moved here by hand).
async fn runs_on_its_own(backend: Backend) {
    let directory = TestDirectory::start().await;
    let clock = ManualClock::new(1_700_000_000_000);
    let server = TestServer::start_with_clock(backend, clock.clone(), |c| {
        directory.configure(c);
        c.ldap.sync_interval = "1h".parse().unwrap();
    })
    .await;
    let alice = login(&server.url(), "alice", "alice-secret").await;
    directory.change(&format!("dn: uid=alice,{PEOPLE_DN}\nchangetype: delete\n"));
    clock.advance_ms(61_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let deactivated = "cloister_ldap_sync_deactivations_total 1\n";
    while !server.metrics().await.contains(deactivated) {
        assert!(
            std::time::Instant::now() < deadline,
            "the periodic sync did not run:\n{}",
            server.metrics().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!signed_in(&alice).await);
    server.stop().await;
}

both_backends!(
    follows, sync_follows_the_directory;
    held_back, held_back_and_forced;
    periodic, runs_on_its_own;
);
