//! A request body bounded in size, refused in the API's own error shape.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::http::StatusCode;

use super::error::ApiError;
use super::state::ApiState;

/// A request body within `max_body_bytes`. A larger one is refused with a VCF Error
/// naming the limit (413 REQUEST_TOO_LARGE), not axum's plain-text answer.
pub struct Body(pub Bytes);

impl FromRequest<Arc<ApiState>> for Body {
    type Rejection = ApiError;

    async fn from_request(
        req: axum::extract::Request,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| {
                let mut err = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    let message = format!(
                        "body: is larger than {} bytes (amqp.max_message_bytes)",
                        state.max_body_bytes
                    );
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "REQUEST_TOO_LARGE", message)
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "INVALID_REQUEST",
                        format!("body: {}", e.body_text()),
                    )
                };
                err.body = err.body.argument("body").context("field", "body");
                err
            })
    }
}
