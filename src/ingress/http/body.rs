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

impl Body {
    /// The body as a JSON object of type `T`, naming the first wrong field; an empty body
    /// is `empty` when given, else refused. (serde would also take an array for a struct,
    /// field by position: only an object is accepted.) No value is echoed.
    pub fn object<T: serde::de::DeserializeOwned>(&self, empty: Option<T>) -> Result<T, ApiError> {
        let first = self.0.iter().find(|b| !b.is_ascii_whitespace());
        match (first, empty) {
            (None, Some(value)) => return Ok(value),
            (Some(b'{'), _) => {}
            _ => return Err(ApiError::bad_request("body", "must be a JSON object")),
        }
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&self.0))
            .map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner();
                let message = if inner.is_syntax() || inner.is_eof() {
                    "is not valid JSON".to_string()
                } else {
                    let m = inner.to_string();
                    // serde names an unknown field (useful) or a wrong value (kept out).
                    match m.split_once(" at line ") {
                        Some((head, _))
                            if head.starts_with("unknown field")
                                || head.starts_with("missing field") =>
                        {
                            head.to_string()
                        }
                        _ => "is missing or not of the expected type".to_string(),
                    }
                };
                ApiError::bad_request(if field == "." { "body" } else { &field }, &message)
            })
    }
}
