//! A resource as the HTTP API shows and takes it: SPEC section 6 in camelCase, without
//! the files the TOML inventory names. Its OpenAPI schema is derived from these types.

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Type};
use utoipa::ToSchema;

use crate::inventory::{self, AccountSpec, AdminSpec, ResourceSpec};

/// An inventory resource (SPEC section 6) in camelCase. It names no files: admin keys and
/// onboarding password files are set only by the TOML inventory (`rotor resource apply`);
/// a body naming one (`passwordFile`, `privateKeyFile`) is refused with the field named.
/// Changing address, port, hostKeys or insecureAcceptAnyHostKey needs the `admin` scope.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Resource)]
pub struct ResourceBody {
    #[schema(pattern = "^[A-Za-z0-9._-]+$")]
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(schema_with = crate::vocab::resource_type_schema)]
    pub kind: String,
    #[schema(min_length = 1)]
    pub address: String,
    #[serde(default = "inventory::default_port")]
    #[schema(minimum = 1, maximum = 65535, default = 22)]
    pub port: u16,
    /// At least one, unless insecureAcceptAnyHostKey.
    #[serde(default)]
    #[schema(schema_with = host_keys_schema)]
    pub host_keys: Vec<String>,
    #[serde(default)]
    #[schema(default = false)]
    pub insecure_accept_any_host_key: bool,
    #[serde(default = "inventory::default_platform")]
    #[schema(schema_with = platform_schema)]
    pub platform: String,
    /// How accounts prove their passwords over SSH.
    #[serde(default = "inventory::default_ssh_auth")]
    #[schema(schema_with = ssh_auth_schema)]
    pub ssh_auth: String,
    pub policy: Option<String>,
    /// Refused logins that lock an account on the target (pam_faillock `deny`, ESXi's
    /// 5): rotor risks fewer than this many.
    /// Unset: 5 on esxi, 3 elsewhere.
    #[serde(default)]
    #[schema(minimum = 2, maximum = 100)]
    pub lockout_threshold: Option<i32>,
    pub admin: Option<AdminBody>,
    #[serde(default)]
    pub account: Vec<AccountBody>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminBody {
    pub username: String,
    #[serde(default)]
    #[schema(default = false)]
    pub sudo: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountBody {
    pub username: String,
    #[serde(default = "inventory::default_account_type")]
    #[schema(schema_with = account_type_schema)]
    pub account_type: String,
    #[serde(default = "inventory::default_credential_type")]
    #[schema(schema_with = credential_type_schema)]
    pub credential_type: String,
    #[schema(minimum = 1, maximum = 365)]
    pub auto_rotate_days: Option<i32>,
}

fn host_keys_schema() -> utoipa::openapi::schema::Array {
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^SHA256:[A-Za-z0-9+/]{43}$"))
        .examples(["SHA256:azz6TGmyWIdVRiAbu9glvuWZHlqw0NryiaOsQFPK/yc"]);
    ArrayBuilder::new()
        .items(key)
        .description(Some(
            "OpenSSH SHA256 fingerprints. At least one, unless insecureAcceptAnyHostKey.",
        ))
        .build()
}

fn platform_schema() -> Object {
    let mut o = crate::vocab::one_of(crate::driver::PLATFORMS);
    o.default = Some(inventory::default_platform().into());
    o
}

fn ssh_auth_schema() -> Object {
    let mut o = crate::vocab::one_of(crate::driver::SSH_AUTHS);
    o.default = Some(inventory::default_ssh_auth().into());
    o
}

fn account_type_schema() -> Object {
    let mut o = crate::vocab::account_type_schema();
    o.default = Some(inventory::default_account_type().into());
    o
}

fn credential_type_schema() -> Object {
    let mut o = crate::vocab::credential_type_schema();
    o.default = Some(inventory::default_credential_type().into());
    o
}

impl From<ResourceBody> for ResourceSpec {
    fn from(b: ResourceBody) -> Self {
        ResourceSpec {
            id: b.id,
            name: b.name,
            kind: b.kind,
            address: b.address,
            port: b.port,
            host_keys: b.host_keys,
            insecure_accept_any_host_key: b.insecure_accept_any_host_key,
            platform: b.platform,
            ssh_auth: Some(b.ssh_auth),
            policy: b.policy,
            lockout_threshold: b.lockout_threshold,
            http: None,
            admin: b.admin.map(|a| AdminSpec {
                username: a.username,
                private_key_file: None,
                password_file: None,
                sudo: a.sudo,
            }),
            account: b
                .account
                .into_iter()
                .map(|a| AccountSpec {
                    username: a.username,
                    account_type: a.account_type,
                    credential_type: a.credential_type,
                    password_file: None,
                    auto_rotate_days: a.auto_rotate_days,
                })
                .collect(),
        }
    }
}
