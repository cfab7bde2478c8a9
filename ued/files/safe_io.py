"""Reading and writing files a person named, without hanging, filling memory or losing data.

Two helpers every script and reader of user-named paths goes through:

- ``read_capped`` / ``open_capped``: a file expected to hold text or JSON is opened without
  blocking (``O_NONBLOCK``, so a FIFO cannot stall the open), checked to be a regular file
  (a device such as ``/dev/zero``, a FIFO, a socket or a folder is refused: their size says
  nothing about what reading them costs) and read as a stream that stops past ``limit``
  bytes, whatever the file claims its size is. ``nofollow=True`` refuses a symbolic link
  too (the inbox: anyone who can write the folder could point an entry anywhere).
- ``write_atomic`` / ``atomic_output``: an output is written to a hidden temporary file in
  its folder and renamed over the target, so a reader never sees half a file and a failed
  write leaves the old one; an existing target that is not a regular file (a device, FIFO,
  socket or folder) is refused before anything is written, never replaced. A symbolic link
  is written through, to the file it names (as ``open(path, "w")`` would); with
  ``nofollow=True`` it is replaced instead, never followed (the inbox: anyone who can write
  the folder could point an entry anywhere).

Both raise ``FileRefused`` (a ``ValueError``) with one line naming the path and the problem.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "FileRefused",
    "atomic_output",
    "check_output",
    "describe",
    "open_capped",
    "read_capped",
    "write_atomic",
]


class FileRefused(ValueError):
    """A user-named path cannot be read or written as asked; the message says why."""


def describe(mode: int) -> str:
    """What kind of file a ``st_mode`` is, for messages ("a FIFO", "a device"...)."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n // 1024} KiB" if n >= 1024 else f"{n} B"


def _a(what: str) -> str:
    return f"{'an' if what[:1] in 'aeiou' else 'a'} {what}"


def _why(err: OSError) -> str:
    return err.strerror or type(err).__name__


class _Capped(io.RawIOBase):
    """A raw reader over a file descriptor that raises once more than ``limit`` bytes came."""

    def __init__(self, fd: int, limit: int, refuse):
        self._fd, self._left, self._refuse = fd, limit, refuse

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = os.readv(self._fd, [buffer])
        self._left -= n
        if self._left < 0:
            raise self._refuse()
        return n

    def fileno(self) -> int:
        return self._fd

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        super().close()


def _open_regular(path: Path, what: str, nofollow: bool) -> tuple[int, os.stat_result]:
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if nofollow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP and nofollow:
            raise FileRefused(f"{path} is a symbolic link, not {_a(what)}") from None
        if err.errno == errno.ENOENT:
            raise FileRefused(f"no {what} {str(path)!r}") from None
        if err.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing
            raise FileRefused(f"{path} is a socket, not {_a(what)}") from None
        raise FileRefused(f"{path}: cannot read it ({_why(err)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{path} is {describe(info.st_mode)}, not {_a(what)}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def open_capped(
    path: str | Path, limit: int, what: str = "file", nofollow: bool = False, hint: str = ""
) -> tuple[io.BufferedReader, int]:
    """A regular file as a binary stream that raises ``FileRefused`` past ``limit`` bytes,
    and its size when opened. ``what`` names the kind of file in messages ("level file");
    ``hint`` follows the over-limit message (e.g. "; split it")."""
    path = Path(path)

    def too_big(size: int | None = None) -> FileRefused:
        got = "" if size is None else _size(size) if _size(size) != _size(limit) else f"{size} B"
        got = f"{got} is " if got else ""
        return FileRefused(f"{path}: {got}over the {_size(limit)} limit for {_a(what)}{hint}")

    fd, info = _open_regular(path, what, nofollow)
    if info.st_size > limit:
        os.close(fd)
        raise too_big(info.st_size)
    return io.BufferedReader(_Capped(fd, limit, too_big)), info.st_size


