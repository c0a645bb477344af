//! The operator's error type: every variant says what failed and on which object.

/// Errors of the operator's reconcilers and commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, naming the object.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// An object lacks something the operator needs (a namespace, a spec field).
    #[error("{0}")]
    Invalid(String),
    /// A Secret the pool needs is missing or incomplete.
    #[error("{0}")]
    Secret(String),
    /// `conclave-operator check` found the release unhealthy: what it saw and each problem.
    #[error("{0}")]
    Check(String),
    /// An API call did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// Serialising an object failed.
    #[error("serialising {what}: {source}")]
    Serialize {
        /// The object.
        what: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// A short label of the error's kind, for the errors-by-kind metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.code == 409 => "conflict",
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.code == 404 => "not_found",
            Error::Kube { .. } => "api",
            Error::Invalid(_) => "invalid",
            Error::Secret(_) => "secret",
            Error::Timeout(_) => "timeout",
            Error::Check(_) => "check",
            Error::Serialize { .. } => "serialize",
        }
    }

    /// True when the API server answered and refused the request (a 4xx: conflict, invalid,
    /// not found, throttled), so a write did not land; false when the outcome is unknown
    /// (the connection failed, the call timed out, or a 5xx, after which the write may have
    /// been applied).
    pub fn refused(&self) -> bool {
        matches!(
            self,
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if (400..500).contains(&s.code)
        ) || matches!(self, Error::Invalid(_) | Error::Serialize { .. })
    }
}

/// Adds context naming the action to a kube result.
pub trait KubeContext<T> {
    /// Wraps the error with `action`.
    fn action(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> KubeContext<T> for std::result::Result<T, kube::Error> {
    fn action(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube {
            action: action(),
            source,
        })
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// True when `e` is the API's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The outcome of a delete, where an object already gone counts as deleted.
pub fn deleted<T>(
    result: std::result::Result<T, kube::Error>,
) -> std::result::Result<(), kube::Error> {
    match result {
        Err(e) if !is_not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

/// True when `e` is the API's 409 AlreadyExists or Conflict.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube {
            action: "applying status".into(),
            source: kube::Error::Api(
                kube::core::Status::failure("refused", "Reason")
                    .with_code(code)
                    .boxed(),
            ),
        }
    }

    #[test]
    fn a_write_answered_with_a_4xx_did_not_land_one_without_an_answer_may_have() {
        for code in [400, 404, 409, 422, 429] {
            assert!(api(code).refused(), "{code}");
        }
        for code in [500, 503, 504] {
            assert!(!api(code).refused(), "{code}");
        }
        assert!(!Error::Timeout("no answer in 10 s".into()).refused());
        assert!(Error::Invalid("no namespace".into()).refused());
    }
}
