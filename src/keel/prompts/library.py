"""PromptLibrary: the prompts in a folder, reloaded when their files (or partials) change on disk."""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import PromptNotFound
from .spec import PARTIALS_DIR, PROMPT_SUFFIX, PromptSpec, prompt_name

#: (mtime_ns, size, inode) of each file a spec was built from; None for a file that is gone.
Stamp = tuple[tuple[str, tuple[int, int, int] | None], ...]


class PromptLibrary:
    """`root/NAME.prompt.yaml` files, partials in `root/partials/`.

    `get()` checks the files' mtimes, sizes and inodes on every call (a few `stat`s) and re-reads
    a prompt only when one of them changed, so a long-running gateway sees edits without restart.
    """

    def __init__(self, root: Path | str, partials_dir: Path | str | None = None) -> None:
        self.root = Path(root)
        self.partials_dir = Path(partials_dir) if partials_dir is not None else self.root / PARTIALS_DIR
        self._cache: dict[str, tuple[Stamp, PromptSpec]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Sorted names of the prompts on disk now."""
        try:
            entries = list(os.scandir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(prompt_name(Path(e.name)) for e in entries if e.name.endswith(PROMPT_SUFFIX) and e.is_file())

    def path(self, name: str) -> Path:
        """Where the prompt `name` lives (whether or not it exists)."""
        return self.root / f"{name}{PROMPT_SUFFIX}"

    def get(self, name: str) -> PromptSpec:
        """The current definition of `name`; PromptNotFound (with close names) when there is none."""
        path = self.path(name)
        if "/" in name or os.sep in name or not path.is_file():
            with self._lock:
                self._cache.pop(name, None)
            raise self._not_found(name)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == _stamp(cached[0]):
            return cached[1]
        before = _stamp(((str(path), None),))
        spec = PromptSpec.load(path, self.partials_dir)
        stamp = _stamp(((str(path), None), *((str(self.partials_dir / p), None) for p in spec.partials)))
        if stamp[0] == before[0]:  # unchanged while we read it: safe to cache
            with self._lock:
                self._cache[name] = (stamp, spec)
        return spec

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[PromptSpec]:
        """Every prompt, loaded (raises on the first invalid one)."""
        return (self.get(name) for name in self.names())

    def _not_found(self, name: str) -> PromptNotFound:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        where = f"{self.root}/" if self.root.is_dir() else f"{self.root}/ (the folder does not exist)"
        return PromptNotFound(
            f"No prompt named {name!r}: looked for {self.path(name).name} in {where}.{hint}",
            name=name, root=str(self.root), suggestions=close,
        )


def _stamp(files: Stamp) -> Stamp:
    """Fresh (mtime_ns, size, inode) for the same files."""
    return tuple((file, _stat(file)) for file, _ in files)


def _stat(file: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(file)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)
