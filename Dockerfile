# argowait: the wait container of Argo Workflows, in C.
#
# The build stage runs the same commands as CI (scripts/install-deps.sh,
# scripts/build.sh, ctest), so a green CI proves them.

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN scripts/build.sh build \
 && ctest --test-dir build --output-on-failure -L unit \
 && DESTDIR=/out cmake --install build --prefix /usr/local --strip

FROM debian:bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="argowait" \
      org.opencontainers.image.description="Drop-in replacement for Argo Workflows' argoexec wait sidecar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libcurl4 libcjson1 libyaml-0-2 libarchive13 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/bin/ /usr/local/bin/
# Argo's default executor user; any non-root user works.
USER 8737:8737
ENTRYPOINT ["argowait"]
CMD ["wait"]
