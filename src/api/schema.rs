//! Hand-written schema fragments for fields whose validation schemars cannot express: each one
//! bounds sizes (so the API server can bound the cost of CEL rules) and carries CEL rules whose
//! messages tell the user exactly what is wrong.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::json;

/// Regular expression for an email address: deliberately loose (local@domain.tld), as SNS
/// accepts any address and confirms it by mail.
/// Written for a CEL string literal: `\\s` reaches the regex engine as `\s`.
const EMAIL_PATTERN: &str = r"^[^@\\s]+@[^@\\s]+[.][^@\\s]+$";

pub fn email_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 20,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "maxLength": 254,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{EMAIL_PATTERN}')"),
                "message": "must be an email address such as team@example.com"
            }]
        }
    })
}

pub fn tag_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 40,
        "additionalProperties": {"type": "string", "maxLength": 255},
        "x-kubernetes-validations": [
            {
                "rule": "self.all(k, k.size() <= 127 && !k.lowerAscii().startsWith('aws:'))",
                "message": "tag keys must be at most 127 characters and must not start with aws: (in any case)"
            },
            {
                "rule": r"self.all(k, self[k].matches('^[\\p{L}\\p{Z}\\p{N}_.:/=+@-]*$'))",
                "message": "tag values may contain only letters, digits, spaces and _ . : / = + - @"
            },
            {
                "rule": r"self.all(k, k.matches('^[\\p{L}\\p{Z}\\p{N}_.:/=+@-]+$'))",
                "message": "tag keys may contain only letters, digits, spaces and _ . : / = + - @"
            }
        ]
    })
}

/// Extra CIDR blocks allowed to reach the container: one security group rule each, and AWS's
/// default quota is 60 inbound rules per security group (the VPC's own CIDR takes one).
pub fn ingress_cidrs(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 20,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "maxLength": 18,
            "pattern": r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$",
            "x-kubernetes-validations": [{
                "rule": "isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self) == cidr(self).masked()",
                "message": "allowedIngressCidrs entries must be IPv4 network addresses such as 203.0.113.0/24 (valid octets, no host bits set)"
            }]
        }
    })
}

pub fn severity_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 6,
        "default": {"CRITICAL": 0},
        "additionalProperties": {"type": "integer", "format": "int32", "minimum": 0},
        "x-kubernetes-validations": [{
            "rule": "self.all(k, k in ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW', 'INFORMATIONAL', 'UNDEFINED'])",
            "message": "imageScan.failOn keys must be ECR severities: CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or UNDEFINED"
        }]
    })
}

/// Build environment variables: CodeBuild reserves names starting with `CODEBUILD_`.
/// Variables the operator sets on the build project (read by the build script); the user's
/// build environment must not shadow them.
pub const OPERATOR_BUILD_VARIABLES: &[&str] = &[
    "AWS_ACCOUNT_ID",
    "AWS_REGION",
    "BUILD_CONTEXT",
    "CONTAINER_NAME",
    "DOCKERFILE",
    "IMAGE_TAG",
    "REPOSITORY_URI",
    "TAG_LATEST",
];

pub fn build_env_vars(_: &mut SchemaGenerator) -> Schema {
    let reserved = OPERATOR_BUILD_VARIABLES
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    env_vars(Some(json!([
        {
            "rule": "!self.name.startsWith('CODEBUILD_')",
            "message": "build environment variable names must not start with CODEBUILD_, which CodeBuild reserves"
        },
        {
            "rule": format!("!(self.name in [{reserved}])"),
            "message": format!(
                "build environment variable names must not be one the operator sets ({})",
                OPERATOR_BUILD_VARIABLES.join(", ")
            )
        }
    ])))
}

/// Container environment variables: ECS reserves no names (a container may set `AWS_REGION`).
pub fn container_env_vars(_: &mut SchemaGenerator) -> Schema {
    env_vars(None)
}

fn env_vars(rules: Option<serde_json::Value>) -> Schema {
    let mut item = json!({
        "type": "object",
        "required": ["name", "value"],
        "properties": {
            "name": {
                "type": "string",
                "description": "Variable name.",
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"
            },
            "value": {"type": "string", "description": "Variable value.", "maxLength": 4096}
        }
    });
    if let Some(rules) = rules {
        item["x-kubernetes-validations"] = rules;
    }
    json_schema!({
        "type": "array",
        "maxItems": 50,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": item
    })
}
