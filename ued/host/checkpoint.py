"""Checkpoints of the whole train state with orbax: atomic saves, verified restores, resume.

A checkpoint is one orbax step folder ``RUN/checkpoints/<updates>/`` with two items:

- ``state``: every array leaf of the ``TrainState`` (student parameters and optimiser
  state, the curriculum's state with its level buffer and any adversary, the PRNG key and
  the update counter), stored flat as ``leaf_00000, leaf_00001, ...`` in tree order, so any
  curriculum's pytree works without orbax knowing its classes.
- ``meta``: JSON with the resolved config, each leaf's path, shape and dtype, and a SHA-256
  digest of all leaf bytes.

Saves are atomic (orbax writes a temporary folder and renames it when complete; a killed
save leaves no step folder) and run in the background from a host copy of the state, so
the next chunk can reuse (donate) the device buffers at once. A restore tries the newest
step first; one that cannot be read, lacks an item, or whose digest does not match is
moved to ``RUN/checkpoints_corrupt/`` with a warning and the previous one is tried.

Resuming with a different config (``check_compatible``):

- Each option declares what a change of it does (``ued.config.options.option(resume=...)``):
  ``"refuse"`` keys fix array shapes or the kind of state (``env.family``, ``env.options``,
  ``curriculum.name``, the buffer's capacity, PAIRED's network sizes, ``ppo.num_envs``,
  ``network.*``, ``run.seed``, ...), and a change refuses to resume, naming every differing
  key; ``run.total_env_steps`` is refused too when ``ppo.anneal_lr`` is on (it sets the
  learning-rate schedule). ``"free"`` keys only steer the host loop (``run.dir``,
  ``run.chunk_updates``, ``eval.*``, ...) and may change freely.
- Any other change (learning rate, entropy coefficient, generator options, buffer
  temperature, ...) is allowed with a warning listing old and new values: the run goes on,
  but it is no longer an exact continuation.
- Curriculum options are compared as resolved (defaults filled in), so writing a default
  out is no change.

Whatever the config says, the checkpoint's leaf shapes and dtypes must match the state the
config builds; a mismatch is refused too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ued.config import config as config_lib
from ued.config import options as options_lib
from ued.config.config import Config, ConfigError, OptionsOf

FORMAT = 1


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was asked for."""


class IncompatibleCheckpointError(ConfigError):
    """The config would build a state the checkpoint cannot fill; names the keys."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A verified checkpoint read to host memory."""

    step: int
    leaves: list[np.ndarray]  # in the tree order of the saved state
    meta: dict[str, Any]
    path: Path


