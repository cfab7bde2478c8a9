"""A small generative model of levels (a VAE over level grids) and its file format: what a
latent program space needs to decode a program (a latent vector) into a level.

- **Codec** (``LevelCodec``): how a family turns a level into a grid of channels and back.
  A channel is ``bernoulli`` (one bit per cell, e.g. walls) or ``categorical`` (one cell of
  the grid, e.g. the agent's position). ``raw_level`` decodes logits by their argmax without
  any repair (to measure how often the model alone makes a valid level); ``repair`` samples
  a level from the logits and makes it valid by construction.
- **Model** (``VAE``): a small convolutional VAE in flax (Kingma & Welling 2014): two
  convolutions and a dense layer to the latent mean and log-variance, and back through a
  dense layer and a transposed convolution to one logit per cell and channel.
- **File** (``save``/``load``): a folder with ``model.json`` (the architecture, the family
  and env it was trained for, its training report) and ``params/`` (an orbax checkpoint).
  ``model_hash`` is the SHA-256 of the folder's files: an experiment names it beside the
  folder, and a run refuses a model whose hash differs (so a resumed run decodes with the
  same model it started with).

Training lives in ``ued.host.level_model`` and ``scripts/train_level_model.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

CHANNEL_KINDS = ("bernoulli", "categorical")
FORMAT = 1
ROOT = Path(__file__).resolve().parents[1]  # the repository (for paths in configs)


@dataclasses.dataclass(frozen=True)
class LevelCodec:
    """A family's levels as (H, W, C) grids; see the module docstring."""

    channels: tuple[tuple[str, str], ...]  # (name, kind) per channel
    shape: tuple[int, int]  # (H, W)
    to_grid: Callable[[Any], chex.Array]  # level -> (H, W, C) float32 in {0, 1}
    raw_level: Callable[[chex.Array], Any]  # logits (H, W, C) -> level (argmax, unrepaired)
    repair: Callable[[chex.PRNGKey, chex.Array], Any]  # logits -> valid level (sampled)

    def __post_init__(self):
        for name, kind in self.channels:
            if kind not in CHANNEL_KINDS:
                raise ValueError(f"channel {name!r}: kind={kind!r}; allowed: {CHANNEL_KINDS}")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the model file records about the model: enough to rebuild it."""

    family: str
    env_options: dict
    height: int
    width: int
    channels: tuple[tuple[str, str], ...]
    latent_dim: int = 8
    features: int = 16
    hidden: int = 64

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "channels": [list(c) for c in self.channels]}

    @classmethod
    def from_json(cls, data: dict) -> ModelSpec:
        data = dict(data)
        data["channels"] = tuple(tuple(c) for c in data["channels"])
        return cls(**data)

    def module(self) -> VAE:
        return VAE(self.height, self.width, len(self.channels), self.latent_dim, self.features,
                   self.hidden)  # fmt: skip


class VAE(nn.Module):
    """Grid (..., H, W, C) <-> latent (..., L); see the module docstring."""

    height: int
    width: int
    channels: int
    latent_dim: int = 8
    features: int = 16
    hidden: int = 64

    def setup(self):
        f = self.features
        self.enc1 = nn.Conv(f, (3, 3))
        self.enc2 = nn.Conv(2 * f, (3, 3), strides=(2, 2))
        self.enc3 = nn.Dense(self.hidden)
        self.mean = nn.Dense(self.latent_dim)
        self.log_var = nn.Dense(self.latent_dim)
        self.small = (math.ceil(self.height / 2), math.ceil(self.width / 2))
        self.dec1 = nn.Dense(self.hidden)
        self.dec2 = nn.Dense(self.small[0] * self.small[1] * 2 * f)
        self.dec3 = nn.ConvTranspose(f, (3, 3), strides=(2, 2))
        self.dec4 = nn.Conv(self.channels, (3, 3))

    def encode(self, grid: chex.Array) -> tuple[chex.Array, chex.Array]:
        x = nn.relu(self.enc1(grid))
        x = nn.relu(self.enc2(x))
        x = nn.relu(self.enc3(x.reshape(x.shape[:-3] + (-1,))))
        return self.mean(x), self.log_var(x)

    def decode(self, z: chex.Array) -> chex.Array:
        x = nn.relu(self.dec1(z))
        x = nn.relu(self.dec2(x)).reshape(z.shape[:-1] + (*self.small, 2 * self.features))
        x = nn.relu(self.dec3(x))[..., : self.height, : self.width, :]
        return self.dec4(x)

    def __call__(self, grid: chex.Array, key: chex.PRNGKey):
        mean, log_var = self.encode(grid)
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
        return self.decode(z), mean, log_var


def init_params(spec: ModelSpec, key: chex.PRNGKey):
    grid = jnp.zeros((1, spec.height, spec.width, len(spec.channels)), jnp.float32)
    return spec.module().init(key, grid, jax.random.key(0))


def resolve(path: str | Path) -> Path:
    """A model path as given, or relative to the repository when it is not found as given
    (so an experiment's ``envs/maze/models/...`` works from any folder)."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    return ROOT / path


ORBAX_MARKER = "commit_success.txt"


def model_hash(path: str | Path) -> str:
    """SHA-256 (hex) of every file under the model folder, with their relative paths (not
    orbax's ``commit_success.txt`` marker, whose text names the folder it was written in:
    the same model saved elsewhere must keep its hash)."""
    root = resolve(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such model folder")
    digest = hashlib.sha256()
    files = (p for p in root.rglob("*") if p.is_file() and p.name != ORBAX_MARKER)
    for file in sorted(files):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def save(path: str | Path, spec: ModelSpec, params, report: dict | None = None) -> str:
    """Writes the model folder (replacing one there); returns its hash."""
    import orbax.checkpoint as ocp

    root = Path(path).resolve()
    root.mkdir(parents=True, exist_ok=True)
    target = root / "params"
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(target, jax.device_get(params), force=True)
    checkpointer.wait_until_finished()
    checkpointer.close()
    meta = {"format": FORMAT, "spec": spec.to_json(), "report": report or {}}
    (root / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return model_hash(root)


def load(path: str | Path) -> tuple[ModelSpec, Any, dict]:
    """``(spec, params, report)`` of a model folder."""
    import orbax.checkpoint as ocp

    root = resolve(path)
    meta_path = root / "model.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{root}: not a level model folder (no model.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{root}: model format {meta.get('format')!r}; this ued reads {FORMAT}")
    spec = ModelSpec.from_json(meta["spec"])
    like = jax.eval_shape(lambda: init_params(spec, jax.random.key(0)))
    checkpointer = ocp.StandardCheckpointer()
    params = checkpointer.restore(root.resolve() / "params", like)
    checkpointer.close()
    return spec, params, meta.get("report", {})
