# Multi-stage build of the redirector binary (kernel programs embedded).
# docker build -t redirector .
FROM rust:1-bookworm AS build
# LLVM 22 (from bookworm-security) for bpf-linker, matching nightly's LLVM.
RUN apt-get update \
 && apt-get install -y --no-install-recommends llvm-22-dev libpolly-22-dev protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
RUN rustup toolchain install nightly --profile minimal --component rust-src \
 && LLVM_PREFIX=/usr/lib/llvm-22 PATH=/usr/lib/llvm-22/bin:$PATH \
    cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22 --locked
WORKDIR /src
COPY . .
RUN cargo build --release --locked --package redirector --bin redirector

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/redirector /usr/local/bin/redirector
COPY config/redirector.example.toml /etc/redirector/redirector.toml
ENTRYPOINT ["/usr/local/bin/redirector"]
CMD ["run", "--config", "/etc/redirector/redirector.toml"]