# --- flattening -----------------------------------------------------------------------------


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def host_leaves(state: Any) -> tuple[list[np.ndarray], list[list]]:
    """Host copies of every leaf (typed PRNG keys as their raw data) and their descriptions."""
    leaves, specs = [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        kind = str(jax.random.key_impl(leaf)) if _is_key(leaf) else ""
        array = np.array(jax.random.key_data(leaf) if kind else leaf)  # a copy, not a view
        leaves.append(array)
        specs.append([jax.tree_util.keystr(path), list(array.shape), array.dtype.str, kind])
    return leaves, specs


def digest(leaves: list[np.ndarray]) -> str:
    """SHA-256 over the dtype, shape and bytes of every leaf, in order."""
    h = hashlib.sha256()
    for leaf in leaves:
        h.update(f"{leaf.dtype.str}{leaf.shape}".encode())
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()


def into_state(like: Any, leaves: list[np.ndarray]) -> Any:
    """Puts checkpoint leaves into the tree structure of ``like`` (a state or its shapes)."""
    template, treedef = jax.tree.flatten(like)
    if len(template) != len(leaves):
        raise IncompatibleCheckpointError(
            f"the checkpoint has {len(leaves)} arrays, this config's state {len(template)}"
        )
    out = []
    for t, leaf in zip(template, leaves, strict=True):
        if _is_key(t):
            out.append(jax.random.wrap_key_data(leaf, impl=jax.random.key_impl(t)))
        else:
            out.append(jax.device_put(leaf))
    return jax.tree.unflatten(treedef, out)


# --- config compatibility ---------------------------------------------------------------------


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out if out or not prefix else {prefix: {}}
    return {prefix: list(data) if isinstance(data, tuple) else data}


OPTIONS = "curriculum.options"


def resolved(data: dict[str, Any], options_of: OptionsOf) -> dict[str, Any]:
    """A config dict with its curriculum options resolved (defaults filled in), as data.
    Older config shapes are upgraded first; options that no longer parse stay as they are.
    ``options_of``: the curricula's option types (``ued.curricula.options_of``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        data = config_lib.upgrade_legacy(data)
    cur = data.get("curriculum") or {}
    name = cur.get("name", config_lib.CurriculumConfig.name)
    cls = options_of(name) if isinstance(name, str) else None
    if cls is None:
        return data
    try:
        parsed = options_lib.build(cls, cur.get("options"), OPTIONS)
    except ConfigError:
        return data
    return {**data, "curriculum": {**cur, "options": options_lib.to_dict(parsed)}}


def resume_policy(cfg: Config, key: str, options_of: OptionsOf) -> str:
    """What changing dotted ``key`` does to a resume: "refuse", "warn" or "free".
    ``options_of`` gives the curriculum's options type (``ued.curricula.options_of``)."""
    if key == "run.total_env_steps" and cfg.ppo.anneal_lr:
        return "refuse"
    if key.startswith(OPTIONS + "."):
        cls = options_of(cfg.curriculum.name)
        if cls is None:
            return "refuse"
        return options_lib.resume_policy(cls, key[len(OPTIONS) + 1 :])
    return options_lib.resume_policy(Config, key)


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old, new) for every differing leaf of two config dicts."""
    a, b = _flat(old), _flat(new)
    missing = object()
    changes = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            changes[key] = (None if va is missing else va, None if vb is missing else vb)
    return changes


def check_compatible(
    snapshot: Snapshot, cfg: Config, like: Any, options_of: OptionsOf
) -> list[str]:
    """Checks that ``cfg`` may resume ``snapshot``; returns warnings for changed hyper-params.
    ``options_of``: the curricula's option types (``ued.curricula.options_of``).

    Raises:
        IncompatibleCheckpointError: naming the structural keys that differ, or the first
            leaf whose shape or dtype differs.
    """
    old = resolved(snapshot.meta["config"], options_of)
    changes = config_changes(old, resolved(config_lib.to_dict(cfg), options_of))
    policy = {k: resume_policy(cfg, k, options_of) for k in changes}
    refused = {k: v for k, v in changes.items() if policy[k] == "refuse"}
    where = snapshot.path
    if refused:
        listed = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in _rows(refused))
        raise IncompatibleCheckpointError(
            f"cannot resume from {where}: the config changes keys that fix the shape or kind "
            f"of the train state: {listed}. Resume with the checkpoint's values (its config "
            f"is in {where.parent.parent / 'config.yaml'}), or start a new run.dir."
        )
    now = host_specs(like)
    saved = [tuple(s[1:3]) for s in snapshot.meta["leaves"]]
    built = [tuple(s[1:3]) for s in now]
    if saved != built:
        first = next(
            (i for i, (a, b) in enumerate(zip(saved, built, strict=False)) if a != b),
            min(len(saved), len(built)),
        )
        path = now[first][0] if first < len(now) else snapshot.meta["leaves"][first][0]
        raise IncompatibleCheckpointError(
            f"cannot resume from {where}: the state this config builds does not match the "
            f"checkpoint ({len(saved)} arrays saved, {len(now)} now; first difference at "
            f"state{path}). Changed keys: {sorted(changes) or 'none'}"
        )
    soft = {k: v for k, v in changes.items() if policy[k] == "warn"}
    return [
        f"resuming with changed settings (no longer an exact continuation): {k}: {a!r} -> {b!r}"
        for k, a, b in _rows(soft)
    ]


def _rows(changes: dict[str, tuple[Any, Any]]):
    return [(k, a, b) for k, (a, b) in changes.items()]


def host_specs(like: Any) -> list[list]:
    """Leaf descriptions (path, shape, dtype) of a state or of its ``jax.eval_shape``."""
    specs = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(like)[0]:
        shape, dtype = np.shape(leaf), getattr(leaf, "dtype", None) or np.asarray(leaf).dtype
        if _is_key(leaf):
            data = jax.eval_shape(jax.random.key_data, leaf)
            shape, dtype = tuple(data.shape), data.dtype
        specs.append([jax.tree_util.keystr(path), list(shape), np.dtype(dtype).str])
    return specs


# --- the manager ----------------------------------------------------------------------------

# Printed by tensorstore's reader threads when orbax's event loop has closed after a failed
# read: one traceback per pending read (dozens), all saying the same thing as our one line.
_NOISE = ("Traceback (most recent call last)", "Event loop is closed", "_check_closed", "call_soon")


@contextlib.contextmanager
def _quiet_reader_threads():
    """Captures what is written to file descriptor 2 (C++ threads bypass ``sys.stderr``)
    and writes it back without the reader threads' "Event loop is closed" tracebacks."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            # The failed read's siblings finish (and complain) a little later: wait until
            # the capture has been quiet for a moment (at most a few seconds).
            deadline, last, quiet = time.monotonic() + 5.0, -1, 0
            while quiet < 4 and time.monotonic() < deadline:
                size = os.fstat(tmp.fileno()).st_size
                quiet = quiet + 1 if size == last else 0
                last = size
                time.sleep(0.1)
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines = tmp.read().decode(errors="replace").splitlines(keepends=True)
            kept = [
                line
                for line in lines
                if line.strip() and not line[0].isspace() and not any(n in line for n in _NOISE)
            ]
            if kept:
                sys.stderr.write("".join(kept))


