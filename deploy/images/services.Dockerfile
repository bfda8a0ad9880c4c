# One image per service, each the runtime (CPU or GPU, the RUNTIME build argument) plus its binary.
# Built with --target NAME from a context holding the four binaries (deploy/build-images.sh).
ARG RUNTIME
FROM ${RUNTIME} AS text-encoder
COPY turbine-text-encoder /usr/local/bin/
LABEL org.opencontainers.image.title=turbine-text-encoder
EXPOSE 50061 9090
ENTRYPOINT ["/usr/local/bin/turbine-text-encoder"]

FROM ${RUNTIME} AS denoiser
COPY turbine-denoiser /usr/local/bin/
LABEL org.opencontainers.image.title=turbine-denoiser
EXPOSE 50062 9090
ENTRYPOINT ["/usr/local/bin/turbine-denoiser"]

FROM ${RUNTIME} AS vae
COPY turbine-vae /usr/local/bin/
LABEL org.opencontainers.image.title=turbine-vae
EXPOSE 50063 9090
ENTRYPOINT ["/usr/local/bin/turbine-vae"]

FROM ${RUNTIME} AS orchestrator
COPY turbine-orchestrator /usr/local/bin/
LABEL org.opencontainers.image.title=turbine-orchestrator
ENV TURBINE_ARTIFACT_DIR=/artifacts
EXPOSE 50050 9090
ENTRYPOINT ["/usr/local/bin/turbine-orchestrator"]