def read_capped(
    path: str | Path, limit: int, what: str = "file", nofollow: bool = False, hint: str = ""
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see ``open_capped``)."""
    stream, _ = open_capped(path, limit, what, nofollow, hint)
    with stream:
        try:
            return stream.read()
        except OSError as err:
            raise FileRefused(f"{path}: cannot read it ({_why(err)})") from None


# --- writing --------------------------------------------------------------------------------


def check_output(
    path: str | Path, what: str = "output", make_parents: bool = True, nofollow: bool = False
) -> Path:
    """Where an output named ``path`` will be written (a symbolic link resolved, or with
    ``nofollow`` replaced), after refusing what cannot be written: an existing target that is
    not a regular file, a parent that is a file or missing (with ``make_parents=False``) or a
    folder we cannot write."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() and not nofollow else path
    try:
        info = os.stat(target, follow_symlinks=not nofollow)
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        info = None  # a parent is a file: said below
    except OSError as err:
        raise FileRefused(f"{what} {path}: cannot use it ({_why(err)})") from None
    if info is not None and not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
        raise FileRefused(
            f"{what} {path} is {describe(info.st_mode)}; only a regular file is replaced: "
            "name a file"
        )
    parent = target.parent
    for part in (parent, *parent.parents):
        if part.exists() and not part.is_dir():
            raise FileRefused(f"{what} {path} is under {part}, which is not a folder")
        if part.is_dir():
            break
    if not parent.is_dir() and not make_parents:
        raise FileRefused(f"{what} {path}: the folder {parent} does not exist")
    existing = next((p for p in (parent, *parent.parents) if p.is_dir()), None)
    if existing is not None:
        _probe(existing, make_dir=existing != parent, what=f"{what} {path}")
    return target


def _probe(folder: Path, make_dir: bool, what: str) -> None:
    """Refuses a folder where nothing can be made (read-only, ``/proc``, no permission) by
    making and removing a hidden file (or folder) there, before any work is done."""
    probe = folder / f".ued-probe-{uuid.uuid4().hex[:12]}"
    try:
        if make_dir:
            probe.mkdir()
            probe.rmdir()
        else:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            probe.unlink()
    except OSError as err:
        raise FileRefused(f"{what}: cannot write in {folder} ({_why(err)})") from None


@contextlib.contextmanager
def atomic_output(
    path: str | Path, what: str = "output", make_parents: bool = True, nofollow: bool = False
):
    """Yields a temporary path beside ``path`` to write; on success it is renamed over
    ``path`` (checked again just before), else removed. See the module docstring."""
    target = check_output(path, what, make_parents, nofollow)
    try:
        if make_parents:
            target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        tmp.touch(0o644, exist_ok=False)
    except OSError as err:
        raise FileRefused(f"{what} {path}: cannot write it ({_why(err)})") from None
    try:
        yield tmp
        check_output(path, what, make_parents, nofollow)  # still not a device, FIFO or folder
        with contextlib.suppress(FileNotFoundError):  # a replaced file keeps its mode
            info = os.stat(target, follow_symlinks=not nofollow)
            if stat.S_ISREG(info.st_mode):  # a replaced link's mode says nothing
                os.chmod(tmp, stat.S_IMODE(info.st_mode))
        os.replace(tmp, target)
    except OSError as err:
        raise FileRefused(f"{what} {path}: cannot write it ({_why(err)})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(
    path: str | Path,
    data: str | bytes,
    what: str = "output",
    make_parents: bool = True,
    nofollow: bool = False,
) -> Path:
    """Writes ``data`` (text as UTF-8) to ``path`` atomically (see ``atomic_output``)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_output(path, what, make_parents, nofollow) as tmp, open(tmp, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def iter_lines(stream: io.BufferedReader, path: Path, on_chunk=None) -> Iterator[str]:
    """The lines of a capped binary stream as text (without their ``\\n``), read in chunks
    of 1 MiB; a file that is not UTF-8 is a ``FileRefused``. ``on_chunk(nbytes)`` follows
    the reading (a progress bar)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    tail = ""
    while True:
        raw = stream.read(2**20)
        try:
            text = tail + decoder.decode(raw, final=not raw)
        except UnicodeDecodeError:
            raise FileRefused(f"{path}: not a text file (not UTF-8)") from None
        if on_chunk is not None and raw:
            on_chunk(len(raw))
        if not raw:
            if text:
                yield text
            return
        lines = text.split("\n")
        tail = lines.pop()
        yield from lines
