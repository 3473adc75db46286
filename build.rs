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

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        // Source info carries the proto comments into rustdoc.
        .include_source_info(true)
        // Reflection clients need every file a service refers to, down to
        // google/protobuf/struct.proto, or they cannot resolve the types.
        .include_imports(true)
        .open_files(PUBLIC_PROTOS)?;
    let fds = compiler.file_descriptor_set();
    write_http_rules(&compiler.descriptor_pool(), &out_dir)?;

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

/// Writes `http_rules.rs`: the `google.api.http` option of every public RPC
/// as `(verb, path, "/package.Service/Method")`, for the HTTP gateway. The
/// encoded descriptor set cannot carry them (prost's descriptor types drop
/// extensions), so they are read here, where protox still has them.
fn write_http_rules(
    pool: &prost_reflect::DescriptorPool,
    out_dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let http = pool
        .get_extension_by_name("google.api.http")
        .ok_or("google.api.http is not declared")?;
    let mut rules = String::from("&[\n");
    for service in pool.services() {
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&http) {
                continue;
            }
            let rule = options.get_extension(&http);
            let rule = rule
                .as_message()
                .ok_or("google.api.http is not a message")?;
            for verb in ["get", "put", "post", "delete", "patch"] {
                if let Some(path) = rule
                    .get_field_by_name(verb)
                    .and_then(|v| v.as_str().map(str::to_string))
                    && !path.is_empty()
                {
                    rules.push_str(&format!(
                        "    ({:?}, {path:?}, \"/{}/{}\"),\n",
                        verb.to_uppercase(),
                        service.full_name(),
                        method.name()
                    ));
                }
            }
        }
    }
    rules.push_str("]\n");
    std::fs::write(out_dir.join("http_rules.rs"), rules)?;
    Ok(())
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
