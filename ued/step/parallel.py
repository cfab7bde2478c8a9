"""Seeds in one program, devices and hosts: the train step vmapped and sharded.

``make_runner(exp, cfg)`` returns a ``Runner`` that the host driver uses instead of calling
``exp.init`` / ``exp.run_chunk`` directly::

    parallel.initialize_distributed()          # first thing, before any JAX computation
    parallel.configure_host_devices(cfg)       # CPU only: one XLA device per core
    exp = build(cfg)
    runner = parallel.make_runner(exp, cfg)    # ConfigError for a batch the devices cannot split
    state = runner.init(runner.seed_keys(cfg.run.seed))
    run_chunk = runner.compile(state, chunk)   # one program for every chunk of <= `chunk` updates
    state, metrics = run_chunk(state, jnp.int32(active))
    runner.updates(state)                      # int, updates done (the same for every seed)

**Seeds** (``run.num_seeds = S > 1``): S independent runs (students, buffers, keys) in one
compiled program. Every leaf of the state and of the metrics gets a leading seed axis
(metrics: (S, K) for a chunk of K updates). Seed ``i`` starts from ``PRNGKey(run.seed + i)``
and shares the run's *schedule* (``ued.core.schedule``): the update count, passed unbatched, and
the schedule key of each update, ``fold_in(schedule_base(run.schedule_seed), t)``
(``run.schedule_seed`` defaults to ``run.seed``), from which curricula draw the decisions
the seeds share (PLR's replay-or-new coin). ``run.seed_mode`` says how the seeds run:

- ``vmap``: the chunk is ``vmap``-ed over the seed axis (``axis_name="seed"``). Branches
  stay branches: a decision on the update count or the schedule key is unbatched, and one
  on per-seed state runs its branch when some seed needs it (``Schedule.cond``/``switch``).
- ``sequential``: a ``fori_loop`` over the seeds runs the single-seed chunk on each in turn
  (the state keeps its seed axis; the mesh puts every device on the env axis).
- ``auto`` (the default): ``vmap`` on a GPU or TPU, ``sequential`` on a CPU, where vmapped
  seeds ran slower than the same seeds one after another (README "Speed").

What holds exactly (tested in ``tests/ued/test_seeds.py``): seed ``i`` of a run takes the same
decisions at every update (levels' kinds, replays, refreshes, gradient steps) as the
single-seed run with ``run.seed + i`` and ``run.schedule_seed = run.seed``; with
``seed_mode=sequential`` it equals that run bit for bit, with ``vmap`` its floats agree to
rounding (XLA sums the batched PPO update in another order, about 1e-9 after one update).
A single-seed run is the ``S = 1`` case: its schedule seed is its own ``run.seed``.

**Devices**: a ``jax.sharding.Mesh`` of ``run.devices`` devices (0 = all), with axes
``("seed", "env")``. With one seed, every device is on ``"env"``: each rollout's env batch
(``ppo.num_envs``) is split over the devices (``Experiment.with_batch_sharding`` constrains the
levels; XLA's SPMD partitioner propagates that through the rollout, GAE and the PPO loss),
while parameters, optimiser state, the level buffer and the keys are replicated. The gradient
is a mean over envs, so each device sums its share and XLA adds the partial sums (an
all-reduce) before the optimiser step: every device applies the same update and the replicas
stay identical. With S seeds, ``gcd(S, D)`` devices go on ``"seed"`` (whole seeds per device,
no communication between them) and the rest on ``"env"``. The same config runs on 1 or N
devices and gives the same result up to float summation order. We use ``jax.jit`` with
sharding annotations rather than ``shard_map``: the train step stays one plain function,
every curriculum (whose buffer updates gather levels from all envs) works unchanged, and XLA
places the collectives.

**Hosts**: run one process per host with the same command; ``initialize_distributed`` calls
``jax.distributed.initialize`` when the environment says so, after which ``jax.devices()``
lists the devices of every host and the mesh spans them all. Every process runs the same
program on its share of the batch; metrics come back replicated so every host can read them
(log and checkpoint from ``jax.process_index() == 0``). Launching:

- GPU cluster, by hand (or from any scheduler), on each of the N hosts::

      JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N JAX_PROCESS_ID=<0..N-1> \\
          python scripts/train.py experiments/maze_dr.yaml ppo.num_envs=<multiple of devices>

  (optionally ``JAX_LOCAL_DEVICE_IDS=0,1,...`` to pick a host's GPUs).
- SLURM or Open MPI: ``UED_DISTRIBUTED=auto srun python scripts/train.py ...`` (or
  ``mpirun``): JAX reads the process layout from the scheduler.
- Cloud TPU pod slice: ``gcloud compute tpus tpu-vm ssh NAME --worker=all --command
  "UED_DISTRIBUTED=auto python scripts/train.py ..."``; JAX finds the pod's hosts itself.

``ppo.num_envs`` (or ``run.num_seeds``) must be divisible by the number of devices in total.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ued.config.config import Config, ConfigError
from ued.step.experiment import Experiment, TrainState

SEED, ENV = "seed", "env"
SEED_MODES = ("auto", "vmap", "sequential")
ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")

_DISTRIBUTED = False


def initialize_distributed() -> bool:
    """Starts ``jax.distributed`` when the environment asks for it; True if it did.

    - ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and
      ``JAX_PROCESS_ID`` set: one process of an explicitly described cluster.
    - ``UED_DISTRIBUTED=auto``: let JAX detect the cluster (Cloud TPU, SLURM, Open MPI).
    - otherwise: a single process; nothing happens.

    Must run before any JAX computation; calling it again is a no-op.
    """
    global _DISTRIBUTED
    if _DISTRIBUTED:
        return True
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        missing = [k for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if k not in os.environ]
        if missing:
            raise ConfigError(f"JAX_COORDINATOR_ADDRESS is set but {missing} are not")
        jax.distributed.initialize(
            coordinator_address=address,
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    elif os.environ.get("UED_DISTRIBUTED", "").lower() in ("1", "auto", "true"):
        jax.distributed.initialize()
    else:
        return False
    _DISTRIBUTED = True
    return True


def host_device_count(batch: int, cores: int | None = None) -> int:
    """How many CPU devices to split one host into for a batch of ``batch`` envs (x seeds):
    the largest divisor of ``batch`` that is at most the number of usable cores."""
    if cores is None:
        usable = getattr(os, "sched_getaffinity", None)
        cores = len(usable(0)) if usable else os.cpu_count() or 1
    cores = max(1, cores)
    return max(d for d in range(1, min(batch, cores) + 1) if batch % d == 0)


def configure_host_devices(cfg: Config, cores: int | None = None) -> int | None:
    """Splits the CPU into several XLA host devices, one per core, before JAX starts.

    On a CPU the rollout and the LSTM's loops are chains of small operations that one XLA
    device runs one after another on one core; with one host device per core, each device
    runs its share of the env batch on its own core (measured on a 2-core machine: 8.2k ->
    11.4k env steps/s on the standard maze). Call it first thing (before any JAX
    computation); it sets JAX's ``jax_num_cpu_devices`` unless
    ``--xla_force_host_platform_device_count`` is already in ``XLA_FLAGS``, JAX's backends
    are already up (JAX then refuses the setting), ``run.devices`` is nonzero, or
    ``JAX_PLATFORMS`` excludes the CPU. Only the host (CPU) platform is affected: on a GPU
    or TPU machine the accelerators stay the devices. Returns the count set, or None.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if (
        cfg.run.devices
        or "xla_force_host_platform_device_count" in flags
        or (platforms and "cpu" not in platforms.split(","))
    ):
        return None
    count = host_device_count(cfg.ppo.num_envs * cfg.run.num_seeds, cores)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # backends already initialised: too late to change the count
        return None
    return count


