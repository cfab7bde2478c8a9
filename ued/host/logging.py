"""A small logger interface; JSONL and CSV writers. Tracking services are optional extras."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Protocol

from ued.config import config as config_lib
from ued.config.config import Config, ConfigError


class Logger(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _clean(value: Any) -> Any:
    value = float(value) if hasattr(value, "__float__") and not isinstance(value, int) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null means "not applicable this step"
    return value


class JsonlLogger:
    """One JSON object per line, appended and flushed at once (safe to tail)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = self.path.open("a")

    def log(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class CsvLogger:
    """A CSV whose columns are the union of keys seen so far (rewritten when new keys appear)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        if self.path.exists():
            with self.path.open() as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or [])
                self.rows = list(reader)

    def log(self, record: dict[str, Any]) -> None:
        row = {k: _clean(v) for k, v in record.items()}
        new = [k for k in row if k not in self.columns]
        self.rows.append(row)
        if new or not self.path.exists():
            self.columns += new
            self._rewrite()
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.path)

    def close(self) -> None:
        pass


class MultiLogger:
    def __init__(self, loggers: list[Logger]):
        self.loggers = loggers

    def log(self, record: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(record)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


class TensorBoardLogger:
    """Optional (``pip install ued[tensorboard]``)."""

    def __init__(self, log_dir: str | Path):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def log(self, record: dict[str, Any]) -> None:
        step = int(record.get("env_steps", 0))
        for key, value in record.items():
            value = _clean(value)
            if isinstance(value, (int, float)) and key != "env_steps":
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """Optional (``pip install ued[wandb]``)."""

    def __init__(self, config: dict[str, Any], **init_kwargs):
        import wandb

        self.run = wandb.init(config=config, **init_kwargs)

    def log(self, record: dict[str, Any]) -> None:
        self.run.log({k: _clean(v) for k, v in record.items()})

    def close(self) -> None:
        self.run.finish()


def make_logger(cfg: Config, run_dir: Path | None) -> Logger:
    """JSONL and CSV in the run folder, plus the optional ``run.loggers``."""
    if run_dir is None:
        return MultiLogger([])
    loggers: list[Logger] = [
        JsonlLogger(run_dir / "metrics.jsonl"),
        CsvLogger(run_dir / "metrics.csv"),
    ]
    try:
        if "tensorboard" in cfg.run.loggers:
            loggers.append(TensorBoardLogger(run_dir / "tb"))
        if "wandb" in cfg.run.loggers:
            config = config_lib.to_dict(cfg)
            loggers.append(WandbLogger(config, dir=str(run_dir), name=run_dir.name))
    except ImportError as err:
        extra = "tensorboard" if "tensorboard" in str(err).lower() else "wandb"
        message = f"run.loggers: {err}; install it with pip install 'ued[{extra}]'"
        raise ConfigError(message) from err
    return MultiLogger(loggers)


def prune_metrics(run_dir: Path, updates: int) -> None:
    """Drops metric rows logged after ``updates``, the checkpoint a resumed run starts from
    (they describe training that the checkpoint does not hold). Never removes a file: a
    fresh run never gets here with earlier results (``ued.host.run_dir.prepare``)."""
    for name in ("metrics.jsonl", "events.jsonl", "metrics.csv"):
        path = run_dir / name
        if not path.exists():
            continue
        if name.endswith(".jsonl"):
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln).get("updates", 0) <= updates]
            path.write_text("".join(ln + "\n" for ln in kept))
        else:
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                columns = list(reader.fieldnames or [])
                rows = [r for r in reader if float(r.get("updates") or 0) <= updates]
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, columns)
                writer.writeheader()
                writer.writerows(rows)
