"""Which levels a curriculum's training could produce at all: the support of its generators.

An out-of-distribution set says something about a curriculum only next to whether the
curriculum could have trained on such levels. ``producible`` answers that per level, from
the experiment's config, by the level's size and wall count in the *training* grid (a
smaller level is padded with walls, as the env shows it to the agent):

- what a curriculum declares (``ued.curricula.base.Support``, registered with it) says
  where its levels come from;
- the generator's levels (DR, PLR, Robust PLR, SFL's samples): for ``random_walls`` exactly
  ``num_walls`` walls (or ``min_walls``..``num_walls``; with replacement 0..``num_walls``),
  on the full grid; ``empty_room``: no wall; ``perfect_maze``: a perfect maze (free cells
  form a tree) of the generator's size;
- edits (ACCEL): anything its editors can reach from its start levels: with editors that
  add and remove walls (``add_wall`` and ``remove_wall``, ``flip_wall``, ``set_cell``),
  every level that fits; otherwise its start levels' support;
- a builder (PAIRED): at most the builder's ``num_walls`` walls;
- programs: levels whose used area is an odd square (the program's ``size``) that fits;
  clutter makes any wall layout of that size possible.

A level larger than the training grid is producible by none. Families other than the maze
are not analysed (``None``). This is support, not probability: DR can produce a perfect maze
of 40 walls only if its generator draws 40 walls, which ``random_walls: 12`` never does;
ACCEL can reach it, but only through many edits the buffer keeps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ued.curricula import support_of

WALL_EDITORS = ({"add_wall", "remove_wall"}, {"flip_wall"}, {"set_cell"})
DEFAULT_EDITORS = {"add_wall", "remove_wall", "flip_wall"}  # ACCEL's on the maze
DEFAULT_BUILDER_WALLS = 60  # the maze builder's num_walls default


def _levels_np(levels) -> dict[str, np.ndarray]:
    return {k: np.asarray(getattr(levels, k)) for k in ("wall_map", "width", "height")}


def _is_tree(free: np.ndarray) -> bool:
    """Whether the free cells form a tree (connected, edges = cells - 1)."""
    cells = int(free.sum())
    if cells == 0:
        return False
    edges = int((free[:, 1:] & free[:, :-1]).sum() + (free[1:] & free[:-1]).sum())
    if edges != cells - 1:
        return False
    ys, xs = np.nonzero(free)
    seen, stack = {(ys[0], xs[0])}, [(ys[0], xs[0])]
    while stack:
        y, x = stack.pop()
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            ny, nx = y + dy, x + dx
            inside = 0 <= ny < free.shape[0] and 0 <= nx < free.shape[1]
            if inside and free[ny, nx] and (ny, nx) not in seen:
                seen.add((ny, nx))
                stack.append((ny, nx))
    return len(seen) == cells


def _generator_support(name: str, options: dict, n: int):
    """(level -> bool, description) for a maze generator on an n x n training grid."""
    if name == "random_walls":
        hi = int(options.get("num_walls", 25))
        lo = options.get("min_walls")
        if options.get("with_replacement"):
            lo = 0 if lo is None else int(lo)
        lo = hi if lo is None else int(lo)
        text = f"{hi} walls" if lo == hi else f"{lo}-{hi} walls"
        return (lambda walls, used: lo <= walls.sum() <= hi and used == (n, n)), text
    if name == "empty_room":
        return (lambda walls, used: walls.sum() == 0 and used == (n, n)), "no walls"
    if name == "perfect_maze":
        size = int(options.get("size") or (n if n % 2 else n - 1))

        def perfect(walls, used):
            return used == (size, size) and _is_tree(~walls[:size, :size])

        return perfect, f"{size}x{size} perfect mazes"
    return None, f"generator {name}"


def _used_area(wall_map: np.ndarray, width: int, height: int) -> tuple[int, int]:
    """(width, height) of the area a level uses: its own size, less trailing wall rows and
    columns (the padding of a smaller level, written or not)."""
    area = wall_map[:height, :width]
    free_cols = np.flatnonzero(~area.all(axis=0))
    free_rows = np.flatnonzero(~area.all(axis=1))
    if free_cols.size == 0 or free_rows.size == 0:
        return 0, 0
    return int(free_cols[-1]) + 1, int(free_rows[-1]) + 1


def _support_test(support, cfg, n: int):
    """(level -> bool, description) for what ``support`` declares, on an n x n grid."""
    gen_test, gen_text = _generator_support(cfg.env.generator, cfg.env.generator_options, n)
    if support.kind == "edits":
        editors = set(support.editors or DEFAULT_EDITORS)
        if any(group <= editors for group in WALL_EDITORS):
            return (lambda walls, used: True), "any that fits (edits add and remove walls)"
        if support.start is not None:
            return _generator_support(support.start, {}, n)
        return gen_test, gen_text
    if support.kind == "builder":
        limit = int(support.builder.get("num_walls", DEFAULT_BUILDER_WALLS))

        def test(walls, used, limit=limit):
            return walls.sum() <= limit

        return test, f"at most {limit} walls (the builder's)"
    if support.kind == "programs":

        def test(walls, used):
            return used[0] == used[1] and used[0] % 2 == 1

        return test, "odd square sizes (the program space)"
    return gen_test, gen_text


def producible(cfg, levels) -> dict[str, Any] | None:
    """``{"levels": k, "of": L, "how": text}``: how many of ``levels`` (a batched maze
    level, any ``max_size``) the experiment ``cfg``'s training could produce (see the module
    docstring); None for another family."""
    if cfg.env.family != "maze":
        return None
    n = int(cfg.env.options.get("max_size", 13))
    lv = _levels_np(levels)
    count = lv["wall_map"].shape[0]
    name = cfg.curriculum.name
    support = support_of(name, dict(cfg.curriculum.options))
    if support is None:
        return {"levels": None, "of": count, "how": f"curriculum {name}: not analysed"}
    test, how = _support_test(support, cfg, n)
    if test is None:
        return {"levels": None, "of": count, "how": f"{how}: not analysed"}
    ok, too_big = 0, 0
    for i in range(count):
        width, height = int(lv["width"][i]), int(lv["height"][i])
        if max(width, height) > n:
            too_big += 1
            continue
        walls = np.ones((n, n), bool)  # the training grid, padding as walls
        area = lv["wall_map"][i][:height, :width]
        walls[:height, :width] = area
        used = _used_area(walls, n, n)
        ok += bool(test(walls, used))
    if too_big == count:
        how = f"larger than the {n}x{n} training grid"
    elif too_big:
        how = f"{how}; {too_big} larger than the {n}x{n} training grid"
    return {"levels": ok, "of": count, "how": how}