class Checkpointer:
    """Saves and restores train states under one folder, keeping the newest ``keep``."""

    def __init__(self, directory: str | Path, keep: int = 3, background: bool = True):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max(1, keep), create=True, enable_async_checkpointing=background
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    @property
    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, cfg: Config, extra: dict | None = None) -> None:
        """Saves ``state`` as step ``step`` (returns once the host copy is taken)."""
        leaves, specs = host_leaves(state)
        meta = {
            "format": FORMAT,
            "step": int(step),
            "config": config_lib.to_dict(cfg),
            "leaves": specs,
            "digest": digest(leaves),
            **(extra or {}),
        }
        args = self._ocp.args
        tree = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
        self._manager.save(
            int(step),
            args=args.Composite(state=args.StandardSave(tree), meta=args.JsonSave(meta)),
        )

    def load(self, step: int) -> Snapshot:
        """Reads and verifies one step; raises ``CheckpointError`` when it is unusable."""
        args = self._ocp.args
        path = self.directory / str(step)
        try:
            with _quiet_reader_threads():
                restored = self._manager.restore(step, args=args.Composite(meta=args.JsonRestore()))
                meta = restored["meta"]
                target = {
                    f"leaf_{i:05d}": np.zeros(shape, np.dtype(dtype))
                    for i, (_, shape, dtype, *_) in enumerate(meta["leaves"])
                }
                tree = self._manager.restore(
                    step, args=args.Composite(state=args.StandardRestore(target))
                )["state"]
        except Exception as err:  # orbax raises many kinds on a damaged folder
            why = str(err).split(" [tensorstore_spec")[0]  # not the reader's whole spec
            why = why.strip().splitlines()[0] if why.strip() else "no detail"
            why = why if len(why) <= 240 else why[:240] + "..."  # one line, not a page
            raise CheckpointError(f"{path}: unreadable ({type(err).__name__}: {why})") from err
        leaves = [np.asarray(tree[f"leaf_{i:05d}"]) for i in range(len(target))]
        if digest(leaves) != meta.get("digest"):
            raise CheckpointError(f"{path}: the data do not match the recorded digest")
        return Snapshot(step=int(step), leaves=leaves, meta=meta, path=path)

    def config_of(self, step: int) -> dict[str, Any] | None:
        """The config (as a dict) that step ``step`` was saved with; None if unreadable."""
        args = self._ocp.args
        try:
            meta = self._manager.restore(step, args=args.Composite(meta=args.JsonRestore()))
            return meta["meta"]["config"]
        except Exception:  # a damaged step: the caller keeps what it has
            return None

    def load_latest(self, move_aside: bool = True) -> Snapshot | None:
        """The newest usable checkpoint, or None when there is none.

        Damaged newer steps are skipped with a warning and, with ``move_aside``, moved to
        ``<directory>_corrupt/`` so that new saves can reuse their step numbers.
        """
        for step in reversed(self.steps):
            try:
                return self.load(step)
            except CheckpointError as err:
                note = f"; moved to {self._move_aside(step)}" if move_aside else ""
                warnings.warn(f"skipping damaged checkpoint {err}{note}", RuntimeWarning, 2)
        return None

    def _move_aside(self, step: int) -> Path:
        target = self.directory.parent / f"{self.directory.name}_corrupt" / str(step)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory / str(step)), str(target))
        self._manager.reload()
        return target

    def wait(self) -> None:
        """Blocks until background saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_trained(path: str | Path) -> tuple[Any, Any, Snapshot]:
    """Builds the experiment of a checkpoint and restores its state (for evaluation, video).

    Args:
        path: a run folder (its newest usable checkpoint), its ``checkpoints`` folder, or
            one step folder ``RUN/checkpoints/<step>``.

    Returns:
        ``(experiment, state, snapshot)``; the experiment is built from the checkpoint's
        own config. With ``run.num_seeds = S > 1`` every leaf of the state has a leading
        seed axis of size S (``ued.step.parallel.per_seed`` splits it).
    """
    from ued.step.experiment import build  # here, so the train driver can import this module

    path = Path(path)
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if path.name.isdigit() and (path / "meta").exists():
        with Checkpointer(path.parent, background=False) as ckpt:
            snapshot = ckpt.load(int(path.name))
    else:
        if not path.is_dir():
            raise CheckpointError(f"{path}: no such run or checkpoint folder")
        with Checkpointer(path, background=False) as ckpt:
            snapshot = ckpt.load_latest(move_aside=False)
        if snapshot is None:
            raise CheckpointError(f"{path}: no usable checkpoint")
    from ued.step.parallel import init_shapes

    cfg = config_lib.from_dict(snapshot.meta["config"])
    exp = build(cfg)
    return exp, into_state(init_shapes(exp), snapshot.leaves), snapshot
