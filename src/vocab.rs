//! VCF's closed vocabularies: resource, account and credential types. The inventory
//! checks values against them, and the HTTP API's OpenAPI document lists them.

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

pub const RESOURCE_TYPES: &[&str] = &[
    "LINUX",
    "ESXI",
    "VCENTER",
    "PSC",
    "NSX_MANAGER",
    "NSX_CONTROLLER",
    "NSX_EDGE",
    "NSXT_MANAGER",
    "NSXT_EDGE",
    "VRLI",
    "VROPS",
    "VRA",
    "WSA",
    "VRSLCM",
    "VXRAIL_MANAGER",
    "BACKUP",
    // rotor's own: the postgresql platform's database roles, RabbitMQ users (http).
    "POSTGRESQL",
    "RABBITMQ",
];

pub const ACCOUNT_TYPES: &[&str] = &["USER", "SYSTEM", "SERVICE"];

pub const CREDENTIAL_TYPES: &[&str] = &["SSO", "SSH", "API", "FTP", "AUDIT"];

/// A string schema that admits only `values`.
pub fn one_of(values: &[&str]) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

pub fn resource_type_schema() -> Object {
    one_of(RESOURCE_TYPES)
}

pub fn account_type_schema() -> Object {
    one_of(ACCOUNT_TYPES)
}

pub fn credential_type_schema() -> Object {
    one_of(CREDENTIAL_TYPES)
}
