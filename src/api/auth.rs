//! Preshared-key authentication, as SpiceDB does it: `authorization: Bearer
//! KEY` on every call of the public services; a missing or malformed header
//! is UNAUTHENTICATED, a wrong key PERMISSION_DENIED. Keys are compared in
//! constant time; several keys may be valid at once (rotation).

use std::sync::Arc;

use tonic::{Request, Status};

/// A tonic interceptor that admits calls bearing one of the keys.
#[derive(Clone)]
pub struct PresharedKeys {
    keys: Arc<Vec<Vec<u8>>>,
}

impl PresharedKeys {
    /// `None` when no keys are configured: every call is admitted.
    pub fn new(keys: &[String]) -> Option<Self> {
        let keys: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().to_vec())
            .collect();
        (!keys.is_empty()).then(|| Self {
            keys: Arc::new(keys),
        })
    }

    pub fn check<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing preshared key"))?;
        let text = header.to_str().map_err(|_| {
            Status::unauthenticated("invalid preshared key: malformed authorization header")
        })?;
        let token = bearer_token(text).ok_or_else(|| {
            Status::unauthenticated("invalid preshared key: bad authorization scheme")
        })?;
        if token.is_empty() {
            return Err(Status::unauthenticated("missing preshared key"));
        }
        // Compare against every key, always, so timing says nothing about which matched.
        let matched = self.keys.iter().fold(false, |found, key| {
            found | constant_time_eq(key, token.as_bytes())
        });
        if matched {
            Ok(request)
        } else {
            Err(Status::permission_denied(
                "invalid preshared key: invalid token",
            ))
        }
    }
}

/// The token of a `Bearer TOKEN` header (scheme case-insensitive).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Equal lengths and bytes, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(header: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request
                .metadata_mut()
                .insert("authorization", h.parse().expect("ascii header"));
        }
        request
    }

    #[test]
    fn keys_admit_and_refuse_with_spicedb_codes() {
        let keys = PresharedKeys::new(&["old".into(), "new".into()]).expect("keys configured");
        assert!(keys.check(request(Some("Bearer new"))).is_ok());
        assert!(keys.check(request(Some("bearer old"))).is_ok());
        assert_eq!(
            keys.check(request(None)).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            keys.check(request(Some("Basic new"))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            keys.check(request(Some("Bearer "))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            keys.check(request(Some("Bearer nope"))).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(PresharedKeys::new(&[]).is_none());
        assert!(PresharedKeys::new(&[String::new()]).is_none());
    }
}
