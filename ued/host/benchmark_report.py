"""The benchmark's tables: a row per measurement, and the seed-scaling summary (per
curriculum, the per-seed throughput at each seed count and its ratio to one seed's, beside
DR's; see ``scripts/benchmark.py``'s docstring).

Used by the parent process only, which never starts JAX; the workers (``ued/host/benchmarking.py``)
never import it, so a ``--compare-ref`` checkout older than this module is measured all the
same.
"""

from __future__ import annotations

import numpy as np


def fmt(x, spec=".0f") -> str:
    """``x`` formatted, ``-`` for a missing figure."""
    return "-" if x is None else format(x, spec)


def side_of(row: dict) -> str:
    """``before`` (the ``--compare-ref`` checkout), ``after`` (this checkout, compared) or
    ``this`` (this checkout, nothing to compare with)."""
    return row.get("side", "this")


def mode_of(row: dict) -> str:
    """How the seeds ran: ``vmap``/``sequential`` (``-`` for one seed, unless measured in
    a ``--interleave`` group, whose mode it then has)."""
    if row["summary"]["num_seeds"] <= 1:
        return row.get("group") or "-"
    if side_of(row) == "before":
        return "vmap"  # the code before run.seed_mode always vmapped its seeds
    return row["result"].get("seed_mode") or row["summary"].get("seed_mode") or "?"


def print_table(rows: list[dict], header: bool = True) -> None:
    """One line per measurement (its error, for a failed one); with ``header``, the column
    names first and the run's float32 matmul rate last."""
    head = (
        f"{'curriculum':<11} {'side':<6} {'envs':>5} {'cap':>5} {'dev':>3} {'seed':>4} "
        f"{'mode':<10} {'compile':>7} {'warm':>5} {'sps mix':>8} {'sps/seed':>8} "
        f"{'by step kind':<34} {'GFLOP/s':>7} {'%mm':>4} {'peak MB':>8}"
    )
    if header:
        print(head)
    for r in rows:
        s, res = r["summary"], r["result"]
        if "error" in res:
            where = f"{s['curriculum']:<11} {side_of(r):<6} {s['num_envs']:>5}"
            print(f"{where} error: {res['error'][:100]}")
            continue
        c, w = res["compile"], res.get("warm", {})
        cold = c["trace_seconds"] + c["compile_seconds"]
        warm = w.get("trace_seconds", 0) + w.get("compile_seconds", 0) if w else None
        branches = " ".join(f"{k}={v:.0f}" for k, v in res["sps"].items() if k != "mix")
        mem = res["memory"]
        peak = mem.get("device_peak_bytes", mem.get("host_peak_rss_bytes"))
        per_seed = res["sps"]["mix"] / max(1, s["num_seeds"])
        print(
            f"{s['curriculum']:<11} {side_of(r):<6} {s['num_envs']:>5} "
            f"{fmt(s['capacity'], 'd'):>5} {s['devices']:>3} {s['num_seeds']:>4} "
            f"{mode_of(r):<10} {cold:>6.1f}s {fmt(warm, '.1f'):>4}s "
            f"{res['sps']['mix']:>8.0f} {per_seed:>8.0f} {branches:<34} "
            f"{res['achieved_gflops']:>7.1f} {100 * res['fraction_of_matmul']:>3.0f}% "
            f"{peak / 2**20:>8.0f}"
        )
    if header and rows and "matmul_gflops" in rows[0]["result"]:
        r = rows[0]["result"]
        where = f"{r['backend']} ({r['device_kind']})"
        rates = [x["result"]["matmul_gflops"] for x in rows if "matmul_gflops" in x["result"]]
        print(
            f"float32 matmul: {np.median(rates):.0f} GFLOP/s on {where} (median of the run's "
            f"{len(rates)} measurements, {min(rates):.0f}-{max(rates):.0f})"
        )


def seed_scaling(rows: list[dict]) -> list[dict]:
    """Per (curriculum, envs, devices, side, mode): per-seed throughput by seed count, and
    the ratio of the most seeds' per-seed throughput to one seed's (needs a 1-seed row).

    ``ratio_mm`` is the same ratio of per-seed throughput divided by the matmul rate each
    measurement took right after its timed steps: on a machine shared with other work it
    corrects for the load that the measurements did not share."""
    groups: dict[tuple, dict[int, tuple[float, float]]] = {}
    single: dict[tuple, tuple[float, float]] = {}
    for r in rows:
        s, res = r["summary"], r["result"]
        if "error" in res:
            continue
        per_seed = res["sps"]["mix"] / max(1, s["num_seeds"])
        figures = (per_seed, per_seed / res.get("matmul_gflops", float("nan")))
        base = (s["curriculum"], s["num_envs"], s["capacity"], s["devices"], side_of(r))
        if s["num_seeds"] == 1:  # the baseline of its --interleave group, or of every mode
            single[(*base, r.get("group"))] = figures
        else:
            groups.setdefault((*base, mode_of(r)), {})[s["num_seeds"]] = figures
    out = []
    for key, by_seeds in groups.items():
        one = single.get(key, single.get((*key[:-1], None)))
        if one is None:
            continue
        top = max(by_seeds)
        out.append(
            {
                "curriculum": key[0],
                "num_envs": key[1],
                "capacity": key[2],
                "devices": key[3],
                "side": key[4],
                "mode": key[5],
                "sps_per_seed": {1: one[0], **{n: v[0] for n, v in sorted(by_seeds.items())}},
                "ratio": by_seeds[top][0] / one[0],
                "ratio_mm": by_seeds[top][1] / one[1],
                "ratio_seeds": top,
            }
        )
    # Relative to DR's ratio of the same side, mode and sizes.
    for name in ("ratio", "ratio_mm"):
        dr = {
            (o["side"], o["mode"], o["num_envs"], o["devices"], o["ratio_seeds"]): o[name]
            for o in out
            if o["curriculum"] == "dr"
        }
        for o in out:
            ref = dr.get((o["side"], o["mode"], o["num_envs"], o["devices"], o["ratio_seeds"]))
            o[name.replace("ratio", "vs_dr")] = o[name] / ref if ref else None
    order = {"before": 0, "after": 1, "this": 1}
    return sorted(out, key=lambda o: (o["num_envs"], o["devices"], order.get(o["side"], 2),
                                      o["mode"], o["curriculum"]))  # fmt: skip


def print_seed_scaling(table: list[dict]) -> None:
    """``seed_scaling``'s table; nothing when it is empty."""
    if not table:
        return
    counts = sorted({n for o in table for n in o["sps_per_seed"]})
    cols = " ".join(f"{f'{n} seed' + ('s' if n > 1 else ''):>9}" for n in counts)
    print(
        "\nseed scaling: student env steps/s per seed; ratio = most seeds / 1 seed "
        "(ratio mm: each figure over its measurement's matmul rate)"
    )
    head = f"{'curriculum':<11} {'side':<6} {'mode':<10} {'envs':>5}"
    print(f"{head} {cols} {'ratio':>6} {'vs DR':>6} {'ratio mm':>8} {'vs DR':>6}")
    for o in table:
        vals = " ".join(f"{fmt(o['sps_per_seed'].get(n)):>9}" for n in counts)
        print(
            f"{o['curriculum']:<11} {o['side']:<6} {o['mode']:<10} {o['num_envs']:>5} {vals} "
            f"{o['ratio']:>6.2f} {fmt(o['vs_dr'], '.2f'):>6} {o['ratio_mm']:>8.2f} "
            f"{fmt(o['vs_dr_mm'], '.2f'):>6}"
        )
