"""The benchmark's measurements, run in a fresh worker process per configuration by
``scripts/benchmark.py`` (see its docstring for what each figure means).

``scripts/benchmark.py --compare-ref REV`` loads this file by path in a worker whose ``ued``
package is an older checkout's, so that one harness measures both: it uses only what both
offer (a ``Runner`` with or without the schedule's base key), and finds the modules in their
layer folders or, in a checkout older than those, side by side in ``ued/``."""

from __future__ import annotations

import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

try:
    from ued.config import config as config_lib
    from ued.host.train import enable_compile_cache
    from ued.step import parallel
    from ued.step.experiment import build
except ImportError:  # an older checkout (--compare-ref), whose modules sit side by side in ued/
    import ued.config as config_lib
    import ued.parallel as parallel
    from ued.experiment import build
    from ued.train import enable_compile_cache


def _load_config(experiment, overrides):
    """The config, through whichever loading API this checkout's ``ued`` has: since the
    config layer sits below the curricula it takes their option types as an argument."""
    try:
        from ued.curricula import options_of
    except ImportError:  # an older checkout measured with --compare-ref
        return config_lib.load(experiment, overrides)
    return config_lib.load(experiment, overrides, options_of)


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """Best float32 ``n x n @ n x n`` rate of the default device, GFLOP/s."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)
    _timed(mm, a, a)
    best = min(_timed(mm, a, a)[1] for _ in range(reps))
    return 2 * n**3 / best / 1e9


def student_flops(exp, params, batch: int = 64) -> dict:
    """Per env step: forward, and forward + backward of the student (XLA cost analysis)."""
    net = exp.network
    level = exp.family.example_level(exp.env)
    obs, _ = exp.env.reset_to_level(jax.random.PRNGKey(0), level, exp.env_params)
    obs = jax.tree.map(lambda x: jnp.broadcast_to(x, (1, batch) + jnp.shape(x)), obs)
    resets = jnp.zeros((1, batch), bool)

    def forward(p, carry):
        return net.apply(p, carry, obs, resets)

    def loss(p, carry):  # gradients for params and the incoming carry, as inside a sequence
        return sum(jnp.sum(x) for x in jax.tree.leaves(forward(p, carry)))

    carry = net.initial_carry(batch)

    def cost(fn):
        analysis = jax.jit(fn).lower(params, carry).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, list) else analysis
        return float(analysis.get("flops", float("nan"))) / batch

    fwd = cost(forward)
    fwd_bwd = cost(jax.grad(loss, argnums=(0, 1)))
    epochs = exp.cfg.ppo.epochs
    return {
        "forward": fwd,
        "forward_backward": fwd_bwd,
        "per_env_step": fwd + epochs * fwd_bwd,  # rollout + PPO epochs over every step
    }


def memory_report(compiled) -> dict:
    out = {}
    try:
        m = compiled.memory_analysis()
        out["xla_argument_bytes"] = int(m.argument_size_in_bytes)
        out["xla_output_bytes"] = int(m.output_size_in_bytes)
        out["xla_temp_bytes"] = int(m.temp_size_in_bytes)
    except Exception:  # not every backend reports it
        pass
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_bytes"] = int(stats["peak_bytes_in_use"])

    out["host_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def _set_up(experiment: str, overrides: list[str]):
    """One configuration built, its state initialised (timed) and its chunk compiled."""
    cfg = _load_config(experiment, overrides)
    exp = build(cfg)
    runner = parallel.make_runner(exp, cfg)
    t0 = time.perf_counter()
    state = jax.block_until_ready(runner.init(runner.seed_keys(cfg.run.seed)))
    init_seconds = time.perf_counter() - t0
    chunk = min(cfg.run.chunk_updates, cfg.total_updates)
    compiled, trace_seconds, compile_seconds = _compile_chunk(runner, state, chunk)
    return cfg, exp, runner, state, init_seconds, chunk, compiled, trace_seconds, compile_seconds


def measure_train(spec: dict) -> dict:
    enable_compile_cache(spec["cache_dir"])
    cfg, exp, runner, state, init_seconds, chunk, compiled, trace_seconds, compile_seconds = (
        _set_up(spec["experiment"], spec["overrides"])
    )
    seeded = cfg.run.num_seeds > 1
    result = {
        "compile": {"trace_seconds": trace_seconds, "compile_seconds": compile_seconds},
        "init_seconds": init_seconds,
        "seed_mode": getattr(runner, "seed_mode", "vmap") if seeded else None,
    }
    if spec.get("compile_only"):
        return result

    steps = cfg.steps_per_update * cfg.run.num_seeds
    one = jnp.int32(1)
    for _ in range(spec["warmup"]):
        (state, _), _ = _timed(compiled, state, one)
    params = state.student.params
    flops = student_flops(exp, jax.tree.map(lambda x: x[0], params) if seeded else params)
    # The timed window, repeated from the same state (the same work each time); the fastest
    # repeat is reported: on a shared machine it is the one least slowed by other work.
    start = jax.tree.map(jnp.copy, state)
    windows = []
    for _ in range(max(1, spec.get("repeats", 1))):
        state = jax.tree.map(jnp.copy, start)
        windows.append(_window(compiled, state, one, exp, cfg, spec["updates"], steps, flops))
    best = min(windows, key=lambda w: w["total"])
    total, per_kind = best["total"], best["per_kind"]
    sps = {"mix": steps * spec["updates"] / total}
    # Student env steps per second of each seed: the seed-scaling figure.
    sps_per_seed = sps["mix"] / cfg.run.num_seeds
    if len(per_kind) > 1:
        for key, times in sorted(per_kind.items()):
            sps[key] = steps * len(times) / sum(times)
    rate = matmul_gflops()
    result.update(
        sps=sps,
        sps_per_seed=sps_per_seed,
        # Env steps of every kind (env_steps/*) per second of each seed.
        all_sps_per_seed=best["executed"] / total / cfg.run.num_seeds,
        window_seconds=[w["total"] for w in windows],
        step_counts={k: len(v) for k, v in per_kind.items()},
        flops=flops,
        achieved_gflops=best["work"] / total / 1e9,
        matmul_gflops=rate,
        memory=memory_report(compiled),
    )
    result["fraction_of_matmul"] = result["achieved_gflops"] / rate
    return result


def measure_scaling(spec: dict) -> dict:
    """Seed scaling in one process: a program per configuration of ``spec["configs"]``
    (the same but for ``run.num_seeds``), their timed windows interleaved: each of
    ``repeats`` rounds times every configuration's window once, from its state after the
    warm-up, and the fastest window of each is kept. On a machine shared with other work the
    configurations then see the same load, so the ratio of their throughputs holds even when
    the load moves. Returns ``{"results": [...]}``, one ``measure_train``-like result each
    (memory figures are the process's, shared)."""
    enable_compile_cache(spec["cache_dir"])
    setups = []
    for overrides in spec["configs"]:
        cfg, exp, runner, state, init_seconds, chunk, compiled, trace_seconds, compile_seconds = (
            _set_up(spec["experiment"], overrides)
        )
        one = jnp.int32(1)
        for _ in range(spec["warmup"]):
            (state, _), _ = _timed(compiled, state, one)
        seeded = cfg.run.num_seeds > 1
        params = state.student.params
        flops = student_flops(exp, jax.tree.map(lambda x: x[0], params) if seeded else params)
        setups.append(
            {
                "cfg": cfg,
                "exp": exp,
                "compiled": compiled,
                "start": state,
                "flops": flops,
                "windows": [],
                "result": {
                    "compile": {
                        "trace_seconds": trace_seconds,
                        "compile_seconds": compile_seconds,
                    },
                    "init_seconds": init_seconds,
                    "seed_mode": getattr(runner, "seed_mode", "vmap") if seeded else None,
                    "interleaved": True,
                },
            }
        )
    one = jnp.int32(1)
    for _ in range(max(1, spec.get("repeats", 1))):
        for setup in setups:
            cfg = setup["cfg"]
            state = jax.tree.map(jnp.copy, setup["start"])
            steps = cfg.steps_per_update * cfg.run.num_seeds
            window = _window(
                setup["compiled"], state, one, setup["exp"], cfg, spec["updates"], steps,
                setup["flops"],
            )  # fmt: skip
            setup["windows"].append(window)
    rate = matmul_gflops()
    out = []
    for setup in setups:
        cfg, windows = setup["cfg"], setup["windows"]
        steps = cfg.steps_per_update * cfg.run.num_seeds
        best = min(windows, key=lambda w: w["total"])
        total, per_kind = best["total"], best["per_kind"]
        sps = {"mix": steps * spec["updates"] / total}
        if len(per_kind) > 1:
            for key, times in sorted(per_kind.items()):
                sps[key] = steps * len(times) / sum(times)
        result = setup["result"]
        result.update(
            sps=sps,
            sps_per_seed=sps["mix"] / cfg.run.num_seeds,
            all_sps_per_seed=best["executed"] / total / cfg.run.num_seeds,
            window_seconds=[w["total"] for w in windows],
            step_counts={k: len(v) for k, v in per_kind.items()},
            flops=setup["flops"],
            achieved_gflops=best["work"] / total / 1e9,
            matmul_gflops=rate,
            memory=memory_report(setup["compiled"]),
        )
        result["fraction_of_matmul"] = result["achieved_gflops"] / rate
        out.append(result)
    return {"results": out}


def _compile_chunk(runner, state, chunk: int):
    """The runner's chunk program, jitted as ``ued.host.train`` builds it and compiled; with the
    schedule's base key bound when the runner has one (older checkouts have none)."""
    shardings = (runner.state_sharding(), runner.replicated())
    out = (runner.state_sharding(), runner.metrics_sharding())
    if hasattr(runner, "schedule_base"):
        base = jax.device_put(runner.schedule_base(), runner.replicated())
        fn = jax.jit(
            lambda s, n, b: runner.chunk(s, chunk, n, b),
            in_shardings=(*shardings, runner.replicated()),
            out_shardings=out,
            donate_argnums=0,
        )
        args = (state, jnp.int32(chunk), base)
    else:
        base = None
        fn = jax.jit(
            lambda s, n: runner.chunk(s, chunk, n),
            in_shardings=shardings,
            out_shardings=out,
            donate_argnums=0,
        )
        args = (state, jnp.int32(chunk))
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    trace_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_seconds = time.perf_counter() - t0
    if base is not None:
        compiled = _Bound(compiled, base)
    return compiled, trace_seconds, compile_seconds


class _Bound:
    """A compiled chunk with the schedule's base key bound: ``run(state, active)``."""

    def __init__(self, compiled, base):
        self.compiled, self.base = compiled, base

    def __call__(self, state, active):
        return self.compiled(state, active, self.base)

    def __getattr__(self, name):
        return getattr(self.compiled, name)


def _window(compiled, state, one, exp, cfg, updates: int, steps: int, flops: dict) -> dict:
    """``updates`` timed single train steps from ``state``."""
    per_kind: dict[str, list[float]] = {}
    total = work = executed = 0.0
    for _ in range(updates):
        (state, metrics), seconds = _timed(compiled, state, one)
        metrics = jax.device_get(metrics)
        # Every kind of env step that ran (student, refresh, builder, antagonist), all seeds.
        executed += sum(
            float(np.nansum(v)) for k, v in metrics.items() if k.startswith("env_steps/")
        )
        present = [g for g in exp.curriculum.groups if np.nanmax(metrics[f"curriculum/{g}"]) > 0]
        per_kind.setdefault("+".join(present), []).append(seconds)
        total += seconds
        # A step without a gradient (Robust PLR's new levels, ACCEL's edits) only rolls out.
        trained = np.asarray(metrics["trained_envs"]).reshape(-1)
        trained = float(np.mean(trained[np.isfinite(trained)] > 0))
        work += steps * (flops["forward"] + trained * cfg.ppo.epochs * flops["forward_backward"])
    return {"total": total, "per_kind": per_kind, "work": work, "executed": executed}


def measure_env(spec: dict) -> dict:
    cfg = _load_config(spec["experiment"], spec["overrides"])
    exp = build(cfg)
    env, params, n, steps = exp.env, exp.env_params, spec["env_envs"], spec["env_steps"]
    num_actions = int(env.action_space(params).n)

    def run(key):
        level_key, reset_key, key = jax.random.split(key, 3)
        levels = jax.vmap(exp.deps.generator)(jax.random.split(level_key, n))
        reset = jax.vmap(env.reset_to_level, in_axes=(0, 0, None))
        _, state = reset(jax.random.split(reset_key, n), levels, params)
        step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

        def body(carry, k):
            state, total = carry
            act_key, env_key = jax.random.split(k)
            actions = jax.random.randint(act_key, (n,), 0, num_actions)
            out = step(jax.random.split(env_key, n), state, actions, params)
            return (out.state, total + out.reward.sum() + out.done.sum()), None

        (_, total), _ = jax.lax.scan(body, (state, 0.0), jax.random.split(key, steps))
        return total

    fn = jax.jit(run)
    _timed(fn, jax.random.PRNGKey(0))
    best = min(_timed(fn, jax.random.PRNGKey(i))[1] for i in range(1, 4))
    return {"env_sps": float(np.float64(n * steps / best))}
