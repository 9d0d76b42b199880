# syntax=docker/dockerfile:1
# routing-engine image: built with the Rust toolchain, run on distroless with
# nothing but the binary, its migrations and the sample routing data.
#
#   docker build -t routing-engine .
#
# The cargo registry and target directory live in BuildKit caches, so a
# source change rebuilds only the crate itself, not its dependencies.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin routing-engine \
    && install -D -m 0755 target/release/routing-engine /out/routing-engine

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/routing-engine /usr/local/bin/routing-engine
COPY --chown=0:0 migrations /app/migrations
COPY --chown=0:0 sample /app/sample
WORKDIR /app
# The distroless "nonroot" user; Kubernetes runs the pod as the same id.
USER 65532:65532
# 50051: mutual-TLS gRPC. 3001: /health, /ready, /metrics.
EXPOSE 50051 3001
ENTRYPOINT ["/usr/local/bin/routing-engine"]
CMD ["serve"]
