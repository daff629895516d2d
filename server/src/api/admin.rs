//! The server-admin HTTP API, `/_cloister/admin/v1/…`: the audit log and
//! account administration. Only server admins may call it, and every call —
//! refused ones included — is written to the audit log.

use axum::extract::{MatchedPath, Path, State};
use axum::Json;
use cloister_audit::{Action, Details, Target};
use serde::Serialize;

use super::EmptyResponse;
use crate::error::{ApiError, ApiResult};
use crate::service::session::Auth;
use crate::service::Context;
use crate::service::{accounts, audit};

/// Records the call (its route, never its parameters) and refuses
/// non-admins. Runs before the call does anything.
pub(crate) async fn admit(state: &Context, auth: &Auth, route: &MatchedPath) -> ApiResult<()> {
    let target = Target::new(route.as_str()).map_err(|_| ApiError::internal())?;
    let denied = Details::new()
        .with("denied", u64::from(!auth.is_admin))
        .map_err(|_| ApiError::internal())?;
    let entry = audit::by_user(state, &auth.user_id, Action::AdminCall)
        .target(target)
        .details(denied);
    audit::record_alone(state, entry).await?;
    if auth.is_admin {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "This endpoint is for server administrators",
        ))
    }
}

pub(crate) fn internal(err: anyhow::Error) -> ApiError {
    tracing::error!(error = %err, "admin API call failed");
    ApiError::internal()
}

#[derive(Serialize)]
pub(super) struct AuditKeyResponse {
    origin: String,
    verifier_key: String,
}

/// `GET /_cloister/admin/v1/audit/key`: the key a DPO verifies exports with.
pub(super) async fn audit_key(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
) -> ApiResult<Json<AuditKeyResponse>> {
    admit(&state, &auth, &route).await?;
    Ok(Json(AuditKeyResponse {
        origin: state.audit.origin().to_owned(),
        verifier_key: state.audit.verifier_key(),
    }))
}

#[derive(Serialize)]
pub(super) struct CheckpointResponse {
    /// The signed note (audit/FORMAT.md).
    checkpoint: String,
}

/// `POST /_cloister/admin/v1/audit/checkpoint`: signs a checkpoint now.
pub(super) async fn audit_checkpoint(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
) -> ApiResult<Json<CheckpointResponse>> {
    admit(&state, &auth, &route).await?;
    let checkpoint = audit::checkpoint(&state).await.map_err(internal)?;
    Ok(Json(CheckpointResponse { checkpoint }))
}

/// `GET /_cloister/admin/v1/audit/export`: the whole log and its checkpoints,
/// signed up to and including the record of this export.
pub(super) async fn audit_export(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
) -> ApiResult<Json<cloister_audit::AuditExport>> {
    admit(&state, &auth, &route).await?;
    audit::checkpoint(&state).await.map_err(internal)?;
    let export = audit::export(&state).await.map_err(internal)?;
    Ok(Json(export))
}

/// `POST /_cloister/admin/v1/users/{userId}/deactivate`
pub(super) async fn deactivate_user(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
    Path(user_id): Path<String>,
) -> ApiResult<Json<EmptyResponse>> {
    admit(&state, &auth, &route).await?;
    accounts::deactivate_by_admin(&state, &auth.user_id, &user_id).await?;
    Ok(Json(EmptyResponse {}))
}
