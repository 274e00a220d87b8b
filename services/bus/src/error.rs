//! Errors on the bus: every engine refusal keeps its stable code as the
//! D-Bus error name `org.styxy.Error.<Code>` (e.g.
//! `org.styxy.Error.RangeExhausted`), so clients can tell them apart the way
//! HTTP clients read the `error` field.

use styxy_proto::api::ErrorCode;
use styxy_proto::error::ApiError;
use zbus::DBusError;

#[derive(Debug, DBusError)]
#[zbus(prefix = "org.styxy.Error")]
pub enum BusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    InvalidJson(String),
    InvalidField(String),
    InvalidPort(String),
    UnknownServiceType(String),
    RangeExhausted(String),
    Conflict(String),
    QuotaExceeded(String),
    NotFound(String),
    Forbidden(String),
    Unauthorized(String),
    PayloadTooLarge(String),
    MethodNotAllowed(String),
    Timeout(String),
    Unavailable(String),
    Internal(String),
}

impl BusError {
    pub fn new(code: ErrorCode, message: String) -> BusError {
        match code {
            ErrorCode::InvalidJson => BusError::InvalidJson(message),
            ErrorCode::InvalidField => BusError::InvalidField(message),
            ErrorCode::InvalidPort => BusError::InvalidPort(message),
            ErrorCode::UnknownServiceType => BusError::UnknownServiceType(message),
            ErrorCode::RangeExhausted => BusError::RangeExhausted(message),
            ErrorCode::Conflict => BusError::Conflict(message),
            ErrorCode::QuotaExceeded => BusError::QuotaExceeded(message),
            ErrorCode::NotFound => BusError::NotFound(message),
            ErrorCode::Forbidden => BusError::Forbidden(message),
            ErrorCode::Unauthorized => BusError::Unauthorized(message),
            ErrorCode::PayloadTooLarge => BusError::PayloadTooLarge(message),
            ErrorCode::MethodNotAllowed => BusError::MethodNotAllowed(message),
            ErrorCode::Timeout => BusError::Timeout(message),
            ErrorCode::Unavailable => BusError::Unavailable(message),
            ErrorCode::Internal => BusError::Internal(message),
            // The HTTP layer's own refusals; the engine never gives them.
            ErrorCode::BadRequest | ErrorCode::HeaderTooLarge => BusError::InvalidField(message),
        }
    }

    /// The engine's code, for a refusal (not for a transport failure).
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            BusError::ZBus(_) => return None,
            BusError::InvalidJson(_) => ErrorCode::InvalidJson,
            BusError::InvalidField(_) => ErrorCode::InvalidField,
            BusError::InvalidPort(_) => ErrorCode::InvalidPort,
            BusError::UnknownServiceType(_) => ErrorCode::UnknownServiceType,
            BusError::RangeExhausted(_) => ErrorCode::RangeExhausted,
            BusError::Conflict(_) => ErrorCode::Conflict,
            BusError::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            BusError::NotFound(_) => ErrorCode::NotFound,
            BusError::Forbidden(_) => ErrorCode::Forbidden,
            BusError::Unauthorized(_) => ErrorCode::Unauthorized,
            BusError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            BusError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            BusError::Timeout(_) => ErrorCode::Timeout,
            BusError::Unavailable(_) => ErrorCode::Unavailable,
            BusError::Internal(_) => ErrorCode::Internal,
        })
    }
}

impl From<ApiError> for BusError {
    fn from(e: ApiError) -> BusError {
        BusError::new(e.code, e.message)
    }
}
