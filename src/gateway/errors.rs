//! How a failed call looks over HTTP, as grpc-gateway renders it: the gRPC
//! status as JSON `{"code", "message", "details"}` (the `google.rpc.Status`
//! in the canonical mapping, `ErrorInfo` details with their `@type`) under
//! the HTTP status grpc-gateway maps each gRPC code to. The gRPC codes
//! themselves come from `api::status`, the one place errors are mapped.

use hyper::StatusCode;
use prost::Message as _;
use tonic::{Code, Status};

/// The HTTP status grpc-gateway answers a gRPC code with
/// (`runtime.HTTPStatusFromCode`); FAILED_PRECONDITION is 400, not 412, on
/// purpose there too.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => {
            StatusCode::from_u16(499).expect("499 is a valid status code (client closed request)")
        }
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON body of a failed call: code, message and details.
pub fn status_json(status: &Status) -> serde_json::Value {
    serde_json::json!({
        "code": status.code() as i32,
        "message": status.message(),
        "details": details_json(status.details()),
    })
}

/// The `google.rpc.Status` details a handler attached (encoded in the
/// status' details bytes), as JSON `Any`s. `ErrorInfo` is the only detail
/// the API sends; anything else keeps its type and raw bytes.
fn details_json(encoded: &[u8]) -> Vec<serde_json::Value> {
    if encoded.is_empty() {
        return Vec::new();
    }
    let Ok(rpc_status) = crate::api::proto::RpcStatus::decode(encoded) else {
        return Vec::new();
    };
    rpc_status.details.iter().map(any_json).collect()
}

fn any_json(any: &prost_types::Any) -> serde_json::Value {
    if any.type_url == tonic_types::ErrorInfo::TYPE_URL
        && let Ok(info) = tonic_types::pb::ErrorInfo::decode(&any.value[..])
    {
        return serde_json::json!({
            "@type": any.type_url,
            "reason": info.reason,
            "domain": info.domain,
            "metadata": info.metadata,
        });
    }
    use base64::Engine as _;
    serde_json::json!({
        "@type": any.type_url,
        "value": base64::engine::general_purpose::STANDARD.encode(&any.value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceError;

    #[test]
    fn codes_map_to_grpc_gateways_http_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
        assert_eq!(
            http_status(Code::Unimplemented),
            StatusCode::NOT_IMPLEMENTED
        );
    }

    #[test]
    fn error_info_travels_as_a_typed_detail() {
        let status = crate::api::status::to_status(&ServiceError::UnknownDefinition {
            definition: "nope".into(),
        });
        let json = status_json(&status);
        assert_eq!(json["code"], Code::FailedPrecondition as i32);
        let detail = &json["details"][0];
        assert_eq!(detail["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
        assert_eq!(detail["reason"], "ERROR_REASON_UNKNOWN_DEFINITION");
        assert_eq!(detail["domain"], "authzed.com");
        let plain = status_json(&Status::not_found("Not Found"));
        assert_eq!(
            plain,
            serde_json::json!({"code": 5, "message": "Not Found", "details": []})
        );
    }
}
