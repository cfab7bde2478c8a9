"""Editor combinators shared by every family: a weighted menu and repeated edits."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import chex
import jax
import jax.numpy as jnp

from envs.core import Editor, EditSpec, Level


def menu(entries: Mapping[str, tuple[EditSpec, float]]) -> Editor:
    """Builds an editor that picks one named edit by weight among those feasible now.

    Args:
        entries: name -> (EditSpec, weight). Weights must be >= 0 and not all zero.

    Returns:
        ``(key, level) -> level``. When no entry is feasible the level is returned unchanged.
    """
    if not entries:
        raise ValueError("an editor menu needs at least one editor")
    names = sorted(entries)
    for name in names:
        weight = entries[name][1]
        if weight < 0:
            raise ValueError(f"editor {name!r} has negative weight {weight}; weights must be >= 0")
    if all(entries[n][1] == 0 for n in names):
        raise ValueError(f"editor weights are all zero: {dict((n, entries[n][1]) for n in names)}")
    specs = [entries[n][0] for n in names]
    weights = jnp.asarray([entries[n][1] for n in names], dtype=jnp.float32)

    def edit(key: chex.PRNGKey, level: Level) -> Level:
        choose_key, edit_key = jax.random.split(key)
        feasible = jnp.stack([spec.feasible(level) for spec in specs])
        w = weights * feasible
        total = w.sum()
        idx = jax.random.choice(choose_key, len(specs), p=w / jnp.maximum(total, 1e-12))
        branches = [lambda k, lv, s=s: s.edit(k, lv) for s in specs]
        edited = jax.lax.switch(idx, branches, edit_key, level)
        return jax.tree.map(lambda e, o: jnp.where(total > 0, e, o), edited, level)

    return edit


def repeat(editor: Editor, max_edits: int) -> Callable[[chex.PRNGKey, Level, chex.Array], Level]:
    """Applies ``editor`` a traced number of times ``n <= max_edits`` (static maximum)."""
    if max_edits < 0:
        raise ValueError(f"max_edits must be >= 0, got {max_edits}")

    def edit_n(key: chex.PRNGKey, level: Level, n: chex.Array) -> Level:
        keys = jax.random.split(key, max(max_edits, 1))

        def body(i, lv):
            new = editor(keys[i], lv)
            return jax.tree.map(lambda a, b: jnp.where(i < n, a, b), new, lv)

        return jax.lax.fori_loop(0, max_edits, body, level)

    return edit_n
