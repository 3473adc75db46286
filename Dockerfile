# Trellis: a release build in a full Rust image, then the one binary in a
# small Debian image, running as an unprivileged user. No protoc is needed:
# build.rs compiles the protos with protox.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin trellis

FROM debian:bookworm-slim
# CA certificates for TLS to the datastore; nothing else is installed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin trellis
COPY --from=build /src/target/release/trellis /usr/local/bin/trellis
USER 10001
# gRPC API, dispatch (cluster peers), Prometheus metrics.
EXPOSE 50051 50053 9090
# Kubernetes probes the gRPC health service directly (see
# config/kubernetes/statefulset.yaml); the image carries no probe client.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/trellis"]
CMD ["serve"]