def select_devices(requested: int) -> list:
    """The first ``requested`` devices (all of them, on every host, for 0)."""
    devices = jax.devices()
    if requested < 0:
        raise ConfigError(f"run.devices must be >= 0, got {requested}")
    if requested > len(devices):
        raise ConfigError(
            f"run.devices={requested} but only {len(devices)} {devices[0].platform} devices "
            "are visible"
        )
    if requested and jax.process_count() > 1 and requested != len(devices):
        raise ConfigError(
            f"run.devices={requested}: a multi-host run uses every device ({len(devices)})"
        )
    return devices[: requested or len(devices)]


def mesh_shape(num_devices: int, num_seeds: int, num_envs: int) -> tuple[int, int]:
    """(seed, env) axis sizes; raises ConfigError, naming the keys, if no split works."""
    seed_axis = math.gcd(num_seeds, num_devices) if num_seeds > 1 else 1
    env_axis = num_devices // seed_axis
    if num_envs % env_axis:
        if num_seeds > 1:
            hint = (
                f"with run.num_seeds={num_seeds}, {seed_axis} device(s) take whole seeds and "
                f"the other factor {env_axis} must divide ppo.num_envs={num_envs}; make "
                f"run.num_seeds or ppo.num_envs a multiple of {num_devices}"
            )
        else:
            hint = f"make ppo.num_envs a multiple of {num_devices}"
        raise ConfigError(
            f"ppo.num_envs={num_envs} cannot be split over {num_devices} devices: {hint}, or "
            f"set run.devices to a divisor of ppo.num_envs (run.devices=0 means all devices)"
        )
    return seed_axis, env_axis


