"""Training and measuring a level model (the VAE of ``envs.level_model``) on a corpus of
levels, for a latent program space (``scripts/train_level_model.py``).

- **Corpus** (``read_corpus``): level files (written by ``scripts/make_levels.py`` from the
  family's generators and program space, plus any a user adds). Levels of any *scored* set
  are dropped: the family's shipped level files (``envs/<family>/levels/*.txt``, its
  evaluation sets), its named levels, its named level sets, and any ``exclude`` file (a
  suite's own sets). A model must not have seen what the student is tested on.
- **Training** (``train``): the ELBO with Adam (optax) on a held-out split, a KL weight
  ``beta`` warmed up over the first fifth of the steps, a progress bar, and a wall-clock
  cap.
- **Report** (``evaluate``): reconstruction accuracy on the held-out split (per channel,
  whole levels exactly, and per corpus file beside the baseline of each cell's majority
  value in that file: random walls are noise that no model reconstructs better), validity
  before repair of levels decoded from the prior and from the latent box the curriculum
  searches, novelty (the fraction of decoded, repaired levels not in the corpus) and their
  solvable fraction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from envs import level_model as lm


def scored_texts(family, env, exclude: Sequence[str | Path] = ()) -> set[str]:
    """The text of every level a run may be scored on (see the module docstring) that fits
    ``env``: those a corpus must not contain."""
    texts: set[str] = set()

    def add(levels) -> None:
        for level in family.unstack(levels):
            texts.add(family.level_to_text(env, level))

    folder = lm.ROOT / "envs" / family.name / "levels"
    for path in [*sorted(folder.glob("*.txt")), *map(Path, exclude)]:
        try:
            add(family.read_levels(env, path))
        except ValueError:
            if Path(path) in map(Path, exclude):
                raise
            continue  # a shipped set of another size cannot be in this env's corpus
    sets = [family.named_levels, *family.level_sets.values()]
    for make in sets:
        try:
            levels = make(env) or {}
        except ValueError:
            continue  # a set that does not fit this env
        for level in levels.values():
            texts.add(family.level_to_text(env, level))
    return texts


def read_corpus(
    family, env, paths: Sequence[str | Path], exclude=()
) -> tuple[Any, np.ndarray, dict]:
    """The corpus's levels (stacked) without any scored level, the (N,) index of the file
    each came from, and a summary of what was read and dropped."""
    scored = scored_texts(family, env, exclude)
    kept, source, counts = [], [], {}
    dropped = 0
    for i, path in enumerate(paths):
        levels = family.unstack(family.read_levels(env, path))
        keep = [lv for lv in levels if family.level_to_text(env, lv) not in scored]
        counts[Path(path).name] = len(keep)
        dropped += len(levels) - len(keep)
        kept += keep
        source += [i] * len(keep)
    if not kept:
        raise ValueError("the corpus holds no level (after dropping scored ones)")
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *kept)
    summary = {"files": counts, "levels": len(kept), "dropped_scored": dropped}
    return stacked, np.asarray(source), summary


def elbo_terms(module, params, grids, key, kinds: tuple[str, ...]):
    """Per-example ``(reconstruction negative log-likelihood, KL)``, each (B,)."""
    logits, mean, log_var = module.apply(params, grids, key)
    nll = jnp.zeros(grids.shape[0], jnp.float32)
    for c, kind in enumerate(kinds):
        x, z = grids[..., c].reshape(grids.shape[0], -1), logits[..., c].reshape(grids.shape[0], -1)
        if kind == "bernoulli":
            nll = nll + optax.sigmoid_binary_cross_entropy(z, x).sum(-1)
        else:
            nll = nll + optax.softmax_cross_entropy(z, x)
    kl = 0.5 * (jnp.exp(log_var) + mean * mean - 1.0 - log_var).sum(-1)
    return nll, kl


def train(
    spec: lm.ModelSpec,
    train_grids: np.ndarray,
    held_grids: np.ndarray,
    epochs: int = 30,
    batch: int = 256,
    lr: float = 1e-3,
    beta: float = 1.0,
    seed: int = 0,
    max_seconds: float = 120.0,
    progress: bool = True,
):
    """Trains the VAE; returns ``(params, history)`` with the held-out ELBO terms per
    epoch. Stops early at ``max_seconds`` of wall clock (after a whole step)."""
    from tqdm.auto import tqdm

    module = spec.module()
    kinds = tuple(kind for _, kind in spec.channels)
    key = jax.random.key(seed)
    init_key, key = jax.random.split(key)
    params = lm.init_params(spec, init_key)
    tx = optax.adam(lr)
    opt = tx.init(params)
    n = train_grids.shape[0]
    per_epoch = max(n // batch, 1)
    total = epochs * per_epoch
    warm = max(total // 5, 1)

    @jax.jit
    def step(params, opt, grids, key, weight):
        def loss(p):
            nll, kl = elbo_terms(module, p, grids, key, kinds)
            return (nll + weight * kl).mean(), (nll.mean(), kl.mean())

        (value, terms), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value, terms

    @jax.jit
    def held_out(params, key):
        nll, kl = elbo_terms(module, params, jnp.asarray(held_grids), key, kinds)
        return nll.mean(), kl.mean()

    history = []
    start = time.monotonic()
    rng = np.random.default_rng(seed)
    bar = tqdm(total=total, desc="level model", unit="step", disable=not progress)
    done = 0
    stopped = False
    for epoch in range(epochs):
        order = rng.permutation(n)
        for b in range(per_epoch):
            idx = order[b * batch : (b + 1) * batch]
            key, k = jax.random.split(key)
            weight = beta * min(1.0, (done + 1) / warm)
            params, opt, value, _ = step(params, opt, jnp.asarray(train_grids[idx]), k, weight)
            done += 1
            bar.update(1)
            if time.monotonic() - start > max_seconds:
                stopped = True
                break
        key, k = jax.random.split(key)
        nll, kl = (float(x) for x in held_out(params, k))
        history.append({"epoch": epoch + 1, "steps": done, "held_nll": nll, "held_kl": kl})
        bar.set_postfix(held_nll=f"{nll:.2f}", kl=f"{kl:.2f}")
        if stopped:
            break
    bar.close()
    return params, {"epochs": history, "steps": done, "seconds": time.monotonic() - start,
                    "stopped_at_time_limit": stopped}  # fmt: skip


def evaluate(
    spec: lm.ModelSpec,
    params,
    codec: lm.LevelCodec,
    family,
    env,
    held_grids: np.ndarray,
    corpus_texts: set[str],
    samples: int = 2000,
    box: float = 3.0,
    seed: int = 0,
    held_sources: dict[str, np.ndarray] | None = None,
) -> dict:
    """The model's report (see the module docstring). ``held_sources`` maps a corpus file's
    name to a (H,) mask of its held-out levels, for the wall accuracy of each."""
    module = spec.module()
    decode = jax.jit(lambda z: module.apply(params, z, method=module.decode))
    encode = jax.jit(lambda g: module.apply(params, g, method=module.encode))
    out: dict[str, Any] = {}
    # Reconstruction of the held-out split from the posterior mean.
    mean, _ = encode(jnp.asarray(held_grids))
    logits = np.asarray(decode(mean))
    exact = np.ones(held_grids.shape[0], bool)
    for c, (name, kind) in enumerate(spec.channels):
        x, z = held_grids[..., c], logits[..., c]
        if kind == "bernoulli":
            right = (z > 0) == (x > 0.5)
            out[f"held_out_{name}_cell_accuracy"] = float(right.mean())
            exact &= right.reshape(right.shape[0], -1).all(-1)
        else:
            flat_x, flat_z = x.reshape(x.shape[0], -1), z.reshape(z.shape[0], -1)
            right = flat_x.argmax(-1) == flat_z.argmax(-1)
            out[f"held_out_{name}_accuracy"] = float(right.mean())
            exact &= right
    out["held_out_levels_exact"] = float(exact.mean())
    out["held_out_levels"] = int(held_grids.shape[0])
    if held_sources:
        wall = [c for c, (_, kind) in enumerate(spec.channels) if kind == "bernoulli"][:1]
        if wall:
            truth = held_grids[..., wall[0]] > 0.5
            right = (logits[..., wall[0]] > 0) == truth
            # The baseline: each cell's majority value over the file's held-out levels (what
            # a model that knows the generator but not the level would score).
            base = np.zeros_like(truth)
            for mask in held_sources.values():
                if mask.any():
                    base[mask] = (truth[mask].mean(0) > 0.5)[None] == truth[mask]
            out["held_out_cell_accuracy_by_file"] = {
                name: float(right[mask].mean()) for name, mask in held_sources.items() if mask.any()
            }
            out["held_out_cell_accuracy_baseline_by_file"] = {
                name: float(base[mask].mean()) for name, mask in held_sources.items() if mask.any()
            }
    # Decoded levels: from the prior, and uniform over the latent box.
    key = jax.random.key(seed)
    k_prior, k_box, k_rep = jax.random.split(key, 3)
    points = {
        "prior": jax.random.normal(k_prior, (samples, spec.latent_dim)),
        "box": jax.random.uniform(k_box, (samples, spec.latent_dim), minval=-box, maxval=box),
    }
    valid = jax.jit(jax.vmap(lambda lv: family.is_valid(env, lv)))
    metrics = jax.jit(jax.vmap(lambda lv: family.level_metrics(env, lv)))
    for where, z in points.items():
        logits = decode(z)
        raw = jax.vmap(codec.raw_level)(logits)
        repaired = jax.vmap(codec.repair)(jax.random.split(k_rep, samples), logits)
        out[f"{where}_valid_before_repair"] = float(np.asarray(valid(raw)).mean())
        out[f"{where}_valid_after_repair"] = float(np.asarray(valid(repaired)).mean())
        texts = [family.level_to_text(env, lv) for lv in family.unstack(jax.device_get(repaired))]
        out[f"{where}_novel"] = float(np.mean([t not in corpus_texts for t in texts]))
        out[f"{where}_distinct"] = len(set(texts)) / len(texts)
        m = jax.device_get(metrics(repaired))
        if "solvable" in m:
            out[f"{where}_solvable"] = float(np.mean(m["solvable"]))
    out["samples"] = samples
    out["box"] = box
    return out
