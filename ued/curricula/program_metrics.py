"""What the program curriculum logs each update: its archive, its specification, the probe
of the student's learning and, with ``spec: model``, how well the model in the loop
predicted."""

from __future__ import annotations

import chex
import jax.numpy as jnp

from ued.core import program_archive as arc

SIDES = ("low", "high")


def step_metrics(cur, cstate, per, info, value, ok, group) -> dict[str, chex.Array]:
    """The metrics of one update: the archive, the specification, the probe and, with
    ``spec: model``, the model in the loop."""
    a, sp = cstate.archive, cstate.spec
    filled = a.filled.astype(jnp.float32)
    size = jnp.maximum(filled.sum(), 1.0)
    nan = jnp.float32(jnp.nan)
    fit, cell, _ = cur.estimates.archive_view(cstate)
    finite = a.filled & jnp.isfinite(fit)
    widened = info["widened"]

    def mean(x):
        return jnp.where(a.filled.any(), (x * filled).sum() / size, nan)

    def std(x):
        m = mean(x)
        return jnp.sqrt(jnp.maximum(mean(x * x) - m * m, 0.0))

    def group_mean(g):
        m = (group == g) & ok
        return jnp.where(m.any(), (value * m).sum() / jnp.maximum(m.sum(), 1), nan)

    occ = arc.occupancy(cell, a.filled, cur.estimates.num_cells)
    out = {
        "programs/size": filled.sum(),
        "programs/coverage": (occ > 0).mean(dtype=jnp.float32),
        "programs/best_lp": jnp.where(finite.any(), jnp.where(finite, fit, -jnp.inf).max(), nan),
        "programs/mean_lp": mean(a.lp),
        "programs/lp_spread": mean(arc.spread(a.lp, a.lp_sq)),
        "programs/solvable": mean(a.solvable),
        "programs/inserted": info["inserted"].sum().astype(jnp.float32),
        "programs/stage": sp.stage.astype(jnp.float32),
        "programs/widen_events": sp.widen_events.astype(jnp.float32),
        "events/widen": widened.astype(jnp.float32),
        "programs/since_improve": sp.since.astype(jnp.float32),
        "programs/grounding_size": cstate.grounding.filled.sum().astype(jnp.float32),
        **{f"programs/lp_{name}": group_mean(i) for i, name in enumerate(cur.groups)},
    }
    if cur.probing:
        probed = jnp.isfinite(info["probe_success"])
        out["programs/probe_success"] = info["probe_success"]
        out["programs/learning"] = jnp.where(probed, sp.learning, nan)
        steps = cur.options.probe_levels * cur.probe_steps
        out["env_steps/curriculum_eval"] = jnp.where(probed, jnp.float32(steps), 0.0)
    for i, name in enumerate(cur.space.names):
        out[f"programs/{name}_mean"] = mean(a.programs[:, i])
        out[f"programs/{name}_std"] = std(a.programs[:, i])
        out[f"programs/bound_{name}_low"] = sp.low[i]
        out[f"programs/bound_{name}_high"] = sp.high[i]
    for i, name in enumerate(cur.space.descriptor_names):
        out[f"programs/desc_{name}_mean"] = mean(a.descriptor[:, i])
    if cur.spec.mode == "model":
        out.update(model_metrics(cur, cstate, per, info))
    return out


def model_metrics(cur, cstate, per, info) -> dict[str, chex.Array]:
    """The model in the loop: each widening's predicted LP (on its update), the LP then
    measured in the slab it opened, and the surrogate's calibration on this step's
    programs (predicted before it saw them)."""
    sp, nan = cstate.spec, jnp.float32(jnp.nan)
    widened = info["widened"]
    mean, std, noise = info["predicted"]
    has = per.evidence > 0
    total = jnp.sqrt(std * std + noise * noise)
    err = jnp.where(has, per.lp - mean, 0.0)
    n = jnp.maximum(has.sum(), 1)
    out = {
        "programs/spec_predicted": jnp.where(widened, sp.predicted, nan),
        "programs/spec_predicted_std": jnp.where(widened, sp.predicted_std, nan),
        "programs/spec_measured": jnp.where(sp.slab_n > 0, sp.slab_sum / sp.slab_n, nan),
        "programs/spec_measured_n": sp.slab_n,
        "programs/surrogate_rmse": jnp.where(has.any(), jnp.sqrt((err * err).sum() / n), nan),
        "programs/surrogate_within_1sd": jnp.where(
            has.any(), (has & (jnp.abs(err) <= total)).sum() / n, nan
        ),
        "programs/surrogate_noise": noise,
    }
    for d, name in enumerate(cur.space.names):
        for side, label in enumerate(SIDES):
            hit = widened & (sp.widen_dim == d) & (sp.widen_side == side)
            out[f"events/widen_{name}_{label}"] = hit.astype(jnp.float32)
    return out
