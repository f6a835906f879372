"""Write files and folders so that readers see either nothing or the complete result.

Everything is written under a temporary name in the destination's own folder (same filesystem)
and moved into place with a rename; on any error, or a kill, only the temporary remains, under a
dot-name that no reader picks up (and that the next run of the same job removes).

Durability: the temporary's data is flushed to disk (``os.fsync``) *before* the rename, and the
folder holding the new name is synced after it, so a power cut after "wrote X" cannot leave X
empty or missing. A replaced folder is swapped, never deleted first: the old one is renamed aside,
the new one renamed in, and only then is the old one removed.

Errors name the destination, not the temporary, so a message reads ``out.png: No space left on
device`` instead of naming a hidden file the user never asked for.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

# mkstemp/mkdtemp create 0600 files and 0700 folders; finished outputs get the usual permissions
# (0666 for files, 0777 for folders, minus the umask).
_UMASK = os.umask(0)
os.umask(_UMASK)

#: Name fragments of this module's temporaries, for jobs that clean up after a killed run.
TMP_FILE_TAG = ".tmp-"
TMP_DIR_TAG = ".dirtmp-"
OLD_DIR_TAG = ".old-"


def fsync_file(path: Union[str, os.PathLike]) -> None:
    """Flush ``path``'s data to the device (works on a read-only descriptor on POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Union[str, os.PathLike]) -> None:
    """Make a rename inside ``path`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def _renamed_error(e: OSError, path: Path) -> OSError:
    """The same error, naming the destination the user asked for."""
    err = OSError(e.errno, e.strerror or str(e), str(path))
    err.__cause__ = e
    return err


_MESSAGE_ERRNOS = (
    ("No space left", errno.ENOSPC),
    ("Read-only file system", errno.EROFS),
    ("Permission denied", errno.EACCES),
    ("Disk quota", errno.EDQUOT),
)


def write_error(error: BaseException, path: Union[str, os.PathLike]) -> OSError:
    """An ``OSError`` naming ``path`` for a writer's failure that is not one (e.g. safetensors' own type).

    The errno is recovered from the message where it names one (disk full, read-only, permission).
    """
    if isinstance(error, OSError):
        return _renamed_error(error, Path(path))
    text = " ".join(str(error).split())
    for fragment, code in _MESSAGE_ERRNOS:
        if fragment in text:
            return OSError(code, os.strerror(code), str(path))
    return OSError(errno.EIO, f"cannot write ({type(error).__name__}: {text})", str(path))


def save_safetensors(tensors: dict, path: Union[str, os.PathLike], metadata: Optional[dict] = None) -> Path:
    """``safetensors.torch.save_file`` through :func:`atomic_file`; failures are ``OSError`` naming ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_file(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except OSError:
            raise
        except Exception as e:  # safetensors reports I/O failures as SafetensorError
            raise write_error(e, path) from None
    return path


@contextlib.contextmanager
def atomic_file(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``path`` when the block completes.

    The temporary lives in ``path``'s folder, is fsynced before the rename, and the folder is
    fsynced after it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_FILE_TAG}{os.getpid()}-", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise _renamed_error(e, path) from None
    try:
        yield Path(tmp)
        fsync_file(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and (e.filename in (None, tmp) or str(e.filename) == str(tmp)):
            raise _renamed_error(e, path) from None
        raise


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_file(os.path.join(folder, name))
        fsync_dir(folder)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def rename_noreplace(src: Union[str, os.PathLike], dst: Union[str, os.PathLike]) -> None:
    """Rename ``src`` to ``dst``, failing with ``FileExistsError`` if ``dst`` exists.

    Uses Linux ``renameat2(RENAME_NOREPLACE)`` so the check and the rename are one step; elsewhere
    (or on filesystems without it) it checks first, which leaves a tiny window for a racing writer.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    fn = None
    with contextlib.suppress(OSError, AttributeError):
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST or code == errno.ENOTEMPTY:
            raise FileExistsError(errno.EEXIST, "exists; pass --overwrite to replace it", dst)
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), dst)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "exists; pass --overwrite to replace it", dst)
    os.rename(src, dst)


@contextlib.contextmanager
def atomic_directory(path: Union[str, os.PathLike], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to fill; it becomes ``path`` when the block completes.

    An existing ``path`` is replaced only with ``overwrite=True``, and only once the new folder is
    complete and synced: old renamed aside, new renamed in, old deleted. If the swap fails half way
    the old folder is put back. Without ``overwrite`` a folder that appears while the block runs
    is not replaced either (the final rename refuses to).
    """
    path = Path(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(errno.EEXIST, "exists; pass --overwrite to replace it", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_DIR_TAG}{os.getpid()}-", dir=path.parent))
    except OSError as e:
        raise _renamed_error(e, path) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's 0700 would make the finished folder private
        _fsync_tree(tmp)
        if overwrite and os.path.lexists(path):
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}{OLD_DIR_TAG}{os.getpid()}-", dir=path.parent))
            aside = old / "previous"
            os.rename(path, aside)
            try:
                rename_noreplace(tmp, path)
            except BaseException:
                os.rename(aside, path)
                shutil.rmtree(old, ignore_errors=True)
                raise
            fsync_dir(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            rename_noreplace(tmp, path)
            fsync_dir(path.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        inside = str(getattr(e, "filename", None) or "").startswith(str(tmp))
        if isinstance(e, OSError) and not isinstance(e, FileExistsError) and inside:
            raise _renamed_error(e, path) from None
        raise


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _parse_temporary(name: str):
    """``(final name, tag, pid)`` of one of this module's temporaries, or None for any other name."""
    if not name.startswith("."):
        return None
    for tag in (TMP_DIR_TAG, OLD_DIR_TAG, TMP_FILE_TAG):
        base, found, rest = name[1:].rpartition(tag)
        if found and base:
            pid = rest.split("-", 1)[0]
            return base, tag, int(pid) if pid.isdigit() else -1
    return None


def remove_stale_temporaries(folder: Union[str, os.PathLike], stem_prefix: str = "", names=None) -> list:
    """Delete this module's leftovers of a killed run in ``folder`` (not recursive); returns their names.

    Only dot-names carrying this module's tags are touched, only for final names starting with
    ``stem_prefix`` (or in ``names``), and only when the process that made them is gone, so a
    concurrent writer's temporary is left alone. A folder that was moved aside for replacement
    and never replaced is put back instead of deleted.
    """
    folder = Path(folder)
    removed: list = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        parsed = _parse_temporary(p.name)
        if parsed is None:
            continue
        base, tag, pid = parsed
        if not base.startswith(stem_prefix) or (names is not None and base not in names) or _pid_alive(pid):
            continue
        if tag == OLD_DIR_TAG and p.is_dir() and not p.is_symlink():
            # killed between "old aside" and "new in": the old folder is the only copy, put it back
            target = folder / base
            if (p / "previous").is_dir() and not os.path.lexists(target):
                os.rename(p / "previous", target)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p.name)
    return removed
