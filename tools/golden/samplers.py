"""Golden trajectories for the Rust samplers (turbine-samplers).

Writes into `tests/fixtures/samplers/`:

- `schedules.safetensors`: rCM sigmas and fed timesteps for 1..4 steps at sigma_max 80/200/1600
  (`rcm/steps{N}_sigma{S}/{sigmas,timesteps}`), and Wan flow-matching schedules taken from
  diffusers' `UniPCMultistepScheduler` (`flow/steps{N}_shift{S}/{sigmas,timesteps}`).
- `rcm.safetensors`: rCM trajectories (SDE and ODE) transcribed line by line from TurboDiffusion's
  `inference/wan2.2_i2v_infer.py` loop, with the noise tensors it drew stored for injection.
- `flow.safetensors`: Wan flow-matching trajectories: UniPC through diffusers 0.42.1's
  `UniPCMultistepScheduler` configured as Wan's `FlowUniPCMultistepScheduler`, and Euler from its
  formula, with and without classifier-free guidance.

Each trajectory case `<case>/` holds `params` (f64: rCM `[steps, sigma_max]`, flow `[steps, shift,
guidance]`), `noise` (f32 `[draws, *shape]`: the initial noise, then rCM SDE's per-step noise),
`timesteps` (f64, the value fed to the model per step), `x` (f64 `[steps + 1, *shape]`: the initial
state, then the state after every step) and `denoised` (f64 `[steps, *shape]`, x0-hat per step).
`toy/cond` is the toy model's conditioning tensor.

The velocity model is a toy, identical in `shared/samplers/tests/`, so the trajectories test sampler
arithmetic only. It sees the state narrowed to f32 (what the Rust samplers upload), computes in f64
and answers in f32:

    positive: v = tanh(0.8 x + 0.5 t/1000) + 0.3 c + sin(4 t/1000)
    negative: v = tanh(0.6 x - 0.2 t/1000) - 0.1 c

The sin term bends x0-hat along the schedule so that UniPC's second-order terms matter: with it, a
predictor stuck at order 1 or a wrong corrector weight moves the trajectory by ~2e-4 relative.

Precision choices, mirrored by the Rust samplers:
- rCM runs upstream's float64 state expressions verbatim, including the bf16 timestep
  `(t_cur.float() * ones_f64 * 1000).to(bfloat16)` and the f32 product `t_next * randn_f32`.
- UniPC: Wan (and diffusers) store sigmas as f32 and so compute the solver's scalar coefficients in
  f32. The reference here keeps those f32-rounded sigma values but widens them to f64 before
  stepping with an f64 sample, so the fixture pins the f64 arithmetic the Rust sampler does; the
  script prints (and bounds) how far diffusers' native f32-coefficient run is from it.
- diffusers' default flow schedule is `linspace(1, 1/1000)`; Wan's is `linspace(0.999, 0)`. The
  script passes Wan's unshifted sigmas to `set_timesteps(sigmas=...)` (diffusers then applies
  `flow_shift`) and checks the result against a transcription of Wan's `set_timesteps` and against
  the published N=50, shift 5 timesteps.

Rerun from the repository root, in a venv with tools/golden/requirements.txt (CPU, no network):

    pyenv-golden/bin/python tools/golden/samplers.py
"""

import math
from pathlib import Path

import numpy as np
import torch
from diffusers import UniPCMultistepScheduler
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "samplers"
SHAPE = (2, 3, 4, 5)
RCM_MID_T = [1.5, 1.4, 1.0]

# Wan's FlowUniPCMultistepScheduler.__init__: training sigmas stored as f32, read back as a float.
WAN_SIGMA_MAX = torch.from_numpy(1.0 - np.linspace(1, 1 / 1000, 1000)[::-1].copy()).to(torch.float32)[0].item()

# wan.md §3, Wan's N=50 / shift 5 timesteps.
WAN_T50_SHIFT5 = [
    999, 995, 991, 987, 982, 978, 973, 968, 963, 957, 952, 946, 940, 934, 927, 920, 913, 906, 898, 890, 882, 873,
    863, 854, 843, 833, 821, 809, 796, 783, 768, 753, 737, 720, 701, 681, 660, 636, 611, 584, 555, 522, 487, 448,
    405, 356, 302, 241, 172, 92,
]


