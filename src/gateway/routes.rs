//! The gateway's routes: SpiceDB's REST paths, read by the build script from
//! the `google.api.http` options of `proto/` (so the table cannot drift from
//! the protos), each with the RPC's descriptor (message types, streaming).

use std::sync::OnceLock;

use hyper::Method;
use prost_reflect::MethodDescriptor;

/// `(verb, path, "/package.Service/Method")` for every annotated RPC.
const HTTP_RULES: &[(&str, &str, &str)] = include!(concat!(env!("OUT_DIR"), "/http_rules.rs"));

/// The path of grpc-gateway's health endpoint (GET only).
pub const HEALTHZ: &str = "/healthz";

/// One REST path and the RPC behind it.
#[derive(Debug)]
pub struct Route {
    pub verb: Method,
    pub path: &'static str,
    /// The gRPC path, `/authzed.api.v1.PermissionsService/CheckPermission`.
    pub rpc: &'static str,
    pub method: MethodDescriptor,
}

/// What a request's verb and path select.
#[derive(Debug)]
pub enum Lookup {
    Rpc(&'static Route),
    Healthz,
    /// The path exists for another verb (grpc-gateway: 501, "Method Not
    /// Allowed").
    WrongVerb,
    NotFound,
}

/// Every route, built once.
pub fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let pool = super::json::pool();
        HTTP_RULES
            .iter()
            .map(|&(verb, path, rpc)| {
                let (service, method) = rpc[1..]
                    .rsplit_once('/')
                    .expect("build.rs writes /Service/Method");
                let method = pool
                    .get_service_by_name(service)
                    .and_then(|s| s.methods().find(|m| m.name() == method))
                    .expect("build.rs reads the rules from the same descriptors");
                Route {
                    verb: verb.parse().expect("build.rs writes an HTTP verb"),
                    path,
                    rpc,
                    method,
                }
            })
            .collect()
    })
}

/// The route for `verb` and `path`, as grpc-gateway's mux chooses it.
pub fn find(verb: &Method, path: &str) -> Lookup {
    if path == HEALTHZ {
        return if verb == Method::GET {
            Lookup::Healthz
        } else {
            Lookup::WrongVerb
        };
    }
    let mut same_path = routes().iter().filter(|r| r.path == path).peekable();
    if same_path.peek().is_none() {
        return Lookup::NotFound;
    }
    same_path
        .find(|r| r.verb == verb)
        .map_or(Lookup::WrongVerb, Lookup::Rpc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_rpc_has_spicedbs_post_path() {
        assert_eq!(routes().len(), 27);
        for (path, rpc) in [
            (
                "/v1/permissions/check",
                "/authzed.api.v1.PermissionsService/CheckPermission",
            ),
            (
                "/v1/relationships/write",
                "/authzed.api.v1.PermissionsService/WriteRelationships",
            ),
            (
                "/v1/permissions/resources",
                "/authzed.api.v1.PermissionsService/LookupResources",
            ),
            (
                "/v1/schema/permissions/computable",
                "/authzed.api.v1.SchemaService/ComputablePermissions",
            ),
            ("/v1/watch", "/authzed.api.v1.WatchService/Watch"),
            (
                "/v1/experimental/countrelationships",
                "/authzed.api.v1.ExperimentalService/ExperimentalCountRelationships",
            ),
        ] {
            let Lookup::Rpc(route) = find(&Method::POST, path) else {
                panic!("{path} not routed");
            };
            assert_eq!(route.rpc, rpc);
        }
        assert!(matches!(
            find(&Method::GET, "/v1/permissions/check"),
            Lookup::WrongVerb
        ));
        assert!(matches!(find(&Method::GET, "/healthz"), Lookup::Healthz));
        assert!(matches!(find(&Method::POST, "/healthz"), Lookup::WrongVerb));
        assert!(matches!(find(&Method::POST, "/v1/nope"), Lookup::NotFound));
        assert!(matches!(find(&Method::GET, "/"), Lookup::NotFound));
    }
}
