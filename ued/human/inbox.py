"""A run's inbox: levels sent to a training run, applied exactly once at chunk boundaries.

Layout under the run folder::

    RUN/inbox/<id>.json            pending: {"id", "level" (the family's text), "sent", ...}
    RUN/inbox/applied/<id>.json    taken into the curriculum: the message plus "update"
    RUN/inbox/rejected/<id>.json   refused: the message plus "update" and "reason"
    RUN/grounding.jsonl            one event per processed message: id, update, accepted, reason

Writers (``send``) write a hidden temporary file and ``os.replace`` it into place
(``safe_io.write_atomic``), so the trainer never reads half a message. At each chunk
boundary the trainer (``Inbox.take``) reads the pending messages it has not processed yet,
validates each level (size, the family's parser, ``is_valid``) and hands the accepted ones
to the curriculum's optional ``add_levels``; a curriculum without it rejects them with that
reason.

Exactly once, across SIGINT, crashes and ``run.resume=true``: the ids processed so far are
recorded in the metadata of every checkpoint (``inbox_ids``), and a message file is moved to
``applied/`` or ``rejected/`` only once a checkpoint that contains its effect is on disk. A
crash before that checkpoint leaves the file pending; the resumed run starts from an older
checkpoint whose ``inbox_ids`` lack it, so it is applied again to a state that never had it.
A file whose id the resumed checkpoint already records is only moved. ``grounding.jsonl``
rows after the resumed checkpoint are dropped, like ``metrics.jsonl``'s.

Whatever else lands in the inbox never stops the trainer: an entry named ``<id>.json`` that
is not a readable message (a folder, a FIFO, a device, a symbolic link, a file over
``MAX_MESSAGE_BYTES``, JSON nested too deeply) is rejected with its reason like a bad level,
and set aside unchanged as ``rejected/<id>.entry`` beside the record of why; it is opened
with ``O_NOFOLLOW | O_NONBLOCK`` and read as a capped stream, so nothing blocks or fills
memory. Any other name is left alone and logged once as ignored.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ued.files.safe_io import FileRefused, open_capped, read_capped, write_atomic

INBOX, APPLIED, REJECTED = "inbox", "applied", "rejected"
EVENTS = "grounding.jsonl"
MAX_MESSAGE_BYTES = 64 * 1024  # a message (and the level text in it) is at most this big
MAX_PER_BOUNDARY = 64  # messages taken at one chunk boundary; the rest wait for the next
ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
MAX_EVENTS_BYTES = 2**30  # grounding.jsonl is read as a stream of at most this much
SET_ASIDE = ".entry"  # suffix of a bad entry moved into rejected/ as it was


def _write(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically, into an existing folder; a symbolic link at
    ``path`` is replaced, never followed. A failure is an ``OSError`` naming the path, which
    the callers handle (the trainer logs it and leaves the entry pending, the studio answers
    409), whether the system refused the write or ``safe_io`` did (a folder, FIFO or device
    at ``path`` is never replaced)."""
    try:
        write_atomic(path, text, "inbox file", make_parents=False, nofollow=True)
    except FileRefused as err:
        raise OSError(str(err)) from None


def send(run_dir: str | Path, level_text: str, source: str = "") -> str:
    """Puts one level (the family's text format) into the run's inbox; returns its id."""
    if len(level_text.encode()) > MAX_MESSAGE_BYTES - 1024:
        raise ValueError(f"the level text is over {MAX_MESSAGE_BYTES - 1024} bytes")
    inbox = Path(run_dir) / INBOX
    inbox.mkdir(parents=True, exist_ok=True)
    msg_id = uuid.uuid4().hex
    message = {"id": msg_id, "level": level_text, "sent": time.time(), "source": source[:200]}
    _write(inbox / f"{msg_id}.json", json.dumps(message))
    return msg_id


def read_message(path: Path) -> dict[str, Any]:
    """A message file as a dict; ValueError naming what is wrong with it (including an
    entry that is not a regular file: it is never followed, waited on or read past
    ``MAX_MESSAGE_BYTES``)."""
    raw = read_capped(path, MAX_MESSAGE_BYTES, "message", nofollow=True)
    try:
        message = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"the message is not JSON ({err})") from None
    except RecursionError:
        raise ValueError("the message is JSON nested too deeply") from None
    if not isinstance(message, dict) or not isinstance(message.get("level"), str):
        raise ValueError("the message has no 'level' text")
    return message


def parse_level(family, env, text: str):
    """One level from text, checked with ``family.is_valid``; ValueError naming the problem."""
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise ValueError(f"the level text is over {MAX_MESSAGE_BYTES} bytes")
    levels = family.levels_from_text(env, text)  # raises ValueError naming line and column
    if len(levels) != 1:
        raise ValueError(f"the text holds {len(levels)} levels; send one")
    level = levels[0]
    if not bool(np.asarray(family.is_valid(env, level))):
        raise ValueError(f"the level is not valid for family {family.name!r} (is_valid is false)")
    return level


def scan(run_dir: Path) -> tuple[list[Path], list[str]]:
    """Pending message entries, oldest first (then by name), and the names of other entries
    (not ``<32 hex digits>.json``), which the trainer ignores. Entries are not followed:
    a symbolic link, folder or FIFO named like a message is pending, to be rejected."""
    inbox = run_dir / INBOX
    found, other = [], []
    try:
        entries = list(os.scandir(inbox))
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name in (APPLIED, REJECTED):
            continue  # a send being written, and the filed messages
        stem, dot, ext = name.rpartition(".")
        if not dot or ext != "json" or not ID_PATTERN.match(stem):
            other.append(name)
            continue
        try:
            found.append((entry.stat(follow_symlinks=False).st_mtime, name, inbox / name))
        except FileNotFoundError:  # filed or removed meanwhile
            continue
    return [path for *_, path in sorted(found)], sorted(other)