def toy_velocity(x, t, cond, positive):
    x = x.to(torch.float32).to(torch.float64)
    c = cond.to(torch.float64)
    if positive:
        v = torch.tanh(0.8 * x + 0.5 * t / 1000) + 0.3 * c + math.sin(4 * t / 1000)
    else:
        v = torch.tanh(0.6 * x - 0.2 * t / 1000) - 0.1 * c
    return v.to(torch.float32)


# ---------------------------------------------------------------- rCM


def rcm_t_steps(steps, sigma_max):
    t_steps = torch.tensor([math.atan(sigma_max), *RCM_MID_T[: steps - 1], 0], dtype=torch.float64)
    return torch.sin(t_steps) / (torch.cos(t_steps) + torch.sin(t_steps))


def rcm_fed_timestep(t_cur):
    ones = torch.ones(1, 1, dtype=torch.float64)
    return (t_cur.float() * ones * 1000).to(torch.bfloat16).to(torch.float64).item()


def rcm_case(steps, sigma_max, ode, cond, generator):
    t_steps = rcm_t_steps(steps, sigma_max)
    draws = 1 if ode else steps + 1
    noise = torch.randn(draws, *SHAPE, dtype=torch.float32, generator=generator)
    x = noise[0].to(torch.float64) * t_steps[0]
    xs, denoised, fed = [x], [], []
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        t = rcm_fed_timestep(t_cur)
        v_pred = toy_velocity(x, t, cond, positive=True).to(torch.float64)
        denoised.append(x - t_cur * v_pred)
        if ode:
            x = x - (t_cur - t_next) * v_pred
        else:
            eps = noise[i + 1]
            assert (t_next * eps).dtype == torch.float32, "upstream's noise term is an f32 product"
            x = (1 - t_next) * (x - t_cur * v_pred) + t_next * eps
        xs.append(x)
        fed.append(t)
    return {
        "params": torch.tensor([steps, sigma_max], dtype=torch.float64),
        "noise": noise,
        "timesteps": torch.tensor(fed, dtype=torch.float64),
        "x": torch.stack(xs),
        "denoised": torch.stack(denoised),
    }


# ---------------------------------------------------------------- flow matching


def wan_unshifted_sigmas(steps):
    return np.linspace(WAN_SIGMA_MAX, 0, steps + 1).copy()[:-1]


def wan_schedule_transcribed(steps, shift):
    """FlowUniPCMultistepScheduler.set_timesteps (Wan2.1/2.2), final_sigmas_type="zero"."""
    sigmas = wan_unshifted_sigmas(steps)
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    timesteps = torch.from_numpy(sigmas * 1000).to(torch.int64)
    sigmas = torch.from_numpy(np.concatenate([sigmas, [0]]).astype(np.float32))
    return sigmas, timesteps


def unipc(steps, shift):
    sched = UniPCMultistepScheduler(
        num_train_timesteps=1000,
        solver_order=2,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        solver_type="bh2",
        predict_x0=True,
        lower_order_final=True,
        final_sigmas_type="zero",
    )
    sched.set_timesteps(sigmas=wan_unshifted_sigmas(steps))
    sigmas, timesteps = wan_schedule_transcribed(steps, shift)
    assert sched.sigmas.dtype == torch.float32 and torch.equal(sched.sigmas, sigmas), (steps, shift)
    assert torch.equal(sched.timesteps, timesteps), (steps, shift)
    sched.set_begin_index(0)
    return sched


def flow_run(steps, shift, guidance, solver, cond, noise, f64_coefficients=True):
    sched = unipc(steps, shift)
    if f64_coefficients:
        sched.sigmas = sched.sigmas.to(torch.float64)
    sigmas = sched.sigmas.to(torch.float64)
    x = noise.to(torch.float64)
    xs, denoised, fed = [x], [], []
    for i, t in enumerate(sched.timesteps):
        t_fed = float(t.item())
        v = toy_velocity(x, t_fed, cond, positive=True).to(torch.float64)
        if guidance != 1.0:
            v_u = toy_velocity(x, t_fed, cond, positive=False).to(torch.float64)
            v = v_u + guidance * (v - v_u)
        denoised.append(x - sigmas[i] * v)
        if solver == "unipc":
            x = sched.step(v, t, x).prev_sample
            assert x.dtype == torch.float64
        else:
            x = x + (sigmas[i + 1] - sigmas[i]) * v
        xs.append(x)
        fed.append(t_fed)
    return torch.tensor(fed, dtype=torch.float64), torch.stack(xs), torch.stack(denoised)


