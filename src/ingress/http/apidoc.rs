//! The OpenAPI document's frame: its info, tags and bearer scheme, and the error
//! answers many routes share. The paths come from the handlers' `#[utoipa::path]`
//! through `routes::api`, which builds the router from the same list.

use std::collections::BTreeMap;

use utoipa::openapi::content::Content;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoResponses, Modify};

use crate::vcf_error::VcfError;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "rotor",
        description = "rotor's HTTP API: VCF-compatible credentials, tasks and token routes, \
            PrivX-compatible secrets-manager routes, the inventory, and operations routes. \
            Bearer tokens with scopes (`admin` grants all). No route ever returns a password."
    ),
    servers((url = "/")),
    security(("bearerAuth" = [])),
    tags(
        (name = "credentials"),
        (name = "tasks"),
        (name = "tokens"),
        (name = "privx"),
        (name = "resources"),
        (name = "operations")
    ),
    components(schemas(VcfError)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token from `[[http.token]]`, or an access token from POST /v1/tokens. \
                 Scopes: credentials:view, credentials:manage, tasks:view, resources:manage, \
                 admin.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearerAuth", SecurityScheme::Http(scheme));
    }
}

/// A response whose body is the named error schema.
fn error(schema: &str, description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name(schema))),
        )
        .build()
        .into()
}

const TOO_MANY: &str = "Ten failed logins from this address within a minute: refused unheard \
    until the minute is over (`Retry-After`).";

/// What every route behind a bearer token may answer besides its own: 401, 403, 429, 503.
pub struct Guarded;

impl IntoResponses for Guarded {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            ("401", "No bearer token, or an unknown one."),
            (
                "403",
                "The token lacks the scope this route needs, or names a resource outside its \
                 `resources` globs (`PERMISSION_DENIED`).",
            ),
            ("429", TOO_MANY),
            (
                "503",
                "The database is not reachable; nothing was done. Try again.",
            ),
        ]
        .into_iter()
        .map(|(status, text)| (status.to_string(), error("VcfError", text)))
        .collect()
    }
}

/// The same for the PrivX routes, whose errors have PrivX's shape.
pub struct PrivxGuarded;

impl IntoResponses for PrivxGuarded {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            (
                "401",
                "No bearer token, or an unknown one (`PERMISSION_DENIED`).",
            ),
            (
                "403",
                "The token lacks `credentials:manage` (`PERMISSION_DENIED`).",
            ),
            ("429", TOO_MANY),
            (
                "503",
                "The database is not reachable, or the password was queued but not stored \
                 within 30 s.",
            ),
        ]
        .into_iter()
        .map(|(status, text)| (status.to_string(), error("PrivxError", text)))
        .collect()
    }
}

/// 413 for a route that takes a body.
pub struct TooLarge;

impl IntoResponses for TooLarge {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([(
            "413".to_string(),
            error(
                "VcfError",
                "The body is larger than `amqp.max_message_bytes`: `errorCode` \
                 REQUEST_TOO_LARGE, `context.field` body.",
            ),
        )])
    }
}

/// What the generator gets wrong, put right on the rendered document: a link's keys in
/// camelCase (utoipa 5.5 writes `operation_id`), and no `null` type on a parameter (a
/// query or header value is absent, never null).
pub fn tidy(doc: &mut serde_json::Value) {
    use serde_json::Value;
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for operation in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in operation.values_mut() {
            for param in op
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(types) = param.pointer_mut("/schema/type").filter(|t| t.is_array()) {
                    let kept: Vec<Value> = types
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|t| t.as_str() != Some("null"))
                        .cloned()
                        .collect();
                    *types = match <[Value; 1]>::try_from(kept) {
                        Ok([one]) => one,
                        Err(many) => Value::Array(many),
                    };
                }
            }
            let responses = op.get_mut("responses").and_then(Value::as_object_mut);
            for response in responses.into_iter().flat_map(|r| r.values_mut()) {
                let links = response.get_mut("links").and_then(Value::as_object_mut);
                for link in links
                    .into_iter()
                    .flat_map(|l| l.values_mut())
                    .filter_map(Value::as_object_mut)
                {
                    for (from, to) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(v) = link.remove(from) {
                            link.insert(to.to_string(), v);
                        }
                    }
                }
            }
        }
    }
}
