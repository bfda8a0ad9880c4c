# The runtime every Turbine image starts from: a root filesystem that deploy/build-images.sh
# assembles (the dynamic loader, the C libraries the binaries link, /etc/passwd with the unprivileged
# user `turbine`, /tmp, the `turbine` command for health probes) and nothing else: no shell, no
# package manager. FROM scratch because no base image can be pulled where the images are built.
FROM scratch
COPY rootfs/ /
# The directories the services write, owned by the user (a named volume mounted on one starts
# with its ownership): home, the orchestrator's artifacts, the GPU kernel cache.
COPY --chown=10001:10001 empty/ /home/turbine/
COPY --chown=10001:10001 empty/ /artifacts/
COPY --chown=10001:10001 empty/ /cache/
ARG REVISION=unknown
LABEL org.opencontainers.image.title="turbine runtime" \
      org.opencontainers.image.revision="$REVISION"
ENV HOME=/home/turbine
WORKDIR /home/turbine
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
