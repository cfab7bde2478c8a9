"""The contract of program spaces, for every registered family that declares one and every
named space registered for a family (picked up automatically, as ``test_contract.py`` does
for families; a named space needs its env and space options below, read from the shipped
experiment that uses it): programs sampled at every widening stage lie in its bounds,
generate valid, well-shaped levels under jit + vmap, and mutate within the stage's bounds;
descriptors have the declared shape and are finite; the program reads back by name."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from envs import programs as programs_lib
from envs.core import families, get_family
from envs.programs import Dim, ProgramSpace

NUM = 48
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
# Named spaces: the experiment whose env and space options the contract runs them with.
NAMED = {("maze", "latent"): "maze_latent_programs.yaml"}
CASES = sorted(
    [(name, "") for name, f in families().items() if f.programs is not None]
    + [(name, space) for name in families() for space in programs_lib.space_names(name)]
)
PROGRAM_FAMILIES = [f"{family}:{space}" if space else family for family, space in CASES]


def _options(family_name: str, space_name: str) -> tuple[dict, dict]:
    """``(env options, space options)`` a named space is checked with."""
    if not space_name:
        return {}, {}
    assert (family_name, space_name) in NAMED, (
        f"program space {space_name!r} of {family_name!r}: name the experiment that runs it "
        "in NAMED"
    )
    data = yaml.safe_load((EXPERIMENTS / NAMED[(family_name, space_name)]).read_text())
    options = data["curriculum"]["options"]
    assert options["program_space"] == space_name
    return data["env"]["options"], options["space_options"]


@functools.cache
def _run(case: str):
    """Programs (sampled at every stage), their mutations, levels, descriptors and validity,
    all in one jitted call per space."""
    family_name, _, space_name = case.partition(":")
    family = get_family(family_name)
    env_options, space_options = _options(family_name, space_name)
    env = family.make_env(**env_options)
    if space_name:
        space = programs_lib.space_factory(family_name, space_name)(env, **space_options)
    else:
        space = family.programs(env)
    stages = jnp.arange(NUM) % space.num_stages

    def run(key):
        k_sample, k_mutate, k_gen = jax.random.split(key, 3)
        programs = jax.vmap(space.sample_program)(jax.random.split(k_sample, NUM), stages)
        mutated = jax.vmap(space.mutate)(jax.random.split(k_mutate, NUM), programs, stages)
        both = jnp.concatenate([programs, mutated])  # one generate traced, parents + children
        levels = jax.vmap(space.generate)(jax.random.split(k_gen, 2 * NUM), both)
        valid = jax.vmap(lambda lv: family.is_valid(env, lv))(levels)
        levels = jax.tree.map(lambda x: x[:NUM], levels)
        return programs, mutated, levels, jax.vmap(space.describe)(levels), valid

    out = jax.device_get(jax.jit(run)(jax.random.key(7)))
    return family, env, space, np.asarray(stages), out


@pytest.mark.parametrize("family_name", PROGRAM_FAMILIES)
def test_program_space_is_declared_consistently(family_name):
    family, env, space, _, _ = _run(family_name)
    assert isinstance(space, ProgramSpace) and space.num_dims == len(space.dims) >= 1
    low, high = space.stage_bounds()
    assert low.shape == high.shape == (space.num_stages, space.num_dims)
    np.testing.assert_array_equal(low[-1], space.low)  # the last stage is the whole space
    np.testing.assert_array_equal(high[-1], space.high)
    e = len(space.descriptor_names)
    assert e >= 1 and len(space.descriptor_low) == len(space.descriptor_high) == e
    assert all(lo < hi for lo, hi in zip(space.descriptor_low, space.descriptor_high, strict=True))
    # The program reads back by name, every name once, in the dims' order.
    middle = 0.5 * (space.low + space.high)
    named = space.unpack(jnp.asarray(middle))
    assert tuple(named) == space.names == tuple(d.name for d in space.dims)
    np.testing.assert_array_equal(space.pack({n: float(v) for n, v in named.items()}), middle)


@pytest.mark.parametrize("family_name", PROGRAM_FAMILIES)
def test_programs_stay_in_their_stage_and_generate_valid_levels(family_name):
    family, env, space, stages, (programs, mutated, levels, descriptors, valid) = _run(family_name)
    low, high = space.stage_bounds()
    for x in (programs, mutated):
        assert x.shape == (NUM, space.num_dims) and x.dtype == np.float32
        assert np.all(x >= low[stages] - 1e-6) and np.all(x <= high[stages] + 1e-6)
        steps = np.array([d.step for d in space.dims])
        on_grid = np.isclose(np.round((x - space.low) / steps), (x - space.low) / steps)
        assert np.all(on_grid[:, space.discrete])
    assert not np.allclose(programs, mutated)  # mutation moves programs
    assert valid.all()
    example = family.example_level(env)
    for leaf, ex in zip(jax.tree.leaves(levels), jax.tree.leaves(example), strict=True):
        assert leaf.shape == (NUM, *jnp.shape(ex)) and leaf.dtype == jnp.asarray(ex).dtype
    assert descriptors.shape == (NUM, len(space.descriptor_names))
    assert descriptors.dtype == np.float32 and np.isfinite(descriptors).all()
    # Different keys, different levels: not every level is the same.
    first = jax.tree.map(lambda x: x[:1], levels)
    same = [
        np.all(x == f) for x, f in zip(jax.tree.leaves(levels), jax.tree.leaves(first), strict=True)
    ]
    assert not all(same)


def test_dims_and_stages_refuse_bad_declarations():
    with pytest.raises(ValueError, match="kind='integer'"):
        Dim("x", "integer", 0, 1)
    dims = (Dim("x", "continuous", 0.0, 1.0),)

    def space(stages):
        return ProgramSpace(dims, lambda k, p: p, lambda lv: lv, ("x",), (0.0,), (1.0,), stages)

    with pytest.raises(ValueError, match="stage 1 does not contain stage 0"):
        space(({"x": (0.0, 0.5)}, {"x": (0.6, 1.0)}))
    with pytest.raises(ValueError, match="unknown dim 'y'"):
        space(({"y": (0.0, 0.5)},))
    s = space(({"x": (0.25, 0.5)}, {}))
    np.testing.assert_allclose(np.asarray(s.bounds(jnp.int32(0))[1]), [0.5])
    np.testing.assert_allclose(np.asarray(s.bounds(jnp.int32(9))[1]), [1.0])  # clipped stage
