//! OTLP trace export (`--otel-endpoint`, cargo feature `otel`): every
//! `tracing` span the log filter admits (a call's `grpc` span, its
//! `datastore` spans) is also sent to an OpenTelemetry collector over
//! OTLP/gRPC, batched on the tokio runtime. `OtelGuard` flushes on drop.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_subscriber::{Layer, Registry};

/// The service name spans are reported under.
const SERVICE_NAME: &str = "trellis";

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("--otel-endpoint `{endpoint}`: {reason}")]
pub struct OtelError {
    endpoint: String,
    reason: String,
}

/// Keeps the exporter running; dropping it sends what is still batched.
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        // The batch task runs on the runtime: let it work while this
        // thread waits for the flush.
        let flush = || {
            if let Err(e) = self.provider.shutdown() {
                eprintln!("flushing OTLP spans failed: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(flush)
            }
            _ => flush(),
        }
    }
}

/// A layer exporting spans to `endpoint` (e.g. `http://collector:4317`).
/// Must be called inside the tokio runtime.
pub fn layer(
    endpoint: &str,
) -> Result<(Box<dyn Layer<Registry> + Send + Sync>, OtelGuard), OtelError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| OtelError {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(SERVICE_NAME)
                .build(),
        )
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
    Ok((layer, OtelGuard { provider }))
}
