//! The data-subject part of the admin API: erasure (GDPR Art. 17),
//! subject-access exports (Art. 15/20) and the record of processing
//! (Art. 30), shared with the console's DPO pages. Every call is audited
//! as its [`Caller`] is extracted, and refused unless the caller may make it.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::admin::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
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
pub(super) async fn erase<C: Caller>(
    State(state): State<Context>,
    caller: C,
    Path(user_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    local_user(&state, &user_id)?;
    let actor = state.audit.actor(caller.user_id());
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
pub(super) async fn export<C: Caller>(
    State(state): State<Context>,
    caller: C,
    Path(user_id): Path<String>,
    Body(body): Body<ExportBody>,
) -> ApiResult<Response> {
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
        (None, true) if C::PLAIN_EXPORTS => None,
        (None, true) => {
            return Err(ApiError::forbidden(
                "Exports from the console are always sealed to a recipient_key",
            ))
        }
    };
    local_user(&state, &user_id)?;
    let actor = state.audit.actor(caller.user_id());
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
pub(super) async fn processing<C: Caller>(
    State(state): State<Context>,
    _: C,
    Query(query): Query<ReportQuery>,
) -> ApiResult<Response> {
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
