//! Compiles `proto/` into Rust without a system `protoc`: `protox` parses the
//! files into a FileDescriptorSet, `tonic-prost-build` generates messages,
//! server traits and clients from it, and the encoded set is written beside
//! the generated code for gRPC reflection (`api::proto::FILE_DESCRIPTOR_SET`).
//! The peer protocol (`proto/dispatch/v1`) is compiled apart: it is never
//! registered for reflection, since it is not served on the public port.

use std::path::PathBuf;

use prost::Message as _;

/// The files that define the public API; their imports (google/api,
/// google/rpc, google/protobuf) come in through `include_imports`.
const PUBLIC_PROTOS: &[&str] = &[
    "authzed/api/v1/core.proto",
    "authzed/api/v1/debug.proto",
    "authzed/api/v1/error_reason.proto",
    "authzed/api/v1/experimental_service.proto",
    "authzed/api/v1/permission_service.proto",
    "authzed/api/v1/schema_service.proto",
    "authzed/api/v1/watch_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let fds = protox::Compiler::new(["proto"])?
        // Source info carries the proto comments into rustdoc.
        .include_source_info(true)
        // Reflection clients need every file a service refers to, down to
        // google/protobuf/struct.proto, or they cannot resolve the types.
        .include_imports(true)
        .open_files(PUBLIC_PROTOS)?
        .file_descriptor_set();

    // Reflection does not need comments; dropping them keeps the embedded
    // set (and the binary) small.
    let mut for_reflection = fds.clone();
    for file in &mut for_reflection.file {
        file.source_code_info = None;
    }
    std::fs::write(
        out_dir.join("authzed_descriptor.bin"),
        for_reflection.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // RPCs a handler does not implement answer UNIMPLEMENTED, as in Go's
        // `Unimplemented*Server` embedding SpiceDB uses.
        .generate_default_stubs(true)
        // CheckBulkPermissionsPair.error is a google.rpc.Status. tonic-types
        // already has that message (and ErrorInfo, and the helpers that put
        // them in a tonic::Status), so the pair's error and the status of a
        // failed call are built by the same code in api::status.
        .extern_path(".google.rpc.Status", "::tonic_types::Status")
        .compile_fds(fds)?;
    compile_peer_protocol()
}

/// `trellis.dispatch.v1`: messages, the server trait and the client.
fn compile_peer_protocol() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::Compiler::new(["proto"])?
        .include_source_info(true)
        .open_files([PEER_PROTO])?
        .file_descriptor_set();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

/// The dispatch cluster's own protocol.
const PEER_PROTO: &str = "dispatch/v1/dispatch.proto";