def pending(run_dir: Path) -> list[Path]:
    """Pending message entries, oldest first (then by name); see ``scan``."""
    return scan(run_dir)[0]


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / EVENTS
    if not os.path.lexists(path):
        return []
    out = []
    try:
        stream, _ = open_capped(path, MAX_EVENTS_BYTES, "grounding log")
        with stream:
            for line in stream:
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):
                    continue  # a line being written
                if isinstance(event, dict):
                    out.append(event)
    except (OSError, ValueError) as err:
        print(f"[ued] cannot read {path}: {err}", file=sys.stderr)
    return out


def prune_events(run_dir: Path, updates: int) -> None:
    """Drops events logged after update ``updates`` (a resumed run logs them again)."""
    path = run_dir / EVENTS
    if not path.exists():
        return
    kept = [e for e in read_events(run_dir) if int(e.get("update", 0)) <= updates]
    _write(path, "".join(json.dumps(e) + "\n" for e in kept))


class Inbox:
    """The trainer's side of one run's inbox (host code, between chunks).

    Args:
        run_dir: the run folder.
        done: ids the resumed checkpoint records as processed (its ``inbox_ids``).
    """

    def __init__(self, run_dir: Path, done: Iterable[str] = ()):
        self.run_dir = Path(run_dir)
        self.done: list[str] = list(done)  # processed ids, in order: checkpoint metadata
        self._done = set(self.done)
        self.unsaved: dict[str, dict[str, Any]] = {}  # processed, not yet in a checkpoint
        self._ignored: set[str] = set()  # other names in the inbox, logged once each
        self.move_saved()  # ids a checkpoint already holds, left pending by a crash

    def take(self, family, env, updates: int) -> tuple[list[Any], list[dict[str, Any]]]:
        """Reads and validates the new messages; returns the accepted levels and one event
        per message (``accepted`` False with a ``reason`` for rejected ones). The caller
        applies the levels, may reject more (``reject``), then calls ``commit``."""
        levels, events = [], []
        entries, other = scan(self.run_dir)
        for name in other:
            if name not in self._ignored:
                self._ignored.add(name)
                print(
                    f"[ued] inbox: ignoring {self.run_dir / INBOX / name}: a sent level is "
                    "named <32 hex digits>.json (ued.human.inbox.send and the studio write them)",
                    file=sys.stderr,
                )
        for path in entries:
            msg_id = path.name[: -len(".json")]
            if msg_id in self._done or msg_id in self.unsaved:
                continue
            if len(events) >= MAX_PER_BOUNDARY:
                break
            event = {"id": msg_id, "update": updates, "accepted": True, "reason": ""}
            try:
                message = read_message(path)
                levels.append(parse_level(family, env, message["level"]))
                event["source"] = str(message.get("source", ""))[:200]
                sent = message.get("sent")
                event["sent"] = sent if isinstance(sent, (int, float)) else None
            except (ValueError, OSError, RecursionError) as err:
                reason = str(err) if not isinstance(err, RecursionError) else "nested too deeply"
                event.update(accepted=False, reason=reason)
            events.append(event)
        return levels, events

    def commit(self, events: list[dict[str, Any]]) -> None:
        """Records processed messages (in memory, and in ``grounding.jsonl``)."""
        if not events:
            return
        now = time.time()
        with (self.run_dir / EVENTS).open("a", encoding="utf-8") as f:
            for event in events:
                event = {**event, "time": now}
                self.unsaved[event["id"]] = event
                f.write(json.dumps(event) + "\n")

    def ids_to_save(self) -> list[str]:
        """Every processed id, for the metadata of the checkpoint about to be written."""
        return self.done + [i for i in self.unsaved if i not in self._done]

    def saved(self) -> None:
        """Call once the checkpoint holding ``ids_to_save()`` is on disk: moves the files."""
        for msg_id, event in self.unsaved.items():
            if msg_id not in self._done:
                self.done.append(msg_id)
                self._done.add(msg_id)
            self._move(msg_id, event)
        self.unsaved = {}

    def move_saved(self) -> None:
        """Moves pending files whose ids are already recorded as processed."""
        events = {e["id"]: e for e in read_events(self.run_dir) if "id" in e}
        for path in pending(self.run_dir):
            msg_id = path.name[: -len(".json")]
            if msg_id in self._done:
                event = events.get(msg_id, {"accepted": True, "reason": ""})
                self._move(msg_id, event)

    def _move(self, msg_id: str, event: dict[str, Any]) -> None:
        """Files one processed entry: its message (with ``update`` and ``reason``) into
        ``applied/`` or ``rejected/``; an entry that is not a readable message is moved as
        it was to ``rejected/<id>.entry`` (nothing is deleted). A failure to file is logged:
        the entry stays pending and is filed by a later call."""
        source = self.run_dir / INBOX / f"{msg_id}.json"
        if not os.path.lexists(source):
            return
        folder = self.run_dir / INBOX / (APPLIED if event.get("accepted") else REJECTED)
        try:
            message = read_message(source)
        except (ValueError, OSError):
            message = None
            folder = self.run_dir / INBOX / REJECTED
        record = dict(message) if message is not None else {"id": msg_id}
        record.update(update=event.get("update"), reason=event.get("reason", ""))
        try:
            folder.mkdir(exist_ok=True)
            if message is None:
                record["entry"] = f"{msg_id}{SET_ASIDE}"
                os.rename(source, folder / f"{msg_id}{SET_ASIDE}")
            _write(folder / f"{msg_id}.json", json.dumps(record))
            if message is not None:
                source.unlink()
        except OSError as err:
            print(f"[ued] inbox: cannot file {source} ({err}); left in place", file=sys.stderr)
