"""The configurations a benchmark run measures: the sweep ``scripts/benchmark.py`` plans
from its options (see its docstring), one worker spec per configuration.

Used by the parent process only, which never starts JAX; the workers (``ued/host/benchmarking.py``)
never import it, so a ``--compare-ref`` checkout older than this module is measured all the
same.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path


def split_list(text: str | None, cast=str, name: str = "") -> list:
    """A comma-separated option as a list; a ValueError naming the option for a bad entry."""
    if text is None or text.lower() == "none":
        return []
    out = []
    for x in (x for x in text.split(",") if x):
        try:
            out.append(cast(x))
        except ValueError:
            kind = "an integer" if cast is int else f"a {cast.__name__}"
            raise ValueError(f"--{name} {text!r}: {x!r} is not {kind}") from None
        if cast is int and out[-1] < 1:
            raise ValueError(f"--{name} {text!r}: every entry must be >= 1")
    return out


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Overrides for every configuration, and ``NAME:key=value`` ones by curriculum."""
    common, by_curriculum = [], {}
    for item in overrides:
        head, _, rest = item.partition(":")
        if rest and "=" in rest and "=" not in head and "." not in head:
            by_curriculum.setdefault(head, []).append(rest)
        else:
            common.append(item)
    return common, by_curriculum


def train_specs(args, experiment: str, overrides: list[str]) -> list[dict]:
    """A ``train`` worker spec per configuration of the sweep ``args`` asks for (the product
    of its lists, a configuration met twice measured once), each with its summary and its
    validated config; a ``ConfigError`` or ``ValueError`` naming a bad option."""
    from ued.config import config as config_lib
    from ued.curricula import CURRICULA, options_of, parse_options

    overrides, own = split_overrides(overrides)
    curricula = split_list(args.curricula) or sorted(CURRICULA)
    unknown = [c for c in curricula if not c.endswith(".yaml") and c not in CURRICULA]
    if unknown:
        raise config_lib.ConfigError(
            f"--curricula: unknown curriculum {unknown[0]!r}; one of {sorted(CURRICULA)} or "
            "an experiment .yaml file"
        )
    envs = split_list(args.num_envs, int, "num-envs") or [None]
    caps = split_list(args.capacity, int, "capacity") or [None]
    devs = split_list(args.devices, int, "devices") or [1]
    seeds = split_list(args.num_seeds, int, "num-seeds") or [None]
    modes = split_list(getattr(args, "seed_mode", None)) or [None]
    bad = [m for m in modes if m not in (None, "vmap", "sequential", "auto")]
    if bad:
        raise ValueError(f"--seed-mode: {bad[0]!r} is not one of vmap, sequential, auto")
    specs, seen = [], set()
    product = itertools.product(curricula, envs, caps, devs, seeds, modes)
    for cur, n, cap, dev, s, mode in product:
        # Absolute: workers run in the measured checkout's folder.
        path = str(Path(cur if cur.endswith(".yaml") else experiment).resolve())
        extra = []
        name = config_lib.load(path, overrides, options_of).curriculum.name
        if not cur.endswith(".yaml") and name != cur:
            # Another curriculum than the file's: its own default options.
            extra = [f"curriculum.name={cur}", "curriculum.options={}"]
            name = cur
        extra += own.get(name, [])
        extra += [f"ppo.num_envs={n}"] * (n is not None) + [f"run.num_seeds={s}"] * (s is not None)
        extra += [f"run.devices={dev}", "eval.levels=none", "run.progress=false"]
        if mode is not None and (s or 1) > 1:  # one seed has no mode: measured once
            extra.append(f"run.seed_mode={mode}")
        cfg = config_lib.load(path, overrides + extra, options_of)
        buffer = getattr(parse_options(cfg.curriculum.name, cfg.curriculum.options), "buffer", None)
        if buffer is None:
            cap = None
        if cap is not None:
            extra.append(f"curriculum.options.buffer.capacity={cap}")
        if not args.keep_min_fill and buffer is not None:
            fill = min(buffer.min_fill_ratio, 2 * cfg.ppo.num_envs / (cap or buffer.capacity))
            extra.append(f"curriculum.options.buffer.min_fill_ratio={fill:.6g}")
        cfg = config_lib.load(path, overrides + extra, options_of)  # validates the final config
        buffer = getattr(parse_options(cfg.curriculum.name, cfg.curriculum.options), "buffer", None)
        key = json.dumps(config_lib.to_dict(cfg), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        specs.append(
            {
                "kind": "train",
                "experiment": path,
                "overrides": overrides + extra,
                "devices": dev,
                "warmup": args.warmup,
                "updates": args.updates,
                "repeats": getattr(args, "repeats", 1),
                "summary": {
                    "curriculum": cfg.curriculum.name,
                    "num_envs": cfg.ppo.num_envs,
                    "num_steps": cfg.ppo.num_steps,
                    "capacity": buffer.capacity if buffer is not None else None,
                    "devices": dev,
                    "num_seeds": cfg.run.num_seeds,
                    "seed_mode": cfg.run.seed_mode if cfg.run.num_seeds > 1 else None,
                    "bench_min_fill_ratio": buffer.min_fill_ratio if buffer is not None else None,
                },
                "config": config_lib.to_dict(cfg),
            }
        )
    return specs


def interleave_groups(specs: list[dict]) -> dict[tuple, list[dict]]:
    """``--interleave``: the specs grouped by everything but the seed count, per seed mode;
    the 1-seed spec of a configuration opens each of its modes' groups."""
    singles, groups = {}, {}
    for spec in specs:
        s = spec["summary"]
        key = (spec["experiment"], s["curriculum"], s["num_envs"], s["capacity"], s["devices"])
        if s["num_seeds"] == 1:
            singles[key] = spec
        else:
            groups.setdefault((*key, s.get("seed_mode") or "auto"), []).append(spec)
    out = {}
    for key, members in groups.items():
        members = sorted(members, key=lambda g: g["summary"]["num_seeds"])
        out[key] = [singles[key[:-1]], *members] if key[:-1] in singles else members
    for key, spec in singles.items():  # a configuration measured with one seed only
        if not any(k[:-1] == key for k in groups):
            out[(*key, "-")] = [spec]
    return out
