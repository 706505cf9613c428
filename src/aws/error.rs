//! AWS error classification: what the engine should do about a failed call.

use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A failed AWS interaction, classified by what to do next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AwsError {
    /// Will not succeed until something changes (the spec, IAM permissions, a conflicting
    /// resource): reported in a condition and retried slowly.
    #[error("{message}")]
    Terminal { reason: String, message: String },
    /// Transient (throttling, 5xx, network): retried with jittered exponential backoff.
    #[error("{message}")]
    Retryable { reason: String, message: String },
    /// AWS is still working on something asynchronous: check again after `after`.
    #[error("{message}")]
    Requeue {
        reason: String,
        message: String,
        after: Duration,
    },
}

impl AwsError {
    pub fn terminal(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Terminal {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn requeue(reason: impl Into<String>, message: impl Into<String>, after: Duration) -> Self {
        Self::Requeue {
            reason: reason.into(),
            message: message.into(),
            after,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::Terminal { reason, .. }
            | Self::Retryable { reason, .. }
            | Self::Requeue { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Terminal { message, .. }
            | Self::Retryable { message, .. }
            | Self::Requeue { message, .. } => message,
        }
    }
}

const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];

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
pub fn classify<E>(operation: &str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            AwsError::Retryable {
                reason: "AwsUnreachable".into(),
                message: format!("{operation} could not reach AWS: {}", error_chain(&err)),
            }
        }
        SdkError::ConstructionFailure(_) => AwsError::terminal(
            "InvalidRequest",
            format!("{operation} could not be sent: {}", error_chain(&err)),
        ),
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("Unknown").to_string();
            let detail = service.err().message().unwrap_or("no message").to_string();
            if ACCESS_DENIED.contains(&code.as_str()) {
                AwsError::terminal(
                    "AccessDenied",
                    format!(
                        "AWS denied {operation} ({code}: {detail}); grant the operator's IAM identity this permission"
                    ),
                )
            } else if THROTTLED.contains(&code.as_str()) || status == 429 {
                AwsError::Retryable {
                    reason: "Throttled".into(),
                    message: format!("{operation} was throttled ({code})"),
                }
            } else if TRANSIENT.contains(&code.as_str()) || status >= 500 {
                AwsError::Retryable {
                    reason: "AwsServerError".into(),
                    message: format!(
                        "{operation} failed on the AWS side ({code}, HTTP {status}): {detail}"
                    ),
                }
            } else {
                AwsError::terminal(
                    "AwsRejectedRequest",
                    format!("AWS rejected {operation} ({code}): {detail}"),
                )
            }
        }
        _ => AwsError::Retryable {
            reason: "AwsCallFailed".into(),
            message: format!("{operation} failed: {}", error_chain(&err)),
        },
    }
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
        let err = DescribeKeyError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("details")
                .build(),
        );
        let status = StatusCode::try_from(status)
            .unwrap_or_else(|_| StatusCode::try_from(500).expect("500 is valid"));
        SdkError::service_error(err, HttpResponse::new(status, SdkBody::empty()))
    }

    #[test]
    fn access_denied_is_terminal_with_an_actionable_message() {
        let e = classify("kms:CreateKey", service_error("AccessDeniedException", 400));
        assert_eq!(e.reason(), "AccessDenied");
        assert!(matches!(e, AwsError::Terminal { .. }));
        assert!(
            e.message().contains("kms:CreateKey") && e.message().contains("grant"),
            "{}",
            e.message()
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
            assert_eq!(e.reason(), "Throttled", "{code}");
            assert!(matches!(e, AwsError::Retryable { .. }));
        }
        for (code, status) in [
            ("InternalError", 500),
            ("KMSInternalException", 500),
            ("Unknown", 502),
        ] {
            let e = classify("op", service_error(code, status));
            assert_eq!(e.reason(), "AwsServerError", "{code}");
        }
    }

    #[test]
    fn other_client_errors_are_terminal_and_name_the_code() {
        let e = classify("s3:PutBucketPolicy", service_error("MalformedPolicy", 400));
        assert_eq!(e.reason(), "AwsRejectedRequest");
        assert!(e.message().contains("MalformedPolicy") && e.message().contains("details"));
    }

    #[test]
    fn timeouts_are_retryable() {
        let e = classify::<DescribeKeyError>("op", SdkError::timeout_error("slow"));
        assert_eq!(e.reason(), "AwsUnreachable");
        assert!(matches!(e, AwsError::Retryable { .. }));
    }
}
