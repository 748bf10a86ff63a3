# argowait: the wait container of Argo Workflows, in C.
#
# The build stage runs the same commands as CI (scripts/install-deps.sh,
# scripts/build.sh, ctest, scripts/build-static.sh), so a green CI proves them.
# The runtime image is FROM scratch: one static binary (glibc, OpenSSL,
# libcurl, libuv, libyaml, libarchive, cJSON linked in; libcurl, libarchive and
# cJSON built in this stage from Debian's source packages), about 6 MiB.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# The unit tests run against the ordinary (dynamic) build of the same sources;
# build-static.sh enables deb-src, fetches curl, libarchive and cjson with
# apt-get source and assembles build-static/rootfs.
RUN scripts/build.sh build \
 && ctest --test-dir build --output-on-failure -L unit \
 && scripts/build-static.sh build-static \
 && build-static/rootfs/usr/local/bin/argowait version

# rootfs: /usr/local/bin/argowait (stripped), /usr/local/bin/argoexec -> argowait,
# /etc/ssl/certs/ca-certificates.crt, /etc/passwd and /etc/group naming 8737, /tmp.
# The CA bundle is only used when no CA is configured: the API server's CA is
# the service account's ca.crt (mounted by Kubernetes), so the bundle matters
# only for S3 over HTTPS without caSecret. Name resolution uses the /etc/hosts
# and /etc/resolv.conf that the kubelet mounts (glibc's built-in files/dns).
FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="argowait" \
      org.opencontainers.image.description="Drop-in replacement for Argo Workflows' argoexec wait sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/build-static/rootfs/ /
ENV PATH=/usr/local/bin
# Argo's default executor user; any non-root user works.
USER 8737:8737
ENTRYPOINT ["argowait"]
CMD ["wait"]
