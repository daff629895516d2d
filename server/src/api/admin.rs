//! The server-admin HTTP API, `/_cloister/admin/v1/…`: the audit log and
//! account administration. Only server admins may call it, and every call —
//! refused ones included — is written to the audit log. [`Caller`] lets the
//! console's DPO pages share the compliance handlers.

use axum::extract::{FromRequestParts, MatchedPath, Path, State};
use axum::http::request::Parts;
use axum::Json;
use cloister_audit::{Action, Details, Target};
use serde::Serialize;

use super::EmptyResponse;
use crate::error::{ApiError, ApiResult};
use crate::service::session::Auth;
use crate::service::Context;
use crate::service::{accounts, audit};

/// Who may call a compliance endpoint: a server admin with an access token
/// (the admin API, [`Admin`]) or a data-protection officer signed in to the
/// console (`console::Dpo`). The handlers are written once, generic over
/// the caller, and routed once for each; extracting the caller has already
/// audited the call and refused anyone else.
pub(crate) trait Caller: FromRequestParts<Context, Rejection = ApiError> + Send {
    fn user_id(&self) -> &str;

    /// Whether a subject-access export may leave the server unsealed.
    const PLAIN_EXPORTS: bool;
}

/// A server admin calling the admin API.
pub(crate) struct Admin(pub Auth);

impl FromRequestParts<Context> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Context) -> ApiResult<Self> {
        let auth = Auth::from_request_parts(parts, state).await?;
        let route = MatchedPath::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::internal())?;
        record_call(state, &auth.user_id, &route, auth.is_admin).await?;
        if auth.is_admin {
            Ok(Admin(auth))
        } else {
            Err(ApiError::forbidden(
                "This endpoint is for server administrators",
            ))
        }
    }
}

impl Caller for Admin {
    fn user_id(&self) -> &str {
        &self.0.user_id
    }

    const PLAIN_EXPORTS: bool = true;
}

/// The audit entry for a call to an administrative endpoint, allowed or
/// not: who (pseudonym), which route, and whether it was refused. Written
/// before the call does anything.
pub(crate) async fn record_call(
    state: &Context,
    user_id: &str,
    route: &MatchedPath,
    allowed: bool,
) -> ApiResult<()> {
    let target = Target::new(route.as_str()).map_err(|_| ApiError::internal())?;
    let denied = Details::new()
        .with("denied", u64::from(!allowed))
        .map_err(|_| ApiError::internal())?;
    let entry = audit::by_user(state, user_id, Action::AdminCall)
        .target(target)
        .details(denied);
    audit::record_alone(state, entry).await?;
    Ok(())
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
pub(super) async fn audit_key<C: Caller>(
    State(state): State<Context>,
    _: C,
) -> ApiResult<Json<AuditKeyResponse>> {
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
    _: Admin,
) -> ApiResult<Json<CheckpointResponse>> {
    let checkpoint = audit::checkpoint(&state).await.map_err(internal)?;
    Ok(Json(CheckpointResponse { checkpoint }))
}

/// `GET /_cloister/admin/v1/audit/export`: the whole log and its checkpoints,
/// signed up to and including the record of this export.
pub(super) async fn audit_export<C: Caller>(
    State(state): State<Context>,
    _: C,
) -> ApiResult<Json<cloister_audit::AuditExport>> {
    audit::checkpoint(&state).await.map_err(internal)?;
    let export = audit::export(&state).await.map_err(internal)?;
    Ok(Json(export))
}

/// `POST /_cloister/admin/v1/users/{userId}/deactivate`
pub(super) async fn deactivate_user(
    State(state): State<Context>,
    Admin(auth): Admin,
    Path(user_id): Path<String>,
) -> ApiResult<Json<EmptyResponse>> {
    accounts::deactivate_by_admin(&state, &auth.user_id, &user_id).await?;
    Ok(Json(EmptyResponse {}))
}