def resolve_seed_mode(mode: str, num_seeds: int, backend: str | None = None) -> tuple[str, str]:
    """``(mode, why)``: ``"vmap"`` or ``"sequential"`` for ``run.seed_mode=mode``, and the
    reason in words (printed by the run). ``auto`` takes ``vmap`` on a GPU or TPU and
    ``sequential`` on a CPU (measured there: vmapped seeds ran slower than the same seeds one
    after another, README "Speed")."""
    if mode not in SEED_MODES:
        raise ConfigError(f"run.seed_mode={mode!r} is not one of {list(SEED_MODES)}")
    if num_seeds <= 1:
        return "vmap", "one seed"
    if mode != "auto":
        return mode, f"run.seed_mode={mode}"
    backend = backend or jax.default_backend()
    if backend in ACCELERATORS:
        return "vmap", f"auto: vmap on {backend}"
    return "sequential", f"auto: sequential on {backend} (vmapped seeds are slower there)"


class CompiledChunk:
    """A compiled chunk program with the schedule's base key bound: call it as
    ``run(state, jnp.int32(active))``; other attributes (``as_text``, ``memory_analysis``)
    are the compiled program's."""

    def __init__(self, compiled, base):
        self.compiled, self.base = compiled, base

    def __call__(self, state, active):
        return self.compiled(state, active, self.base)

    def __getattr__(self, name):
        return getattr(self.compiled, name)


