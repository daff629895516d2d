//! The admin HTTP API on both backends: only server admins get through,
//! every call (refused ones too) lands in the audit log, and the log it
//! exports verifies offline with the key it publishes.

use cloister_tests::{both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

async fn admin_api(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let admin = server.register_admin("admin").await;
    let bob = Client::register(&url, "bob", "bob-pw").await;

    // Non-admins are refused, and the attempt is recorded.
    let (status, body) = bob.get("/_cloister/admin/v1/audit/key").await;
    assert_eq!(
        (status, errcode(&body)),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, _) = bob
        .post(
            &format!(
                "/_cloister/admin/v1/users/{}/deactivate",
                encode(&admin.user_id)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);

    let (status, key) = admin.get("/_cloister/admin/v1/audit/key").await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["origin"], "localhost/audit");
    let verifier = key["verifier_key"].as_str().unwrap().to_owned();
    let (status, checkpoint) = admin
        .post("/_cloister/admin/v1/audit/checkpoint", json!({}))
        .await;
    assert_eq!(status, 200);
    assert!(checkpoint["checkpoint"]
        .as_str()
        .unwrap()
        .starts_with("localhost/audit\n"));

    // Deactivation through the API locks the account out.
    let deactivate = format!(
        "/_cloister/admin/v1/users/{}/deactivate",
        encode(&bob.user_id)
    );
    assert_eq!(admin.post(&deactivate, json!({})).await.0, 200);
    assert_eq!(
        Client::try_login(&url, "bob", "bob-pw", None)
            .await
            .unwrap_err()
            .0,
        403
    );
    assert_eq!(
        admin.post(&deactivate, json!({})).await.0,
        400,
        "already deactivated"
    );
    let (status, _) = admin
        .post(
            "/_cloister/admin/v1/users/%40nobody%3Alocalhost/deactivate",
            json!({}),
        )
        .await;
    assert_eq!(status, 404);

    // The export verifies with the published key and names no one.
    let (status, export) = admin.get("/_cloister/admin/v1/audit/export").await;
    assert_eq!(status, 200);
    let text = export.to_string();
    assert!(
        !text.contains("@bob") && !text.contains("@admin"),
        "the log names users"
    );
    let parsed = cloister_audit::AuditExport::from_json(text.as_bytes()).unwrap();
    let key = cloister_audit::NoteVerifier::parse(&verifier).unwrap();
    let report = cloister_audit::verify_export(&parsed, &key);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        report.unsigned_entries, 0,
        "the export is signed up to its own record"
    );
    let entries = export["entries"].as_array().unwrap();
    let denied: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "admin_call" && e["details"]["denied"] == 1)
        .collect();
    assert_eq!(denied.len(), 2, "both refused calls are recorded");
    assert!(entries.iter().any(|e| e["action"] == "account_deactivated"));
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "admin_call" && e["details"]["denied"] == 0)
            .count(),
        6
    );
    server.stop().await;
}

both_backends!(admin_api, admin_api);
