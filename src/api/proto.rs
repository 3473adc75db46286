//! The generated `authzed.api.v1` types, server traits and clients (built by
//! `build.rs` from `proto/` with protox and tonic-prost-build), and the
//! encoded descriptor set a server hands to gRPC reflection. Nothing outside
//! `api/` (and later `dispatch/{remote,server}` for their own protocol)
//! should name these types.

/// Packages as nested modules, so generated cross-package paths resolve.
pub mod authzed {
    pub mod api {
        pub mod v1 {
            // Generated code: its style is tonic-prost-build's, not ours.
            #![allow(clippy::all, clippy::pedantic, missing_docs)]
            include!(concat!(env!("OUT_DIR"), "/authzed.api.v1.rs"));
        }
    }
}

pub use authzed::api::v1;

/// `google.rpc.Status` (CheckBulkPermissionsPair.error): mapped by
/// `extern_path` to tonic-types' message rather than generated again, so one
/// type serves both per-item errors and failed calls.
pub use tonic_types::Status as RpcStatus;

/// Every file of the public API and its imports (google/api, google/rpc,
/// google/protobuf), encoded as a `google.protobuf.FileDescriptorSet`
/// without source info; for `tonic_reflection`'s
/// `register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/authzed_descriptor.bin"));

/// The same descriptors decoded once, for protobuf's JSON mapping of any
/// API message (the HTTP gateway, the client's `--json`).
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("build.rs embeds a valid descriptor set with every import")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn descriptor_set_holds_the_services_and_their_imports() {
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("decodes");
        let names: Vec<&str> = fds.file.iter().map(|f| f.name()).collect();
        for wanted in [
            "authzed/api/v1/permission_service.proto",
            "authzed/api/v1/schema_service.proto",
            "authzed/api/v1/watch_service.proto",
            "authzed/api/v1/experimental_service.proto",
            "google/rpc/status.proto",
            "google/protobuf/struct.proto",
        ] {
            assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
        }
        assert!(fds.file.iter().all(|f| f.source_code_info.is_none()));
    }

    #[test]
    fn reflection_service_accepts_the_descriptor_set() {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .with_service_name("authzed.api.v1.PermissionsService")
            .with_service_name("authzed.api.v1.SchemaService")
            .with_service_name("authzed.api.v1.WatchService")
            .with_service_name("authzed.api.v1.ExperimentalService")
            .build_v1()
            .expect("reflection builds from the descriptor set");
    }

    #[test]
    fn error_reason_names_are_spicedbs() {
        assert_eq!(
            v1::ErrorReason::TooManyUpdatesInRequest.as_str_name(),
            "ERROR_REASON_TOO_MANY_UPDATES_IN_REQUEST"
        );
        assert_eq!(v1::ErrorReason::DatastoreNotMigrated as i32, 30);
    }
}
