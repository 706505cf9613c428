//! AWS error classification: what the engine should do about a failed call, as an
//! [`engine::Failure`](crate::engine::Failure) (which carries no SDK types).

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::engine::{Class, Failure};

const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];

/// "It exists already" on a create: after a reply lost on the way back (the SDK's retry of a
/// request AWS had applied, or a crash after it), the resource is most likely the pipeline's
/// own. Looked at again soon: the next reconcile reads it and adopts it (or refuses it, when
/// its tags say it belongs to someone else). `BucketAlreadyExists` (another account's bucket)
/// is not here: that one is terminal.
const ALREADY_EXISTS: &[&str] = &[
    "EntityAlreadyExists",
    "ResourceAlreadyExistsException",
    "AlreadyExistsException",
    "RepositoryAlreadyExistsException",
    "RouteAlreadyExists",
    "InvalidSubnet.Conflict",
    "InvalidGroup.Duplicate",
];

/// How soon a create answered "already exists" is looked at again.
const ALREADY_EXISTS_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "PriorRequestNotComplete",
];

const TRANSIENT: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestTimeout",
    "RequestTimeoutException",
    "OperationAborted",
    "ConcurrentModificationException",
];

/// Error code of a service error, if the failure was one.
pub fn code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Classifies a failed SDK call. `operation` names what was attempted, for the message.
pub fn classify<E>(operation: &str, err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::retryable(
                "AwsUnreachable",
                format!("{operation} could not reach AWS: {}", error_chain(&err)),
            )
        }
        SdkError::ConstructionFailure(_) => Failure::terminal(
            "InvalidRequest",
            format!("{operation} could not be sent: {}", error_chain(&err)),
        ),
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("Unknown").to_string();
            let detail = service.err().message().unwrap_or("no message").to_string();
            if names_unseen_principal(&detail) {
                Failure::in_progress(
                    WAITING_FOR_IAM,
                    format!(
                        "{operation}: AWS does not see a principal of the policy yet ({code}: {detail}); roles take seconds to become usable after they are created"
                    ),
                    IAM_PROPAGATION_RETRY,
                )
            } else if ALREADY_EXISTS.contains(&code.as_str()) {
                Failure::in_progress(
                    "AlreadyExists",
                    format!(
                        "{operation}: it exists already ({code}: {detail}); an earlier attempt whose reply was lost may have made it, so it is read again"
                    ),
                    ALREADY_EXISTS_RETRY,
                )
            } else if ACCESS_DENIED.contains(&code.as_str()) {
                Failure::terminal(
                    "AccessDenied",
                    format!(
                        "AWS denied {operation} ({code}: {detail}); grant the operator's IAM identity this permission"
                    ),
                )
            } else if THROTTLED.contains(&code.as_str()) || status == 429 {
                Failure::retryable("Throttled", format!("{operation} was throttled ({code})"))
            } else if TRANSIENT.contains(&code.as_str()) || status >= 500 {
                Failure::retryable(
                    "AwsServerError",
                    format!("{operation} failed on the AWS side ({code}, HTTP {status}): {detail}"),
                )
            } else {
                Failure::terminal(
                    "AwsRejectedRequest",
                    format!("AWS rejected {operation} ({code}): {detail}"),
                )
            }
        }
        _ => Failure::retryable(
            "AwsCallFailed",
            format!("{operation} failed: {}", error_chain(&err)),
        ),
    }
}

/// How soon to look again while IAM propagates a new role.
pub const IAM_PROPAGATION_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// The reason of a step waiting for IAM's eventual consistency. The controller turns it into
/// an error when it lasts longer than propagation can explain (a principal that will never
/// exist must not be retried as "in progress" forever).
pub const WAITING_FOR_IAM: &str = "WaitingForIamPropagation";

/// A role this reconcile just created that IAM does not show yet (`NoSuchEntity` on the next
/// call, IAM being eventually consistent): in progress, not a bad request.
pub fn role_not_visible_yet(failure: Failure, role: &str) -> Failure {
    match failure.class {
        Class::InProgress(after) => Failure::in_progress(
            WAITING_FOR_IAM,
            format!(
                "IAM does not show role {role} yet ({}); a role takes seconds to become visible after it is created",
                failure.message
            ),
            after,
        ),
        _ => failure,
    }
}

