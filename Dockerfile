# sonde in an empty image: the static musl binary and a default config, nothing else
# (no shell, no libc, no CA bundle: the Mozilla roots are compiled in).
#
# The build context needs the binaries at dist/<TARGETARCH>/sonde, as the release
# workflow lays them out (amd64, arm64, arm for armv7). For a local image:
#   cargo build --release --locked --target x86_64-unknown-linux-musl
#   mkdir -p dist/amd64 && cp target/x86_64-unknown-linux-musl/release/sonde dist/amd64/
#   docker build -t sonde .
FROM scratch

ARG TARGETARCH
ARG VERSION=0.1.0
ARG REVISION=unknown

LABEL org.opencontainers.image.title="sonde" \
      org.opencontainers.image.description="Periodic checks (HTTP uptime, Docker Hub, images, hardware sensors) exported to Prometheus" \
      org.opencontainers.image.url="https://github.com/sonde-exporter/sonde" \
      org.opencontainers.image.source="https://github.com/sonde-exporter/sonde" \
      org.opencontainers.image.documentation="https://github.com/sonde-exporter/sonde#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --chmod=0755 dist/${TARGETARCH}/sonde /usr/bin/sonde
COPY --chmod=0644 packaging/sonde.yml /etc/sonde/sonde.yml

# nobody:nogroup; the config is world-readable and sonde writes no files.
USER 65534:65534
EXPOSE 10060
ENTRYPOINT ["/usr/bin/sonde"]
CMD ["--config.file", "/etc/sonde/sonde.yml"]