@dataclasses.dataclass(frozen=True)
class Runner:
    """The train step for ``num_seeds`` seeds on ``mesh``; see the module docstring."""

    exp: Experiment
    num_seeds: int
    mesh: Mesh
    seed_mode: str = "vmap"  # "vmap" or "sequential" (resolved, see resolve_seed_mode)
    seed_mode_reason: str = ""

    @property
    def seeded(self) -> bool:
        return self.num_seeds > 1

    def describe_seeds(self) -> str:
        """How the seeds run, in words, e.g. ``"3 seeds, sequential (auto: ...)"``."""
        if not self.seeded:
            return "1 seed"
        return f"{self.num_seeds} seeds, {self.seed_mode} ({self.seed_mode_reason})"

    # --- shardings ----------------------------------------------------------------------
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def state_sharding(self) -> NamedSharding:
        """The sharding of every leaf of the state (a prefix for the whole tree): split on
        the seed axis with seeds, replicated otherwise."""
        return NamedSharding(self.mesh, P(SEED) if self.seeded else P())

    def metrics_sharding(self) -> NamedSharding:
        return self.replicated()  # small; readable by every host

    # --- the program ------------------------------------------------------------------
    def seed_keys(self, seed: int) -> chex.PRNGKey:
        """``PRNGKey(seed)``, or with S seeds the stack of ``PRNGKey(seed + i)``, (S, 2)."""
        return seed_keys(seed, self.num_seeds)

    def init(self, key: chex.PRNGKey) -> TrainState:
        """The initial state, placed on the mesh; ``key`` comes from ``seed_keys``."""
        if self.seeded and np.shape(key)[:1] != (self.num_seeds,):
            raise ValueError(
                f"init needs {self.num_seeds} keys (leading axis), got shape {np.shape(key)}; "
                "use runner.seed_keys(seed)"
            )
        if not self.seeded:
            return jax.jit(self.exp.init, out_shardings=self.state_sharding())(key)
        # One seed at a time, then stacked: jax 0.10's CPU runtime deadlocks running a vmapped
        # init (several batched QR decompositions of orthogonal initialisers in one program).
        init = jax.jit(self.exp.init)
        states = jax.device_get([init(k) for k in key])
        host = jax.tree.map(lambda *xs: np.stack(xs), *states)
        sharding = self.state_sharding()
        return jax.tree.map(
            lambda x: jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx]), host
        )

    def schedule_base(self) -> chex.PRNGKey:
        """The schedule's base key (``run.schedule_seed``, or ``run.seed``)."""
        return self.exp.schedule_base()

    def chunk(
        self,
        state: TrainState,
        num_updates: int,
        active: chex.Array | None = None,
        base: chex.PRNGKey | None = None,
    ):
        """``num_updates`` train steps (the first ``active`` of them when given) of every
        seed, with the schedule from ``base`` (default ``schedule_base()``); pure and
        jittable. Returns the state and metrics with leaves (K,), or (S, K)."""
        base = self.schedule_base() if base is None else base
        if not self.seeded:
            return self.exp.run_chunk(state, num_updates, active, base=base)
        # Every seed has done the same number of updates: seed 0's count, unbatched.
        start = state.updates[0]

        def one(s, seed_axis=None):
            return self.exp.run_chunk(
                s, num_updates, active, start=start, base=base, seed_axis=seed_axis
            )

        if self.seed_mode == "vmap":
            return jax.vmap(lambda s: one(s, SEED), axis_name=SEED, spmd_axis_name=SEED)(state)
        return _one_after_another(one, state, self.num_seeds)

    def compile(self, state: TrainState, num_updates: int, donate: bool = True) -> Callable:
        """``chunk`` jitted with the mesh's shardings and compiled for ``num_updates``;
        call it as ``run(state, jnp.int32(active))`` (a ``CompiledChunk``)."""
        state_sh = self.state_sharding()
        fn = jax.jit(
            lambda s, n, base: self.chunk(s, num_updates, n, base),
            in_shardings=(state_sh, self.replicated(), self.replicated()),
            out_shardings=(state_sh, self.metrics_sharding()),
            donate_argnums=(0,) if donate else (),
        )
        base = jax.device_put(self.schedule_base(), self.replicated())
        return CompiledChunk(fn.lower(state, jnp.int32(num_updates), base).compile(), base)

    def updates(self, state: TrainState) -> int:
        """Updates done so far (every seed has done the same number)."""
        return int(np.asarray(jax.device_get(state.updates)).reshape(-1)[0])

    def per_seed(self, tree: Any) -> list:
        """A host copy of ``tree`` split into one tree per seed (a list of one without)."""
        return per_seed(tree, self.num_seeds)