def max_rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def flow_case(steps, shift, guidance, solver, cond, generator):
    noise = torch.randn(1, *SHAPE, dtype=torch.float32, generator=generator)
    fed, xs, denoised = flow_run(steps, shift, guidance, solver, cond, noise[0])
    if solver == "unipc":
        _, xs32, _ = flow_run(steps, shift, guidance, solver, cond, noise[0], f64_coefficients=False)
        err = max_rel(xs32, xs)
        print(f"  unipc steps={steps} shift={shift} g={guidance}: native f32 coefficients vs f64: {err:.2e}")
        assert err < 1e-5
    return {
        "params": torch.tensor([steps, shift, guidance], dtype=torch.float64),
        "noise": noise,
        "timesteps": fed,
        "x": xs,
        "denoised": denoised,
    }


# ---------------------------------------------------------------- files


def flatten(cases):
    return {f"{case}/{name}": t.contiguous() for case, tensors in cases.items() for name, t in tensors.items()}


def schedules():
    out = {}
    for sigma_max in (80, 200, 1600):
        for steps in range(1, 5):
            s = rcm_t_steps(steps, sigma_max)
            fed = torch.tensor([rcm_fed_timestep(t) for t in s[:-1]], dtype=torch.float64)
            out[f"rcm/steps{steps}_sigma{sigma_max}/sigmas"] = s
            out[f"rcm/steps{steps}_sigma{sigma_max}/timesteps"] = fed
    assert out["rcm/steps4_sigma80/timesteps"].tolist() == [988, 932, 852, 608]
    assert out["rcm/steps4_sigma200/timesteps"][0].item() == 996
    for steps, shift in ((6, 5.0), (10, 3.0), (40, 12.0), (50, 5.0)):
        sched = unipc(steps, shift)
        key = f"flow/steps{steps}_shift{shift:g}"
        out[f"{key}/sigmas"] = sched.sigmas.to(torch.float64)
        out[f"{key}/timesteps"] = sched.timesteps.to(torch.float64)
    assert out["flow/steps50_shift5/timesteps"].to(torch.int64).tolist() == WAN_T50_SHIFT5
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(20251125)
    cond = torch.randn(*SHAPE, dtype=torch.float32, generator=g)
    # The f64->bf16 cast goes through f32 (double rounding), which the Rust timestep reproduces.
    assert torch.tensor(986.0000000001, dtype=torch.float64).to(torch.bfloat16).item() == 984.0

    save_file(schedules(), OUT / "schedules.safetensors")

    rcm = {"toy": {"cond": cond}}
    for steps, sigma_max, ode in ((4, 80, False), (1, 80, False), (3, 200, False), (4, 200, True), (2, 1600, True)):
        name = f"rcm_{'ode' if ode else 'sde'}_steps{steps}_sigma{sigma_max}"
        rcm[name] = rcm_case(steps, sigma_max, ode, cond, g)
    save_file(flatten(rcm), OUT / "rcm.safetensors")

    print("flow cases:")
    flow = {"toy": {"cond": cond}}
    for solver, steps, shift, guidance in (
        ("unipc", 6, 5.0, 1.0),
        ("unipc", 10, 3.0, 5.0),
        ("unipc", 1, 5.0, 1.0),
        ("unipc", 2, 5.0, 3.5),
        ("unipc", 3, 12.0, 1.0),
        ("euler", 6, 5.0, 5.0),
        ("euler", 10, 3.0, 1.0),
    ):
        name = f"{solver}_steps{steps}_shift{shift:g}_cfg{guidance:g}"
        flow[name] = flow_case(steps, shift, guidance, solver, cond, g)
    save_file(flatten(flow), OUT / "flow.safetensors")
    for f in sorted(OUT.glob("*.safetensors")):
        print(f"wrote {f.relative_to(OUT.parents[2])} ({f.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
