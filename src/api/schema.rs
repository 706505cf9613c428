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

/// Names that change how the shell, the dynamic linker, the AWS CLI or Docker behave: set by a
/// tenant, they would run code before the build script (`BASH_ENV`, `ENV`, `LD_PRELOAD`),
/// replace the tools it calls (`PATH`), or send the image and credentials elsewhere
/// (`AWS_*`, `DOCKER_*`).
pub const RESERVED_BUILD_VARIABLES: &[&str] = &[
    "BASH_ENV",
    "BASHOPTS",
    "ENV",
    "IFS",
    "PATH",
    "PS4",
    "SHELLOPTS",
];
/// Prefixes of reserved names, for the same reasons.
pub const RESERVED_BUILD_PREFIXES: &[&str] = &["AWS_", "CODEBUILD_", "DOCKER_", "LD_"];

fn cel_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn build_env_vars(_: &mut SchemaGenerator) -> Schema {
    env_vars(Some(json!([
        {
            "rule": format!("!({}).exists(p, self.name.startsWith(p))", format!("[{}]", cel_list(RESERVED_BUILD_PREFIXES))),
            "message": format!(
                "build environment variable names must not start with {}: CodeBuild, the AWS CLI, Docker and the dynamic linker read them",
                RESERVED_BUILD_PREFIXES.join(", ")
            )
        },
        {
            "rule": format!("!(self.name in [{}])", cel_list(RESERVED_BUILD_VARIABLES)),
            "message": format!(
                "build environment variable names must not be {}: they change what the build shell runs",
                RESERVED_BUILD_VARIABLES.join(", ")
            )
        },
        {
            "rule": format!("!(self.name in [{}])", cel_list(OPERATOR_BUILD_VARIABLES)),
            "message": format!(
                "build environment variable names must not be one the operator sets ({})",
                OPERATOR_BUILD_VARIABLES.join(", ")
            )
        }
    ])))
}

/// A namespace label selector, as Kubernetes writes it.
pub fn label_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "matchLabels": {
                "type": "object",
                "maxProperties": 20,
                "additionalProperties": {"type": "string", "maxLength": 63}
            },
            "matchExpressions": {
                "type": "array",
                "maxItems": 20,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "minLength": 1, "maxLength": 317},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {"type": "array", "maxItems": 50, "items": {"type": "string", "maxLength": 63}}
                    },
                    "x-kubernetes-validations": [{
                        "rule": "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
                        "message": "In and NotIn need values; Exists and DoesNotExist take none"
                    }]
                }
            }
        }
    })
}

fn patterns(max_length: u32, pattern: &str, message: &str) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 50,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "pattern": pattern,
            "x-kubernetes-validations": [{"rule": "self != '*'", "message": message}]
        }
    })
}

/// Names or ARNs, each with optional `*` wildcards.
pub fn name_patterns(_: &mut SchemaGenerator) -> Schema {
    patterns(
        2048,
        r"^[^\s?]+$",
        "a lone * admits everything: leave the field out instead",
    )
}

/// IAM role ARNs, each with optional `*` wildcards.
pub fn role_arn_patterns(_: &mut SchemaGenerator) -> Schema {
    patterns(
        1024,
        r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/*-]+$",
        "a lone * admits everything: leave the field out instead",
    )
}

/// Managed policy ARNs, each with optional `*` wildcards.
pub fn policy_arn_patterns(_: &mut SchemaGenerator) -> Schema {
    patterns(
        2048,
        r"^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/[\w+=,.@/*-]+$",
        "a lone * admits everything: leave the field out instead",
    )
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
