//! The least-privilege IAM policy of the operator's own identity (`delivery-operator
//! iam-policy`): every action it calls, on the resources it names, and the guards that keep a
//! compromised or misused operator from escalating: roles only on its path, created only with
//! the permissions boundary, passed only to the services that need them.

use serde_json::{Value, json};

/// Where the operator works and what it may create.
#[derive(Clone, Debug)]
pub struct Scope {
    pub partition: String,
    /// The account the policy is for (`*`: any account it is attached in).
    pub account: String,
    /// The region the operator works in (`*`: any).
    pub region: String,
    /// IAM path of the roles it creates (the DeliveryPolicy's `roles.path`).
    pub role_path: String,
    /// Permissions boundary every role it creates must carry.
    pub permissions_boundary_arn: Option<String>,
    /// Roles pipelines may name in `spec.credentials` / `managementRoleArn` (role ARN
    /// patterns, each in one account).
    pub assumable_roles: Vec<String>,
}

/// The statements, in the order a reviewer reads them.
pub fn operator_policy(scope: &Scope) -> Value {
    let p = &scope.partition;
    let a = &scope.account;
    let r = &scope.region;
    let arn = |service: &str, resource: &str| format!("arn:{p}:{service}:{r}:{a}:{resource}");
    let roles = format!("arn:{p}:iam::{a}:role{}*", scope.role_path);
    let managed_by = json!({"aws:ResourceTag/ManagedBy": "delivery-operator"});
    let mut statements = vec![
        statement("Identity", &["sts:GetCallerIdentity"], json!("*"), None),
        statement(
            "AssumePipelineRoles",
            &["sts:AssumeRole"],
            json!(scope.assumable_roles),
            None,
        ),
        statement(
            "CreateKeys",
            &["kms:CreateKey"],
            json!("*"),
            Some(json!({"StringEquals": {"aws:RequestTag/ManagedBy": "delivery-operator"}})),
        ),
        statement(
            "ReadKeys",
            &[
                "kms:DescribeKey",
                "kms:GetKeyPolicy",
                "kms:GetKeyRotationStatus",
                "kms:ListResourceTags",
            ],
            json!(arn("kms", "key/*")),
            None,
        ),
        // Only keys it made (tagged at creation) are changed.
        statement(
            "ChangeOwnKeys",
            &[
                "kms:CancelKeyDeletion",
                "kms:EnableKey",
                "kms:EnableKeyRotation",
                "kms:PutKeyPolicy",
                "kms:ScheduleKeyDeletion",
                "kms:TagResource",
                "kms:UntagResource",
                "kms:UpdateKeyDescription",
            ],
            json!(arn("kms", "key/*")),
            Some(json!({"StringEquals": managed_by})),
        ),
        statement(
            "OwnAliases",
            &["kms:CreateAlias", "kms:DeleteAlias"],
            json!([arn("kms", "alias/delivery-operator/*"), arn("kms", "key/*")]),
            None,
        ),
        statement(
            "CreateRolesWithBoundary",
            &["iam:CreateRole", "iam:PutRolePermissionsBoundary"],
            json!(roles),
            scope
                .permissions_boundary_arn
                .as_ref()
                .map(|b| json!({"ArnEquals": {"iam:PermissionsBoundary": b}})),
        ),
        statement(
            "ManageRolesOnPath",
            &[
                "iam:AttachRolePolicy",
                "iam:DeleteRole",
                "iam:DeleteRolePolicy",
                "iam:DetachRolePolicy",
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:ListAttachedRolePolicies",
                "iam:ListRolePolicies",
                "iam:PutRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:UpdateRole",
            ],
            json!(roles),
            None,
        ),
        statement(
            "PassRolesOnPathToTheirServices",
            &["iam:PassRole"],
            json!(roles),
            Some(json!({"StringEquals": {"iam:PassedToService": [
                "codebuild.amazonaws.com",
                "codepipeline.amazonaws.com",
                "ecs-tasks.amazonaws.com",
                "events.amazonaws.com"
            ]}})),
        ),
        statement(
            "ArtifactBuckets",
            &[
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:GetBucketPolicy",
                "s3:GetBucketPublicAccessBlock",
                "s3:GetBucketTagging",
                "s3:GetEncryptionConfiguration",
                "s3:GetLifecycleConfiguration",
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:PutBucketPolicy",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutBucketTagging",
                "s3:PutBucketVersioning",
                "s3:PutEncryptionConfiguration",
                "s3:PutLifecycleConfiguration",
            ],
            json!(format!("arn:{p}:s3:::*-artifacts")),
            None,
        ),
        statement(
            "EmptyArtifactBucketsBeforeDeletion",
            &["s3:DeleteObject", "s3:DeleteObjectVersion"],
            json!(format!("arn:{p}:s3:::*-artifacts/*")),
            None,
        ),
        // Sources are the teams' own buckets: read whether they keep versions and send events,
        // and turn the events on where a DeliveryPolicy allows it.
        statement(
            "SourceBuckets",
            &[
                "s3:GetBucketLocation",
                "s3:GetBucketNotification",
                "s3:GetBucketVersioning",
                "s3:PutBucketNotification",
            ],
            json!(format!("arn:{p}:s3:::*")),
            None,
        ),
        statement(
            "Repositories",
            &[
                "ecr:CreateRepository",
                "ecr:DeleteRepository",
                "ecr:DeleteRepositoryPolicy",
                "ecr:DescribeRepositories",
                "ecr:GetLifecyclePolicy",
                "ecr:GetRepositoryPolicy",
                "ecr:ListTagsForResource",
                "ecr:PutImageScanningConfiguration",
                "ecr:PutImageTagMutability",
                "ecr:PutLifecyclePolicy",
                "ecr:SetRepositoryPolicy",
                "ecr:TagResource",
                "ecr:UntagResource",
            ],
            json!(arn("ecr", "repository/delivery-operator/*")),
            None,
        ),
        statement(
            "LogGroups",
            &[
                "logs:AssociateKmsKey",
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:ListTagsForResource",
                "logs:PutRetentionPolicy",
                "logs:TagResource",
                "logs:UntagResource",
            ],
            json!(arn("logs", "log-group:/delivery-operator/*")),
            None,
        ),
        statement(
            "Topics",
            &[
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:GetTopicAttributes",
                "sns:ListSubscriptionsByTopic",
                "sns:ListTagsForResource",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
                "sns:TagResource",
                "sns:UntagResource",
            ],
            json!(arn("sns", "*")),
            None,
        ),
        statement(
            "BuildProjects",
            &[
                "codebuild:BatchGetProjects",
                "codebuild:CreateProject",
                "codebuild:DeleteProject",
                "codebuild:UpdateProject",
            ],
            json!(arn("codebuild", "project/*")),
            None,
        ),
        statement(
            "ReportGroups",
            &[
                "codebuild:BatchGetReportGroups",
                "codebuild:CreateReportGroup",
                "codebuild:DeleteReportGroup",
                "codebuild:UpdateReportGroup",
            ],
            json!(arn("codebuild", "report-group/*")),
            None,
        ),
        statement(
            "Pipelines",
            &[
                "codepipeline:CreatePipeline",
                "codepipeline:DeletePipeline",
                "codepipeline:GetPipeline",
                "codepipeline:GetPipelineState",
                "codepipeline:ListPipelineExecutions",
                "codepipeline:ListTagsForResource",
                "codepipeline:StartPipelineExecution",
                "codepipeline:TagResource",
                "codepipeline:UntagResource",
                "codepipeline:UpdatePipeline",
            ],
            json!(arn("codepipeline", "*")),
            None,
        ),
        statement(
            "PassConnections",
            &["codeconnections:PassConnection"],
            json!(arn("codeconnections", "connection/*")),
            Some(
                json!({"StringEquals": {"codeconnections:PassedToService": "codepipeline.amazonaws.com"}}),
            ),
        ),
        statement(
            "PassLegacyConnections",
            &["codestar-connections:PassConnection"],
            json!(arn("codestar-connections", "connection/*")),
            Some(
                json!({"StringEquals": {"codestar-connections:PassedToService": "codepipeline.amazonaws.com"}}),
            ),
        ),
        statement(
            "EventRules",
            &[
                "events:DeleteRule",
                "events:ListTagsForResource",
                "events:ListTargetsByRule",
                "events:PutRule",
                "events:PutTargets",
                "events:RemoveTargets",
                "events:TagResource",
                "events:UntagResource",
            ],
            json!(arn("events", "rule/*")),
            None,
        ),
        statement(
            "Alarms",
            &[
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:ListTagsForResource",
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:TagResource",
                "cloudwatch:UntagResource",
            ],
            json!(arn("cloudwatch", "alarm:*")),
            None,
        ),
        // Actions AWS cannot scope to a resource.
        statement(
            "UnscopableReads",
            &[
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeInternetGateways",
                "ec2:DescribeRouteTables",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcs",
                "ecs:DeregisterTaskDefinition",
                "ecs:DescribeTaskDefinition",
                "ecs:ListTaskDefinitions",
                "events:ListRules",
                "logs:DescribeLogGroups",
                "sns:Unsubscribe",
                "tag:GetResources",
            ],
            json!("*"),
            None,
        ),
    ];
    statements.extend(network_statements(&arn));
    statements.extend(service_statements(&arn));
    if let Some(boundary) = &scope.permissions_boundary_arn {
        // The boundary stays: no role is made or changed without it, and none loses it.
        statements.push(json!({
            "Sid": "NoRoleWithoutTheBoundary",
            "Effect": "Deny",
            "Action": ["iam:CreateRole", "iam:PutRolePermissionsBoundary"],
            "Resource": "*",
            "Condition": {"ArnNotEquals": {"iam:PermissionsBoundary": boundary}}
        }));
        statements.push(json!({
            "Sid": "NoBoundaryRemoved",
            "Effect": "Deny",
            "Action": "iam:DeleteRolePermissionsBoundary",
            "Resource": "*"
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The network parts, each action with exactly the resource types it takes.
fn network_statements(arn: &impl Fn(&str, &str) -> String) -> Vec<Value> {
    let vpc = arn("ec2", "vpc/*");
    let subnet = arn("ec2", "subnet/*");
    let route_table = arn("ec2", "route-table/*");
    let gateway = arn("ec2", "internet-gateway/*");
    let group = arn("ec2", "security-group/*");
    vec![
        statement(
            "Vpcs",
            &[
                "ec2:CreateVpc",
                "ec2:DeleteVpc",
                "ec2:DescribeVpcAttribute",
                "ec2:ModifyVpcAttribute",
            ],
            json!(vpc),
            None,
        ),
        statement("Subnets", &["ec2:CreateSubnet"], json!([subnet, vpc]), None),
        statement("DeleteSubnets", &["ec2:DeleteSubnet"], json!(subnet), None),
        statement(
            "RouteTablesInVpcs",
            &["ec2:CreateRouteTable"],
            json!([route_table, vpc]),
            None,
        ),
        statement(
            "Routes",
            &[
                "ec2:CreateRoute",
                "ec2:DeleteRouteTable",
                "ec2:ReplaceRoute",
            ],
            json!(route_table),
            None,
        ),
        statement(
            "RouteTableAssociations",
            &[
                "ec2:AssociateRouteTable",
                "ec2:DisassociateRouteTable",
                "ec2:ReplaceRouteTableAssociation",
            ],
            json!([route_table, subnet]),
            None,
        ),
        statement(
            "Gateways",
            &["ec2:CreateInternetGateway", "ec2:DeleteInternetGateway"],
            json!(gateway),
            None,
        ),
        statement(
            "GatewayAttachments",
            &["ec2:AttachInternetGateway", "ec2:DetachInternetGateway"],
            json!([gateway, vpc]),
            None,
        ),
        statement(
            "SecurityGroupsInVpcs",
            &["ec2:CreateSecurityGroup"],
            json!([group, vpc]),
            None,
        ),
        statement(
            "SecurityGroupRules",
            &[
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:DeleteSecurityGroup",
                "ec2:RevokeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupIngress",
            ],
            json!(group),
            None,
        ),
        statement(
            "NetworkTags",
            &["ec2:CreateTags", "ec2:DeleteTags"],
            json!([vpc, subnet, route_table, gateway, group]),
            None,
        ),
    ]
}

/// ECS clusters, services and task definitions.
fn service_statements(arn: &impl Fn(&str, &str) -> String) -> Vec<Value> {
    let cluster = arn("ecs", "cluster/*");
    let service = arn("ecs", "service/*/*");
    let task_definition = arn("ecs", "task-definition/*:*");
    vec![
        statement(
            "Clusters",
            &[
                "ecs:CreateCluster",
                "ecs:DeleteCluster",
                "ecs:DescribeClusters",
                "ecs:PutClusterCapacityProviders",
                "ecs:UpdateCluster",
            ],
            json!(cluster),
            None,
        ),
        statement(
            "Services",
            &[
                "ecs:CreateService",
                "ecs:DeleteService",
                "ecs:DescribeServices",
                "ecs:UpdateService",
            ],
            json!(service),
            None,
        ),
        statement(
            "TaskDefinitions",
            &["ecs:DeleteTaskDefinitions", "ecs:RegisterTaskDefinition"],
            json!(task_definition),
            None,
        ),
        statement(
            "ServiceTags",
            &["ecs:TagResource", "ecs:UntagResource"],
            json!([cluster, service, task_definition]),
            None,
        ),
    ]
}

fn statement(sid: &str, actions: &[&str], resource: Value, condition: Option<Value>) -> Value {
    let mut statement = json!({
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions,
        "Resource": resource,
    });
    if let Some(condition) = condition {
        statement["Condition"] = condition;
    }
    statement
}

/// Every action the policy allows.
pub fn allowed_actions(policy: &Value) -> Vec<String> {
    let mut actions: Vec<String> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    actions.sort();
    actions.dedup();
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(boundary: Option<&str>) -> Scope {
        Scope {
            partition: "aws".into(),
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            role_path: "/delivery/".into(),
            permissions_boundary_arn: boundary.map(Into::into),
            assumable_roles: vec!["arn:aws:iam::*:role/delivery-*".into()],
        }
    }

    #[test]
    fn roles_are_created_only_with_the_boundary_and_passed_only_to_their_services() {
        let policy = operator_policy(&scope(Some(
            "arn:aws:iam::111111111111:policy/tenant-boundary",
        )));
        let statements = policy["Statement"].as_array().expect("statements");
        let create = statements
            .iter()
            .find(|s| s["Sid"] == "CreateRolesWithBoundary")
            .expect("create");
        assert_eq!(
            create["Condition"]["ArnEquals"]["iam:PermissionsBoundary"],
            "arn:aws:iam::111111111111:policy/tenant-boundary"
        );
        assert_eq!(
            create["Resource"],
            "arn:aws:iam::111111111111:role/delivery/*"
        );
        let pass = statements
            .iter()
            .find(|s| s["Action"] == json!(["iam:PassRole"]))
            .expect("pass role");
        assert!(pass["Condition"]["StringEquals"]["iam:PassedToService"].is_array());
        assert!(statements.iter().any(|s| s["Effect"] == "Deny"));
        // No action is a wildcard, and every role action is on the path only.
        for action in allowed_actions(&policy) {
            assert!(!action.contains('*'), "{action}");
        }
    }

    #[test]
    fn without_a_boundary_nothing_is_denied() {
        let policy = operator_policy(&scope(None));
        let statements = policy["Statement"].as_array().expect("statements");
        assert!(statements.iter().all(|s| s["Effect"] == "Allow"));
    }
}
