"""Level files are read in linear time: a benchmark of 10 MB files (at least 10 MB/s of CPU
time, on a shared 2-core machine), the fast batched path against the level-by-level one,
and the file's own line numbers in errors however far down the level is."""

import time

import jax
import numpy as np
import pytest

from envs.core import get_family

MB = 2**20
MIN_MB_PER_S = 10.0  # the floor; about 25 (maze) and 20 (cartpole) when measured


def maze_file(path, size_mb, side=9, seed=0):
    """A held-out file as make_levels.py writes it: comment lines, then each level."""
    rng = np.random.default_rng(seed)
    parts, total, i = [], 0, 0
    while total < size_mb * MB:
        grid = np.where(rng.random((side, side)) < 0.2, "#", ".")
        grid[0, 0], grid[-1, -1] = ">", "G"
        text = f"; name: l{i}\n; shortest_path: 16\n" + "\n".join("".join(r) for r in grid)
        parts.append(text + "\n\n")
        total += len(parts[-1])
        i += 1
    path.write_text("".join(parts))
    return i


def throughput(family, env, path):
    """MB per CPU second of ``read_levels`` (CPU time: a busy machine does not skew it)."""
    best = 0.0
    for _ in range(2):
        start = time.process_time()
        levels = family.read_levels(env, path, max_levels=10**7)
        best = max(best, path.stat().st_size / MB / (time.process_time() - start))
    return best, levels


def same(a, b):
    return all(
        np.array_equal(x, y) and np.asarray(x).dtype == np.asarray(y).dtype
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_a_10_mb_maze_file_reads_at_10_mb_per_second(tmp_path):
    maze = get_family("maze")
    env = maze.make_env(max_size=9)
    path = tmp_path / "big.txt"
    count = maze_file(path, 10)
    speed, levels = throughput(maze, env, path)
    assert levels.wall_map.shape == (count, 9, 9)
    assert speed >= MIN_MB_PER_S, f"{speed:.1f} MB/s"


def test_a_10_mb_cartpole_file_reads_at_10_mb_per_second(tmp_path):
    cartpole = get_family("cartpole")
    env = cartpole.make_env()
    rng = np.random.default_rng(0)
    lines, total = [], 0
    while total < 10 * MB:
        g, m = rng.uniform(5, 15), rng.uniform(0.5, 2)
        lines.append(f"gravity={g:.3f} cart_mass={m:.3f}\n\n")
        total += len(lines[-1])
    path = tmp_path / "physics.txt"
    path.write_text("".join(lines))
    speed, levels = throughput(cartpole, env, path)
    assert levels.gravity.shape == (len(lines),)
    assert speed >= MIN_MB_PER_S, f"{speed:.1f} MB/s"


EXTRA = {  # levels the fast path leaves to level_from_text (indented, CRLF), and plain ones
    "maze": ">.#\n..G\n\n  G..\n  ..>\n\n.G\r\n^.\r\n\n" + "v......\n......G\n",
    "cartpole": "gravity=12 # strong\n\ncart_mass=2\npole_mass=0.2\n\n; note\nforce_mag=7\n",
}


@pytest.mark.parametrize("name", ["maze", "cartpole"])
def test_the_fast_path_gives_exactly_the_levels_one_by_one(tmp_path, name):
    import dataclasses

    family = get_family(name)
    env = family.make_env(max_size=7) if name == "maze" else family.make_env()
    path = tmp_path / "levels.txt"
    if name == "maze":
        maze_file(path, 0.05, side=5)
    text = (path.read_text() if path.exists() else "") + EXTRA[name]
    path.write_text(text)
    fast = family.read_levels(env, path)
    assert same(fast, dataclasses.replace(family, levels_from_rows=None).read_levels(env, path))
    blocks = [b for b in text.replace("\r", "").split("\n\n") if b.strip()]
    texts = ["\n".join(ln for ln in b.splitlines() if not ln.startswith(";")) for b in blocks]
    by_text = family.stack([family.level_from_text(env, t) for t in texts])
    assert same(jax.device_get(by_text), fast)


def test_an_error_far_down_a_big_file_names_its_line(tmp_path):
    maze = get_family("maze")
    env = maze.make_env(max_size=9)
    path = tmp_path / "big.txt"
    count = maze_file(path, 2)
    lines = path.read_text().count("\n")
    with path.open("a") as f:
        f.write("; the bad one\n>..\n.X.\n..G\n")
    start = time.process_time()
    with pytest.raises(ValueError) as err:
        maze.read_levels(env, path, max_levels=10**7)
    assert time.process_time() - start < 5
    message = str(err.value)
    assert f"level {count + 1} (starting on line {lines + 2}): " in message
    assert f"line {lines + 3}, column 2: unknown character 'X'" in message


def test_a_level_of_many_megabytes_is_refused_without_parsing_it(tmp_path):
    from envs.core import MAX_LEVEL_BYTES

    maze = get_family("maze")
    path = tmp_path / "one_block.txt"
    path.write_text(".\n" * (MAX_LEVEL_BYTES // 2 + 10))
    with pytest.raises(ValueError, match="the level starting on line 1 is over 1 MiB"):
        maze.read_levels(maze.make_env(max_size=9), path)