/// A policy names a principal AWS cannot resolve. Every principal the operator writes is a role
/// it created earlier in the same reconcile graph, so this is IAM's eventual consistency (a new
/// role is not visible to other services for a few seconds), not a bad request. AWS words it
/// per service: IAM and S3 "Invalid principal in policy", KMS "...one or more invalid
/// principals", ECR "...'Principal not found'", SNS "Policy Error: PrincipalNotFound"; and a
/// service that cannot yet assume a role it was just given, CodeBuild "CodeBuild is not
/// authorized to perform: sts:AssumeRole on <role>", CodePipeline "CodePipeline is not
/// authorized to perform AssumeRole on role <role>".
fn names_unseen_principal(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "invalid principal",
        "principal not found",
        "principalnotfound",
        "codebuild is not authorized to perform: sts:assumerole",
        "codepipeline is not authorized to perform assumerole",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

/// `.aws("kms:CreateKey")` on an SDK result: classifies the error with the operation named.
pub trait AwsResultExt<T> {
    fn aws(self, operation: &str) -> Result<T, Failure>;
    /// As [`aws`](Self::aws), with the class of chosen error codes overridden: e.g. IAM's
    /// eventual consistency (`InvalidParameterValueException` right after a role is created)
    /// is in progress, not a bad request.
    fn aws_with(self, operation: &str, overrides: &[(&str, Class)]) -> Result<T, Failure>;
    /// As [`aws`](Self::aws), with the error codes given as `None`: "not found" on a read or
    /// a delete, "already exists" on a create an interrupted attempt already made.
    fn aws_tolerating(self, operation: &str, codes: &[&str]) -> Result<Option<T>, Failure>;
}

impl<T, E> AwsResultExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn aws(self, operation: &str) -> Result<T, Failure> {
        self.map_err(|e| classify(operation, e))
    }

    fn aws_with(self, operation: &str, overrides: &[(&str, Class)]) -> Result<T, Failure> {
        self.map_err(|e| {
            let override_class = code(&e).and_then(|c| {
                overrides
                    .iter()
                    .find(|(o, _)| *o == c)
                    .map(|(_, class)| *class)
            });
            let mut failure = classify(operation, e);
            if let Some(class) = override_class {
                failure.class = class;
            }
            failure
        })
    }

    fn aws_tolerating(self, operation: &str, codes: &[&str]) -> Result<Option<T>, Failure> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if code(&e).is_some_and(|c| codes.contains(&c)) => Ok(None),
            Err(e) => Err(classify(operation, e)),
        }
    }
}

/// Repeats `call` (5 attempts in about 4 s) while AWS answers with one of `unseen`: a resource
/// just created that an eventually consistent service does not show yet. The last answer
/// otherwise.
pub async fn while_unseen<T, E, F, Fut>(
    unseen: &[&str],
    mut call: F,
) -> Result<T, SdkError<E, HttpResponse>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        let result = call().await;
        match &result {
            Err(e)
                if code(e).is_some_and(|c| unseen.contains(&c))
                    && wait < std::time::Duration::from_secs(4) =>
            {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            _ => return result,
        }
    }
}

