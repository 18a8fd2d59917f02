# syntax=docker/dockerfile:1
#
# alertmanager-wechat image: a release build on Debian bookworm, run on distroless as uid 65532.
#   docker build -t alertmanager-wechat:0.1.0 .
#   docker run -p 9097:9097 -v "$PWD/config.yml:/etc/alertmanager-wechat/config.yml:ro" alertmanager-wechat:0.1.0

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the registry and build artefacts between builds; the binary is copied
# out of the cached target directory, which does not outlive this step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/alertmanager-wechat /out/alertmanager-wechat \
    && mkdir -p /out/state

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="alertmanager-wechat" \
      org.opencontainers.image.description="Prometheus Alertmanager and Grafana webhook receiver that delivers alerts to WeChat" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/alertmanager-wechat /usr/local/bin/alertmanager-wechat
# Default templates, for reference and for configs that list them.
COPY --from=builder /src/templates /usr/share/alertmanager-wechat/templates
# The embedded store's default location, writable by the runtime user.
COPY --from=builder --chown=65532:65532 /out/state /var/lib/alertmanager-wechat
# The working directory is writable by the runtime user, so a relative storage.path (the
# built-in default's ./data) works on the read-only rest of the image.
WORKDIR /var/lib/alertmanager-wechat
USER 65532:65532
EXPOSE 9097
ENTRYPOINT ["/usr/local/bin/alertmanager-wechat"]
CMD ["--config.file=/etc/alertmanager-wechat/config.yml"]
