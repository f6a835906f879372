"""One way for folder commands to go on past a file they cannot use.

reconstruct, encode, decode, eval, train and encode-dataset all follow it: a file that cannot be
read is skipped with a line saying why, the run goes on, the end prints ``wrote N, skipped M``,
and the command fails only when nothing at all could be done. One bad file in ten thousand then
costs one file, not the run (nor every restart of it).

Messages go through the progress bar's own ``write`` when tqdm is in use, so they do not land in
the middle of a bar line. Nothing here imports torch.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, List, Optional, Tuple

#: What "cannot use this file" looks like: decoding errors (ImageLoadError is a ValueError), I/O
#: errors while reading, shapes a model refuses (ValueError), and images too large to hold.
SKIPPABLE = (ValueError, OSError, MemoryError, EOFError)


def say(msg: str) -> None:
    """Print a message on stderr without breaking a progress bar that may be showing."""
    tqdm_mod = sys.modules.get("tqdm")
    if tqdm_mod is not None:
        tqdm_mod.tqdm.write(msg, file=sys.stderr)
    else:
        print(msg, file=sys.stderr, flush=True)


def one_line(text: str) -> str:
    """Messages are single lines: a multi-line reason is joined with '; '."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def reason_of(error: BaseException, name: str = "") -> str:
    """The reason part of an error message, without a leading ``name:`` the error already carried."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
    else:
        text = one_line(str(error)) or type(error).__name__
    if name and text.startswith(f"{name}: "):
        text = text[len(name) + 2 :]
    if isinstance(error, MemoryError):
        text = "not enough memory to decode it" + (f" ({text})" if text != "MemoryError" else "")
    return text


class SkipTally:
    """Counts what a folder command did and what it skipped, and reports each skip once.

    >>> tally = SkipTally()
    >>> ok, image = tally.attempt("a.png", load, "a.png")   # (False, None) after reporting a skip
    >>> tally.done()
    >>> tally.summary()  # 'wrote 1, skipped 0'
    """

    def __init__(self, log: Callable[[str], None] = say, verb: str = "wrote"):
        self.log = log
        self.verb = verb
        self.count = 0
        self.skipped: List[Tuple[str, str]] = []

    def done(self, n: int = 1) -> None:
        self.count += n

    def skip(self, name: str, reason: str) -> None:
        self.skipped.append((str(name), one_line(reason)))
        self.log(f"skipped {name}: {one_line(reason)}")

    def attempt(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Tuple[bool, Optional[Any]]:
        """``(True, fn(...))``, or ``(False, None)`` after reporting a skip if ``fn`` raised a :data:`SKIPPABLE`."""
        try:
            return True, fn(*args, **kwargs)
        except SKIPPABLE as e:
            self.skip(name, reason_of(e, str(name)))
            return False, None

    def summary(self) -> str:
        return f"{self.verb} {self.count}, skipped {len(self.skipped)}"

    @property
    def nothing_done(self) -> bool:
        """True when there was work and none of it succeeded: the only case that fails the command."""
        return self.count == 0 and bool(self.skipped)


def describe_error(exc: BaseException) -> str:
    """One line for any failure: ``<file>: <reason>`` where the error knows its file.

    Errors meant for users (ValueError and friends, or any with ``user_facing = True``) print
    their message alone; anything else keeps its type name, which says what went wrong.
    """
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or one_line(exc)}"
    if isinstance(exc, MemoryError):
        return "out of memory (try smaller inputs, --dtype bfloat16, or a smaller batch)"
    text = one_line(exc)
    if text and (isinstance(exc, ValueError) or getattr(exc, "user_facing", False)):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
