# The GPU runtime: the CPU runtime plus NVRTC, cuBLAS/cuBLASLt and cuDNN from NVIDIA's wheels,
# opened by the stages at run time (dlopen) when --device picks CUDA. libcuda itself belongs to the
# host's driver: the NVIDIA container runtime mounts it (with --gpus / a device request).
ARG RUNTIME
FROM ${RUNTIME}
COPY rootfs/ /
ARG REVISION=unknown
ARG CUDA_WHEELS=unknown
LABEL org.opencontainers.image.title="turbine runtime (CUDA)" \
      org.opencontainers.image.revision="$REVISION" \
      com.turbine.cuda-wheels="$CUDA_WHEELS"
# The container runtime puts the driver's libraries in one of the last two; they are listed so
# dlopen finds them whether or not it refreshed the image's loader cache. Which GPUs are visible is
# left to the device request (compose) or the device plugin (Kubernetes); `compute` makes the
# runtime mount libcuda.
ENV LD_LIBRARY_PATH=/opt/nvidia/lib:/usr/lib/x86_64-linux-gnu:/usr/lib64 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TURBINE_KERNEL_CACHE=/cache/kernels
