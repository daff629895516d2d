//! The data-subject part of the admin API: erasure (GDPR Art. 17),
//! subject-access exports (Art. 15/20) and the record of processing
//! (Art. 30). Every call goes through `admin::admit`: refused for
//! non-admins, and audited either way.

use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::admin::admit;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::Context;
use crate::service::{erasure, processing_report, subject_export};

fn local_user(state: &Context, user_id: &str) -> ApiResult<()> {
    if state.is_local_user(user_id) {
        Ok(())
    } else {
        Err(ApiError::not_found("Unknown user"))
    }
}

/// `POST /_cloister/admin/v1/users/{userId}/erase`: erases the person
/// (legal holds excepted) and answers with the receipt.
pub(super) async fn erase(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
    Path(user_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    admit(&state, &auth, &route).await?;
    local_user(&state, &user_id)?;
    let actor = state.audit.actor(&auth.user_id);
    Ok(Json(erasure::erase_user(&state, &user_id, actor).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportBody {
    recipient_key: Option<String>,
    #[serde(default)]
    plain: bool,
}

/// `POST /_cloister/admin/v1/users/{userId}/export`: with
/// `{"recipient_key": "<unpadded base64 X25519 public key>"}` the export
/// sealed to that key (`application/octet-stream`); with `{"plain": true}`
/// the JSON itself.
pub(super) async fn export(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
    Path(user_id): Path<String>,
    Body(body): Body<ExportBody>,
) -> ApiResult<Response> {
    admit(&state, &auth, &route).await?;
    let recipient = match (&body.recipient_key, body.plain) {
        (Some(_), true) => {
            return Err(ApiError::invalid_param(
                "Give either recipient_key or plain, not both",
            ))
        }
        (None, false) => {
            return Err(ApiError::missing_param(
                "recipient_key is required (or \"plain\": true for an unsealed export)",
            ))
        }
        (Some(key), false) => Some(subject_export::parse_recipient(key)?),
        (None, true) => None,
    };
    local_user(&state, &user_id)?;
    let actor = state.audit.actor(&auth.user_id);
    let bytes = subject_export::export(&state, &user_id, actor, recipient.as_ref()).await?;
    let content_type = if recipient.is_some() {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let mut response = bytes.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    format: Option<String>,
}

/// `GET /_cloister/admin/v1/report/processing?format=markdown|json`: the
/// record of processing activities, Markdown by default.
pub(super) async fn processing(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
    Query(query): Query<ReportQuery>,
) -> ApiResult<Response> {
    admit(&state, &auth, &route).await?;
    let markdown = match query.format.as_deref() {
        None | Some("markdown") => true,
        Some("json") => false,
        Some(_) => return Err(ApiError::invalid_param("format must be json or markdown")),
    };
    let record = processing_report::build(&state).await?;
    if !markdown {
        return Ok(Json(record).into_response());
    }
    let mut response = processing_report::to_markdown(&record).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    Ok(response)
}
