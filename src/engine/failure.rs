//! Why a step did not complete, classified by what to do next. No SDK types: the AWS side maps
//! its errors into this (see `aws::error`).

use std::time::Duration;

/// What the controller does about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Will not succeed until something changes (the spec, IAM permissions, a conflicting
    /// resource): reported in a condition and retried slowly.
    Terminal,
    /// Transient (throttling, 5xx, network): retried with jittered exponential backoff.
    Retryable,
    /// Not a failure: AWS is still working (a role not visible yet, a key being enabled). The
    /// condition says `Progressing`, `Synced` stays True, and the pipeline is looked at again
    /// after the given time.
    InProgress(Duration),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub class: Class,
    /// CamelCase, for the condition's `reason`.
    pub reason: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Failure {
    pub fn terminal(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Class::Terminal, reason, message)
    }

    pub fn retryable(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Class::Retryable, reason, message)
    }

    pub fn in_progress(
        reason: impl Into<String>,
        message: impl Into<String>,
        after: Duration,
    ) -> Self {
        Self::new(Class::InProgress(after), reason, message)
    }

    fn new(class: Class, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// True when this is an error (not AWS still working).
    pub fn is_error(&self) -> bool {
        !matches!(self.class, Class::InProgress(_))
    }

    /// The same failure with a prefix on its message, e.g. which step it came from.
    pub fn context(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}
