"""Checks what a schema cannot on rendered overlays (`kubectl kustomize OVERLAY | check.py`): the
promises the manifests make to the services they run.

- every stage Deployment picks a model (--tiny or --model-dir), has gRPC startup, readiness and
  liveness probes on its own port, and a headless Service on that port;
- the orchestrator's dns:// replica lists name those Services and ports;
- every pod gets SIGTERM's drain in: terminationGracePeriodSeconds > TURBINE_DRAIN_TIMEOUT;
- every container runs as the images' non-root user on a read-only root with a writable /tmp;
- a container that runs on CUDA runs a -gpu image (the only ones with NVRTC, cuBLAS, cuDNN) and
  asks for a GPU.
"""

import re
import sys

import yaml

STAGE_ENV = {
    "TURBINE_TEXT_ENCODER": "text-encoder",
    "TURBINE_DENOISER": "denoiser",
    "TURBINE_VAE": "vae",
}


def seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", text).groups()
    return float(number) * {"ms": 1e-3, None: 1, "s": 1, "m": 60, "h": 3600}[unit]


def main() -> int:
    objects = [o for o in yaml.safe_load_all(sys.stdin) if o]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    errors = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            errors.append(what)

    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        grace = pod.get("terminationGracePeriodSeconds", 30)
        drain = seconds(env.get("TURBINE_DRAIN_TIMEOUT", "30"))
        check(grace > drain, f"{name}: grace {grace} s <= drain {drain:g} s")
        security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        check(security.get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
        check(security.get("runAsUser") == 10001, f"{name}: runAsUser is not the images' 10001")
        check(security.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        check("/tmp" in mounts, f"{name}: no writable /tmp")
        if env.get("TURBINE_DEVICE") == "cuda":
            check(container["image"].endswith("-gpu"), f"{name}: CUDA on {container['image']}")
            gpus = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
            check(gpus is not None, f"{name}: CUDA without an nvidia.com/gpu limit")
        labels = deployment["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/component") != "stage":
            continue
        args = container.get("args", [])
        check("--tiny" in args or "--model-dir" in args, f"{name}: no model (--tiny / --model-dir)")
        (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            grpc = container.get(probe, {}).get("grpc", {})
            check(grpc.get("port") == port, f"{name}: {probe} is not gRPC health on {port}")
        service = services.get(name, {}).get("spec", {})
        check(service.get("clusterIP") == "None", f"{name}: no headless Service")
        check(
            [p["port"] for p in service.get("ports", [])] == [port],
            f"{name}: Service port is not {port}",
        )

    orchestrator = deployments["orchestrator"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in orchestrator["env"]}
    for var, stage in STAGE_ENV.items():
        port = services[stage]["spec"]["ports"][0]["port"]
        check(env.get(var) == f"dns://{stage}:{port}", f"orchestrator: {var} is not dns://{stage}:{port}")

    for e in errors:
        print(f"check.py: {e}", file=sys.stderr)
    print(f"check.py: {len(deployments)} Deployments, {len(services)} Services, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