/// The result of a read, with "not found" (the codes given) as `None`.
pub fn found<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    operation: &str,
    not_found: &[&str],
) -> Result<Option<T>, Failure>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    result.aws_tolerating(operation, not_found)
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::operation::describe_key::DescribeKeyError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(code: &str, status: u16) -> SdkError<DescribeKeyError, HttpResponse> {
        service_error_with(code, status, "details")
    }

    fn service_error_with(
        code: &str,
        status: u16,
        message: &str,
    ) -> SdkError<DescribeKeyError, HttpResponse> {
        let err =
            DescribeKeyError::generic(ErrorMetadata::builder().code(code).message(message).build());
        let status = StatusCode::try_from(status)
            .unwrap_or_else(|_| StatusCode::try_from(500).expect("500 is valid"));
        SdkError::service_error(err, HttpResponse::new(status, SdkBody::empty()))
    }

    #[test]
    fn access_denied_is_terminal_with_an_actionable_message() {
        let e = classify("kms:CreateKey", service_error("AccessDeniedException", 400));
        assert_eq!(e.reason, "AccessDenied");
        assert_eq!(e.class, Class::Terminal);
        assert!(
            e.message.contains("kms:CreateKey") && e.message.contains("grant"),
            "{}",
            e.message
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        for (code, status) in [
            ("ThrottlingException", 400),
            ("SlowDown", 503),
            ("Whatever", 429),
        ] {
            let e = classify("op", service_error(code, status));
            assert_eq!(e.reason, "Throttled", "{code}");
            assert_eq!(e.class, Class::Retryable);
        }
        for (code, status) in [
            ("InternalError", 500),
            ("KMSInternalException", 500),
            ("Unknown", 502),
        ] {
            let e = classify("op", service_error(code, status));
            assert_eq!(e.reason, "AwsServerError", "{code}");
        }
    }

    #[test]
    fn already_exists_on_a_create_is_read_again_soon_but_another_accounts_bucket_is_terminal() {
        for code in [
            "EntityAlreadyExists",
            "RouteAlreadyExists",
            "ResourceAlreadyExistsException",
        ] {
            let e = classify("x:Create", service_error(code, 400));
            assert_eq!(e.class, Class::InProgress(ALREADY_EXISTS_RETRY), "{code}");
            assert_eq!(e.reason, "AlreadyExists");
        }
        let taken = classify("s3:CreateBucket", service_error("BucketAlreadyExists", 409));
        assert_eq!(taken.class, Class::Terminal);
    }

    #[test]
    fn other_client_errors_are_terminal_and_name_the_code() {
        let e = classify("s3:PutBucketPolicy", service_error("MalformedPolicy", 400));
        assert_eq!(e.reason, "AwsRejectedRequest");
        assert!(e.message.contains("MalformedPolicy") && e.message.contains("details"));
    }

    #[test]
    fn a_role_iam_does_not_show_yet_is_in_progress_and_other_failures_stay() {
        let unseen = Failure {
            class: Class::InProgress(IAM_PROPAGATION_RETRY),
            ..Failure::terminal("AwsRejectedRequest", "NoSuchEntity: role x")
        };
        let e = role_not_visible_yet(unseen, "x");
        assert_eq!(e.reason, WAITING_FOR_IAM);
        assert!(
            e.message.contains("IAM does not show role x yet"),
            "{}",
            e.message
        );
        let denied = Failure::terminal("AccessDenied", "no");
        assert_eq!(role_not_visible_yet(denied.clone(), "x"), denied);
    }

    #[test]
    fn a_principal_aws_does_not_see_yet_is_iam_propagation_in_progress() {
        for (code, message) in [
            (
                "MalformedPolicyDocument",
                "Invalid principal in policy: \"AWS\":\"arn:aws:iam::1:role/x\"",
            ),
            (
                "MalformedPolicyDocumentException",
                "Policy contains a statement with one or more invalid principals.",
            ),
            ("MalformedPolicy", "Invalid principal in policy"),
            (
                "InvalidParameterException",
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Principal not found'",
            ),
            (
                "InvalidParameter",
                "Invalid parameter: Policy Error: PrincipalNotFound",
            ),
            (
                "InvalidInputException",
                "CodeBuild is not authorized to perform: sts:AssumeRole on arn:aws:iam::1:role/x",
            ),
            (
                "InvalidStructureException",
                "CodePipeline is not authorized to perform AssumeRole on role arn:aws:iam::1:role/x",
            ),
        ] {
            let e = classify("op", service_error_with(code, 400, message));
            assert_eq!(e.reason, "WaitingForIamPropagation", "{code}");
            assert!(matches!(e.class, Class::InProgress(_)), "{code}");
        }
        // STS refusing the operator itself is not propagation.
        let e = classify(
            "sts:AssumeRole",
            service_error_with(
                "AccessDenied",
                403,
                "User: arn:aws:iam::1:user/u is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::2:role/r",
            ),
        );
        assert_eq!(e.reason, "AccessDenied");
        // Any other malformed policy is a real rejection.
        let e = classify(
            "iam:PutRolePolicy",
            service_error_with("MalformedPolicyDocument", 400, "Syntax errors in policy."),
        );
        assert_eq!(e.reason, "AwsRejectedRequest");
    }

    #[test]
    fn timeouts_are_retryable() {
        let e = classify::<DescribeKeyError>("op", SdkError::timeout_error("slow"));
        assert_eq!(e.reason, "AwsUnreachable");
        assert_eq!(e.class, Class::Retryable);
    }
}
