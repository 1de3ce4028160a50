//! Shared handling of AWS SDK errors for the App Mesh, ECS and Cloud Map adapters.

use std::fmt::Debug;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

#[cfg(feature = "ecs")]
use crate::fleet::FleetError;
#[cfg(any(
    feature = "appmesh",
    feature = "cloudmap",
    feature = "cloudwatch",
    feature = "elbv2"
))]
use crate::traffic::TrafficError;

/// What kind of failure an AWS error is, whatever the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NotFound,
    Conflict,
    Throttled,
    BadRequest,
    Forbidden,
    Transport,
    Other,
}

/// Classifies an error code, accepting the emulator's spellings beside AWS's
/// (`RouteNotFound` where AWS answers `NotFoundException`).
pub(crate) fn classify_code(code: &str) -> Option<Kind> {
    let kind = match code {
        "ConflictException"
        | "DuplicateRequest"
        | "ResourceInUse"
        | "ResourceInUseException"
        | "PriorityInUse" => Kind::Conflict,
        "TooManyRequestsException"
        | "LimitExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RequestLimitExceededException" => Kind::Throttled,
        "BadRequestException"
        | "InvalidParameterException"
        | "InvalidInput"
        | "ValidationException" => Kind::BadRequest,
        "ForbiddenException"
        | "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException" => Kind::Forbidden,
        "InternalServerErrorException"
        | "ServiceUnavailableException"
        | "ServiceUnavailable"
        | "ServerException"
        | "InternalFailure" => Kind::Transport,
        c if c.ends_with("NotFound") || c.ends_with("NotFoundException") => Kind::NotFound,
        _ => return None,
    };
    Some(kind)
}

fn classify_status(status: u16) -> Kind {
    match status {
        404 => Kind::NotFound,
        409 => Kind::Conflict,
        429 => Kind::Throttled,
        401 | 403 => Kind::Forbidden,
        400..=499 => Kind::BadRequest,
        500..=599 => Kind::Transport,
        _ => Kind::Other,
    }
}

/// The kind of an SDK error: from the service's error code, else the HTTP status, else
/// the failure class (timeouts and dispatch failures are transport errors).
pub(crate) fn classify<E, R>(err: &SdkError<E, R>) -> Kind
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    match err {
        SdkError::ServiceError(service) => service
            .err()
            .code()
            .and_then(classify_code)
            .unwrap_or_else(|| classify_status(service.raw().status_code())),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Kind::Transport
        }
        SdkError::ConstructionFailure(_) => Kind::BadRequest,
        _ => Kind::Other,
    }
}

/// Access to the HTTP status of a raw response, so `classify` works on the SDK's
/// response type without naming it.
pub(crate) trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// One line describing the error: the service's code and message when there is one.
pub(crate) fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: HttpStatus + Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!(
                "{}: {}",
                e.code().unwrap_or("unknown error code"),
                e.message().unwrap_or("no message")
            )
        }
        SdkError::TimeoutError(_) => "timed out".into(),
        SdkError::DispatchFailure(e) => {
            // The cause chain, in words ("tcp connect error: Connection refused"), not
            // the SDK's debug structures.
            let mut why = String::new();
            let mut source = std::error::Error::source(err);
            while let Some(s) = source {
                why = s.to_string();
                source = s.source();
            }
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_io() {
                "connection failed"
            } else {
                "not sent"
            };
            if why.is_empty() {
                format!("could not send the request ({kind})")
            } else {
                format!(
                    "could not send the request ({kind}: {why}); check the endpoint and the network"
                )
            }
        }
        SdkError::ResponseError(e) => {
            format!("unreadable response (HTTP {})", e.raw().status_code())
        }
        other => DisplayErrorContext(other).to_string(),
    }
}

/// Maps an SDK error to a [`TrafficError`], keeping the AWS error as the source.
#[cfg(any(
    feature = "appmesh",
    feature = "cloudmap",
    feature = "cloudwatch",
    feature = "elbv2"
))]
/// `what` names the call and resource, e.g. `DescribeRoute gophermesh/distributor-route`.
pub(crate) fn traffic_error<E, R>(what: &str, err: SdkError<E, R>) -> TrafficError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: HttpStatus + Debug + Send + Sync + 'static,
{
    let kind = classify(&err);
    let message = format!("{what}: {}", describe(&err));
    let source = Some(Box::new(err) as crate::error::BoxError);
    match kind {
        Kind::NotFound => TrafficError::NotFound {
            what: message,
            source,
        },
        Kind::Conflict => TrafficError::Conflict { message, source },
        Kind::Throttled => TrafficError::Throttled { message, source },
        Kind::BadRequest => TrafficError::BadRequest { message, source },
        Kind::Forbidden => TrafficError::Forbidden { message, source },
        Kind::Transport => TrafficError::Transport { message, source },
        Kind::Other => TrafficError::Other { message, source },
    }
}

/// Maps an SDK error to a [`FleetError::Backend`], keeping the AWS error as the source.
#[cfg(feature = "ecs")]
pub(crate) fn fleet_error<E, R>(what: &str, err: SdkError<E, R>) -> FleetError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: HttpStatus + Debug + Send + Sync + 'static,
{
    FleetError::Backend {
        message: format!("{what}: {}", describe(&err)),
        source: Some(Box::new(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_and_aws_not_found_codes_agree() {
        for code in [
            "NotFoundException",
            "RouteNotFound",
            "MeshNotFound",
            "VirtualNodeNotFound",
            "ServiceNotFoundException",
            "ServiceNotFound",
        ] {
            assert_eq!(classify_code(code), Some(Kind::NotFound), "{code}");
        }
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            classify_code("TooManyRequestsException"),
            Some(Kind::Throttled)
        );
        assert_eq!(
            classify_code("LimitExceededException"),
            Some(Kind::Throttled)
        );
        assert_eq!(classify_code("ConflictException"), Some(Kind::Conflict));
        assert_eq!(classify_code("BadRequestException"), Some(Kind::BadRequest));
        assert_eq!(classify_code("ForbiddenException"), Some(Kind::Forbidden));
        assert_eq!(
            classify_code("ServiceUnavailableException"),
            Some(Kind::Transport)
        );
        assert_eq!(classify_code("SomethingNew"), None);
        assert_eq!(classify_status(503), Kind::Transport);
        assert_eq!(classify_status(418), Kind::BadRequest);
    }
}