def _one_after_another(one: Callable, state: TrainState, num_seeds: int):
    """``one`` (a single-seed chunk) on each seed of ``state`` in turn, in a ``fori_loop``
    that writes each seed's new state and metrics back in place; like ``vmap(one)``."""

    def take(tree, i):
        return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), tree)

    def put(tree, i, value):
        return jax.tree.map(
            lambda x, v: jax.lax.dynamic_update_index_in_dim(x, v, i, 0), tree, value
        )

    _, shapes = jax.eval_shape(one, take(state, 0))
    metrics = jax.tree.map(lambda m: jnp.zeros((num_seeds, *m.shape), m.dtype), shapes)

    def body(i, carry):
        state, metrics = carry
        new, out = one(take(state, i))
        return put(state, i, new), put(metrics, i, out)

    return jax.lax.fori_loop(0, num_seeds, body, (state, metrics))


def seed_keys(seed: int, num_seeds: int) -> chex.PRNGKey:
    """``PRNGKey(seed)`` for one seed; the (S, 2) stack of ``PRNGKey(seed + i)`` for S > 1."""
    if num_seeds <= 1:
        return jax.random.PRNGKey(seed)
    return jnp.stack([jax.random.PRNGKey(seed + i) for i in range(num_seeds)])


def init_shapes(exp: Experiment, seed: int = 0) -> TrainState:
    """``jax.eval_shape`` of the initial state, with the seed axis for ``run.num_seeds > 1``
    (nothing is computed); the template a checkpoint is restored into."""
    num_seeds = exp.cfg.run.num_seeds
    # Abstract keys: the shapes are known without making one key per seed (which takes
    # minutes for 100,000 seeds, before the memory estimate could refuse them).
    key = jax.eval_shape(jax.random.PRNGKey, seed)
    if num_seeds > 1:
        key = jax.ShapeDtypeStruct((num_seeds, *key.shape), key.dtype)
    init = jax.vmap(exp.init) if num_seeds > 1 else exp.init
    return jax.eval_shape(init, key)


def per_seed(tree: Any, num_seeds: int) -> list:
    """A host copy of ``tree`` split along its leading seed axis into ``num_seeds`` trees;
    ``[tree]`` for a single-seed run (``num_seeds == 1``, no seed axis)."""
    host = jax.device_get(tree)
    if num_seeds <= 1:
        return [host]
    return [jax.tree.map(lambda x, i=i: x[i], host) for i in range(num_seeds)]


def make_runner(exp: Experiment, cfg: Config | None = None, devices: Sequence | None = None):
    """The ``Runner`` for ``cfg.run.num_seeds`` seeds on ``cfg.run.devices`` devices.

    Args:
        exp: the experiment (from ``ued.step.experiment.build``).
        cfg: the config (defaults to ``exp.cfg``).
        devices: explicit devices, overriding ``run.devices``.

    Raises:
        ConfigError: when ``ppo.num_envs`` (and ``run.num_seeds``) cannot be split over the
            devices, naming the keys.
    """
    cfg = cfg or exp.cfg
    mode, why = resolve_seed_mode(cfg.run.seed_mode, cfg.run.num_seeds)
    explicit = devices is not None or cfg.run.devices
    devices = list(devices) if devices is not None else select_devices(cfg.run.devices)
    # Seeds one after another put every device on the env axis.
    seeds_on_mesh = cfg.run.num_seeds if mode == "vmap" else 1
    if mode == "sequential" and not explicit and jax.process_count() == 1:
        # The host's device count was chosen for envs x seeds: keep the most that split one
        # seed's envs.
        count = max(d for d in range(1, len(devices) + 1) if cfg.ppo.num_envs % d == 0)
        devices = devices[:count]
    seed_axis, env_axis = mesh_shape(len(devices), seeds_on_mesh, cfg.ppo.num_envs)
    mesh = Mesh(np.asarray(devices).reshape(seed_axis, env_axis), (SEED, ENV))
    if len(devices) > 1:
        exp = exp.with_batch_sharding(NamedSharding(mesh, P(ENV)))
    return Runner(
        exp=exp, num_seeds=cfg.run.num_seeds, mesh=mesh, seed_mode=mode, seed_mode_reason=why
    )
