#!/usr/bin/env python3
"""A small Python client of Turbine's public gRPC API (``turbine.v1.Orchestrator``).

The Python stubs are generated from the repository's ``proto/`` with grpcio-tools
(``python -m grpc_tools.protoc``), so the client always speaks the API of the checkout it sits in:
``--stubs DIR`` takes stubs generated there earlier, otherwise they are generated into a
temporary directory at start-up.

Requirements (pinned in ``requirements.txt`` beside this file)::

    python3 -m venv pyenv-ci && pyenv-ci/bin/pip install -r tools/python_client/requirements.txt

Commands (``--target`` is the orchestrator, default ``127.0.0.1:50050``)::

    turbine_client.py generate --prompt "a red fox" --width 64 --height 48 --frames 9 --out fox.mp4
    turbine_client.py submit --prompt "a red fox" --seed 7     # prints the job id
    turbine_client.py watch JOB_ID                              # events until the job ends
    turbine_client.py download JOB_ID --out fox.mp4

``generate`` is ``submit``, ``watch`` and ``download`` in a row. Every command exits non-zero
when the job failed or was cancelled, or on any gRPC error (printed with its status code).

As a library::

    client = TurbineClient("127.0.0.1:50050", load_stubs())
    job_id = client.submit(prompt="a red fox", width=64, height=48, frames=9, seed=7)
    for event in client.watch(job_id):
        print(describe(event))
    artifact = client.download(job_id, "fox.mp4")
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import tempfile
from dataclasses import dataclass
from types import ModuleType
from typing import Iterator, Optional

import grpc

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"
#: Messages carry artifact chunks of 1 MiB; leave headroom.
MAX_MESSAGE_BYTES = 8 << 20


@dataclass
class Stubs:
    """The generated modules of the API."""

    pb: ModuleType  # turbine/v1/orchestrator_pb2
    params: ModuleType  # turbine/v1/params_pb2
    grpc: ModuleType  # turbine/v1/orchestrator_pb2_grpc


def generate_stubs(out_dir: pathlib.Path, proto_dir: pathlib.Path = PROTO_DIR) -> None:
    """Runs ``grpc_tools.protoc`` on every ``turbine/v1/*.proto`` into ``out_dir``."""
    from grpc_tools import protoc  # grpcio-tools
    import importlib.resources

    protos = sorted(str(p.relative_to(proto_dir)) for p in (proto_dir / "turbine" / "v1").glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_dir / 'turbine' / 'v1'}")
    # grpc_tools ships the well-known types (google/protobuf/*.proto).
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    out_dir.mkdir(parents=True, exist_ok=True)
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *protos,
        ]
    )
    if code != 0:
        raise SystemExit(f"grpc_tools.protoc failed with exit code {code}")


def load_stubs(stubs_dir: Optional[pathlib.Path] = None) -> Stubs:
    """Imports the stubs from ``stubs_dir``, generating them into a temporary directory first
    when none is given."""
    if stubs_dir is None:
        stubs_dir = pathlib.Path(tempfile.mkdtemp(prefix="turbine-stubs-"))
        generate_stubs(stubs_dir)
    sys.path.insert(0, str(stubs_dir))
    return Stubs(
        pb=importlib.import_module("turbine.v1.orchestrator_pb2"),
        params=importlib.import_module("turbine.v1.params_pb2"),
        grpc=importlib.import_module("turbine.v1.orchestrator_pb2_grpc"),
    )


class JobEnded(Exception):
    """The job failed or was cancelled."""


class TurbineClient:
    """Submit, watch and download text-to-video jobs."""

    def __init__(self, target: str, stubs: Stubs):
        self.stubs = stubs
        self.channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self.api = stubs.grpc.OrchestratorStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def params(
        self,
        prompt: str,
        *,
        negative_prompt: str = "",
        width: int = 0,
        height: int = 0,
        frames: int = 0,
        fps: Optional[float] = None,
        seed: Optional[int] = None,
        sampler: str = "rcm",
        steps: int = 0,
        guidance: Optional[float] = None,
        shift: Optional[float] = None,
    ):
        """A ``GenerationParams``; 0 / ``None`` leave a field to the server's default.
        ``sampler`` is ``rcm``, ``rcm-ode``, ``unipc`` or ``euler``."""
        p = self.stubs.params
        params = p.GenerationParams(
            prompt=prompt, negative_prompt=negative_prompt, width=width, height=height, frames=frames
        )
        if fps is not None:
            params.fps = fps
        if seed is not None:
            params.seed = seed
        if sampler in ("rcm", "rcm-ode"):
            params.rcm.CopyFrom(p.RcmSampler(steps=steps, ode=sampler == "rcm-ode"))
        elif sampler in ("unipc", "euler"):
            flow = p.FlowSampler(
                steps=steps, solver=p.FLOW_SOLVER_UNIPC if sampler == "unipc" else p.FLOW_SOLVER_EULER
            )
            if guidance is not None:
                flow.guidance = guidance
            if shift is not None:
                flow.shift = shift
            params.flow.CopyFrom(flow)
        else:
            raise ValueError(f"unknown sampler {sampler!r}")
        return params

    def submit(self, prompt: str, idempotency_key: str = "", **params) -> str:
        """Queues a job (keyword arguments as for :meth:`params`); returns its id."""
        request = self.stubs.pb.SubmitJobRequest(
            params=self.params(prompt, **params), idempotency_key=idempotency_key
        )
        return self.api.SubmitJob(request).job_id

    def watch(self, job_id: str) -> Iterator:
        """The job's ``JobEvent``s from its current state to its final event."""
        yield from self.api.WatchJob(self.stubs.pb.WatchJobRequest(job_id=job_id))

    def wait(self, job_id: str, on_event=None):
        """Watches the job to its end; returns its ``Done`` event, raises :class:`JobEnded`
        when it failed or was cancelled."""
        for event in self.watch(job_id):
            if on_event is not None:
                on_event(event)
            kind = event.WhichOneof("kind")
            if kind == "done":
                return event.done
            if kind == "failed":
                raise JobEnded(f"job {job_id} failed: code {event.failed.code}: {event.failed.message}")
            if kind == "cancelled":
                raise JobEnded(f"job {job_id} was cancelled")
        raise JobEnded(f"the watch of job {job_id} ended without a final event")

    def download(self, job_id: str, path: pathlib.Path):
        """Writes the job's MP4 to ``path``; returns its ``Artifact`` description."""
        artifact = None
        written = 0
        with open(path, "wb") as out:
            for chunk in self.api.GetArtifact(self.stubs.pb.GetArtifactRequest(job_id=job_id)):
                if chunk.offset != written:
                    raise RuntimeError(f"chunk at offset {chunk.offset}, expected {written}")
                if chunk.HasField("artifact"):
                    artifact = chunk.artifact
                out.write(chunk.data)
                written += len(chunk.data)
        if artifact is None:
            raise RuntimeError("the artifact stream carried no Artifact description")
        if written != artifact.size_bytes:
            raise RuntimeError(f"{written} bytes received, the artifact has {artifact.size_bytes}")
        return artifact


def stage_name(event, number: int) -> str:
    """`STAGE_DENOISE` for 2: the `turbine.v1.Stage` value's name."""
    stage = event.DESCRIPTOR.file.enum_types_by_name["Stage"]
    value = stage.values_by_number.get(number)
    return value.name if value is not None else str(number)


def describe(event) -> str:
    """One line per ``JobEvent``."""
    kind = event.WhichOneof("kind")
    if kind == "queued":
        return f"queued position={event.queued.position}"
    if kind == "stage_started":
        return f"stage {stage_name(event, event.stage_started.stage)}"
    if kind == "progress":
        p = event.progress
        return f"progress step={p.step + 1}/{p.total} eta={p.eta_seconds:.2f}s"
    if kind == "preview":
        return f"preview step={event.preview.step} {event.preview.width}x{event.preview.height}"
    if kind == "done":
        a = event.done.artifact
        timings = " ".join(f"{stage_name(event, t.stage)}={t.seconds:.3f}s" for t in event.done.timings)
        return f"done {a.size_bytes} bytes {a.frames} frames {a.width}x{a.height} {a.fps:g} fps ({timings})"
    if kind == "failed":
        return f"failed code={event.failed.code} {event.failed.message}"
    if kind == "cancelled":
        return "cancelled"
    return f"event {kind}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="127.0.0.1:50050", help="orchestrator host:port")
    parser.add_argument("--stubs", type=pathlib.Path, help="directory of stubs generated earlier")
    commands = parser.add_subparsers(dest="command", required=True)

    def job_params(p: argparse.ArgumentParser) -> None:
        p.add_argument("--prompt", required=True)
        p.add_argument("--negative-prompt", default="")
        p.add_argument("--width", type=int, default=0, help="multiple of 16 [server default]")
        p.add_argument("--height", type=int, default=0, help="multiple of 16 [server default]")
        p.add_argument("--frames", type=int, default=0, help="4k+1 [server default]")
        p.add_argument("--fps", type=float)
        p.add_argument("--seed", type=int)
        p.add_argument("--sampler", choices=["rcm", "rcm-ode", "unipc", "euler"], default="rcm")
        p.add_argument("--steps", type=int, default=0, help="[server default for the sampler]")
        p.add_argument("--guidance", type=float)
        p.add_argument("--shift", type=float)
        p.add_argument("--idempotency-key", default="")

    job_params(commands.add_parser("submit", help="queue a job, print its id"))
    generate = commands.add_parser("generate", help="submit, watch and download")
    job_params(generate)
    generate.add_argument("--out", type=pathlib.Path, required=True)
    watch = commands.add_parser("watch", help="print a job's events until it ends")
    watch.add_argument("job_id")
    download = commands.add_parser("download", help="write a finished job's MP4")
    download.add_argument("job_id")
    download.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)

    client = TurbineClient(args.target, load_stubs(args.stubs))
    show = lambda event: print(describe(event), flush=True)  # noqa: E731
    try:
        if args.command in ("submit", "generate"):
            job_id = client.submit(
                args.prompt,
                idempotency_key=args.idempotency_key,
                negative_prompt=args.negative_prompt,
                width=args.width,
                height=args.height,
                frames=args.frames,
                fps=args.fps,
                seed=args.seed,
                sampler=args.sampler,
                steps=args.steps,
                guidance=args.guidance,
                shift=args.shift,
            )
            print(f"job {job_id}", flush=True)
            if args.command == "submit":
                return 0
            client.wait(job_id, show)
            artifact = client.download(job_id, args.out)
            print(f"wrote {args.out} ({artifact.size_bytes} bytes)")
        elif args.command == "watch":
            client.wait(args.job_id, show)
        elif args.command == "download":
            artifact = client.download(args.job_id, args.out)
            print(f"wrote {args.out} ({artifact.size_bytes} bytes)")
        return 0
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except JobEnded as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
