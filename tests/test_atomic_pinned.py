"""Durable writes, recorded step by step: temp fsync -> replace -> folder fsync, temporaries in the
destination's own folder, an existing folder never replaced without overwrite, errors that name the
destination, and the clean-up of a killed run's temporaries."""

import errno
import os
import stat

import pytest

from diffusers_mdiffae import atomic
from diffusers_mdiffae.atomic import (
    atomic_directory,
    atomic_file,
    remove_stale_temporaries,
    rename_noreplace,
    save_safetensors,
    write_error,
)

DEAD = 2**22 + 1  # above pid_max's default: no such process


def _journal(monkeypatch):
    """Record every durability step atomic.py takes, in order, with the real effect kept."""
    steps = []
    real = {name: getattr(atomic, name) for name in ("fsync_file", "fsync_dir", "rename_noreplace")}
    real_replace, real_rename, real_rmtree = os.replace, os.rename, atomic.shutil.rmtree

    def wrap(name):
        def f(*args, **kw):
            steps.append((name, *map(os.fspath, args)))
            return real[name](*args, **kw)

        return f

    for name in real:
        monkeypatch.setattr(atomic, name, wrap(name))

    def replace(a, b):
        steps.append(("replace", os.fspath(a), os.fspath(b)))
        return real_replace(a, b)

    def rename(a, b):
        steps.append(("rename", os.fspath(a), os.fspath(b)))
        return real_rename(a, b)

    def rmtree(p, **kw):
        steps.append(("rmtree", os.fspath(p)))
        return real_rmtree(p, **kw)

    monkeypatch.setattr(atomic.os, "replace", replace)
    monkeypatch.setattr(atomic.os, "rename", rename)
    monkeypatch.setattr(atomic.shutil, "rmtree", rmtree)
    return steps


def test_a_file_is_fsynced_then_replaced_then_its_folder_fsynced(tmp_path, monkeypatch):
    steps = _journal(monkeypatch)
    dest = tmp_path / "sub" / "out.bin"
    with atomic_file(dest) as tmp:
        assert tmp.parent == dest.parent  # the destination's own folder (created), one filesystem
        assert tmp.name.startswith(f".out.bin{atomic.TMP_FILE_TAG}{os.getpid()}-")
        assert steps == []  # nothing happens before the block has written
        tmp.write_bytes(b"payload")
    assert steps == [("fsync_file", str(tmp)), ("replace", str(tmp), str(dest)), ("fsync_dir", str(dest.parent))]
    assert dest.read_bytes() == b"payload" and sorted(p.name for p in dest.parent.iterdir()) == ["out.bin"]


def test_a_finished_file_has_the_usual_permissions(tmp_path):
    with atomic_file(tmp_path / "out.bin") as tmp:
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o600  # mkstemp's while being written
        tmp.write_bytes(b"x")
    assert stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode) == 0o666 & ~atomic._UMASK


def test_a_finished_folder_has_the_usual_permissions_not_mkdtemps(tmp_path):
    with atomic_directory(tmp_path / "model") as tmp:
        assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o700  # mkdtemp's while being written
        (tmp / "config.json").write_text("{}")
    assert stat.S_IMODE(os.stat(tmp_path / "model").st_mode) == 0o777 & ~atomic._UMASK
    (tmp_path / "model" / "config.json").unlink()
    with atomic_directory(tmp_path / "model", overwrite=True) as tmp:
        (tmp / "config.json").write_text("{}")
    assert stat.S_IMODE(os.stat(tmp_path / "model").st_mode) == 0o777 & ~atomic._UMASK


def test_a_failed_file_write_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    steps = _journal(monkeypatch)
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_file(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert [s[0] for s in steps] == []  # never synced, never renamed


def test_a_new_folder_is_synced_whole_then_renamed_in_without_replacing(tmp_path, monkeypatch):
    steps = _journal(monkeypatch)
    dest = tmp_path / "ckpt"
    with atomic_directory(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".ckpt{atomic.TMP_DIR_TAG}{os.getpid()}-")
        (tmp / "inner").mkdir()
        (tmp / "inner" / "w.bin").write_bytes(b"w")
        (tmp / "a.json").write_text("{}")
    names = [s[0] for s in steps]
    i_in = names.index("rename_noreplace")
    assert steps[i_in] == ("rename_noreplace", str(tmp), str(dest))
    synced_files = {s[1] for s in steps[:i_in] if s[0] == "fsync_file"}
    synced_dirs = {s[1] for s in steps[:i_in] if s[0] == "fsync_dir"}
    assert synced_files == {str(tmp / "a.json"), str(tmp / "inner" / "w.bin")}
    assert synced_dirs == {str(tmp), str(tmp / "inner")}
    assert steps[i_in + 1 :] == [("fsync_dir", str(tmp_path))]
    assert (dest / "inner" / "w.bin").read_bytes() == b"w" and [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_overwrite_swaps_aside_in_then_deletes_the_old_one(tmp_path, monkeypatch):
    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / "w").write_text("old")
    steps = _journal(monkeypatch)
    with atomic_directory(dest, overwrite=True) as tmp:
        (tmp / "w").write_text("new")
    moves = [s for s in steps if s[0] in ("rename", "rename_noreplace", "fsync_dir", "rmtree")]
    aside = moves[[m[0] for m in moves].index("rename")]
    old_folder = os.path.dirname(aside[2])
    assert aside[1] == str(dest) and aside[2].endswith(os.sep + "previous")
    assert os.path.dirname(old_folder) == str(tmp_path)  # moved aside within the same folder
    assert os.path.basename(old_folder).startswith(f".ckpt{atomic.OLD_DIR_TAG}{os.getpid()}-")
    tail = moves[moves.index(aside) :]
    assert tail == [
        aside,
        ("rename_noreplace", str(tmp), str(dest)),
        ("fsync_dir", str(tmp_path)),
        ("rmtree", old_folder),
    ]
    assert (dest / "w").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["ckpt"]


@pytest.mark.parametrize("existing", ["folder", "file", "broken_link"])
def test_an_existing_path_is_never_replaced_without_overwrite(tmp_path, existing):
    dest = tmp_path / "out"
    if existing == "folder":
        dest.mkdir()
    elif existing == "file":
        dest.write_text("mine")
    else:
        dest.symlink_to(tmp_path / "nowhere")
    entered = []
    with pytest.raises(FileExistsError) as info:
        with atomic_directory(dest):
            entered.append(True)
    assert not entered  # refused before anything is written
    assert info.value.filename == str(dest) and "--overwrite" in str(info.value)
    assert os.path.lexists(dest) and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_folder_that_appears_meanwhile_is_not_replaced(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(FileExistsError):
        with atomic_directory(dest) as tmp:
            (tmp / "new").write_text("new")
            dest.mkdir()
            (dest / "theirs").write_text("theirs")
    assert [p.name for p in dest.iterdir()] == ["theirs"] and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_rename_noreplace_refuses_existing_files_and_folders(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError) as info:
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert info.value.errno == errno.EEXIST and info.value.filename == str(tmp_path / "b")
    assert (tmp_path / "b").read_text() == "b" and (tmp_path / "a").exists()
    (tmp_path / "d").mkdir()
    (tmp_path / "e").mkdir()
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "d", tmp_path / "e")
    rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()
    with pytest.raises(FileNotFoundError) as info:
        rename_noreplace(tmp_path / "missing", tmp_path / "x")
    assert info.value.errno == errno.ENOENT and info.value.filename == str(tmp_path / "x")


def test_a_folder_write_error_names_the_destination(tmp_path):
    dest = tmp_path / "ckpt"
    with pytest.raises(OSError) as info:
        with atomic_directory(dest) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "w.bin"))
    assert info.value.filename == str(dest) and info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError) as info:  # an error about another path keeps its own name
        with atomic_directory(dest):
            raise OSError(errno.EACCES, "Permission denied", "/elsewhere")
    assert info.value.filename == "/elsewhere"


def test_a_file_error_about_another_path_keeps_its_name(tmp_path):
    with pytest.raises(OSError) as info:
        with atomic_file(tmp_path / "out.bin"):
            raise OSError(errno.EACCES, "Permission denied", "/elsewhere")
    assert info.value.filename == "/elsewhere"
    with pytest.raises(OSError) as info:
        with atomic_file(tmp_path / "out.bin"):
            raise OSError(errno.EIO, "I/O error")  # no file name at all: the destination's
    assert info.value.filename == str(tmp_path / "out.bin") and info.value.errno == errno.EIO


def test_an_unwritable_destination_folder_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as info:
        with atomic_file(tmp_path / "file" / "out.bin"):
            pass
    assert info.value.filename == str(tmp_path / "file" / "out.bin")
    with pytest.raises(OSError) as info:
        with atomic_directory(tmp_path / "file" / "ckpt"):
            pass
    assert info.value.filename == str(tmp_path / "file" / "ckpt")


@pytest.mark.parametrize(
    "text, code",
    [
        ("No space left on device (os error 28)", errno.ENOSPC),
        ("Read-only file system", errno.EROFS),
        ("Permission denied", errno.EACCES),
        ("Disk quota exceeded", errno.EDQUOT),
    ],
)
def test_write_error_recovers_the_errno_from_the_message(text, code):
    err = write_error(RuntimeError(f"I/O error:\n   {text}"), "/out/model.safetensors")
    assert isinstance(err, OSError) and err.errno == code and err.filename == "/out/model.safetensors"
    assert err.strerror == os.strerror(code)


def test_write_error_of_anything_else_is_an_eio_naming_the_type():
    err = write_error(ValueError("odd   failure\nhere"), "/o")
    assert err.errno == errno.EIO and err.filename == "/o"
    assert err.strerror == "cannot write (ValueError: odd failure here)"
    os_err = write_error(OSError(errno.EROFS, "Read-only file system", "/tmp/.x.tmp-1-a"), "/o")
    assert os_err.errno == errno.EROFS and os_err.filename == "/o" and os_err.strerror == "Read-only file system"


def test_save_safetensors_is_atomic_and_names_its_file(tmp_path, monkeypatch):
    import safetensors
    import safetensors.torch
    import torch

    path = save_safetensors({"a": torch.ones(2)}, tmp_path / "w.safetensors", metadata={"k": "v"})
    assert path == tmp_path / "w.safetensors"
    with safetensors.safe_open(str(path), "pt") as f:
        assert f.metadata() == {"k": "v"}
    assert torch.equal(safetensors.torch.load_file(path)["a"], torch.ones(2))

    def full(*a, **kw):
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError) as info:
        save_safetensors({"a": torch.ones(2)}, tmp_path / "x.safetensors")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "x.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_temporary_names_are_parsed_by_their_tags():
    parse = atomic._parse_temporary
    assert parse(f".out.png{atomic.TMP_FILE_TAG}123-abc") == ("out.png", atomic.TMP_FILE_TAG, 123)
    assert parse(f".step_5{atomic.TMP_DIR_TAG}77-x") == ("step_5", atomic.TMP_DIR_TAG, 77)
    assert parse(f".m{atomic.OLD_DIR_TAG}9-y") == ("m", atomic.OLD_DIR_TAG, 9)
    assert parse(f".m{atomic.TMP_FILE_TAG}zz-y") == ("m", atomic.TMP_FILE_TAG, -1)
    assert parse(f"out{atomic.TMP_FILE_TAG}1-a") is None  # not a dot-name
    assert parse(f".{atomic.TMP_FILE_TAG}1-a") is None  # no final name
    assert parse(".notes.txt") is None


def test_stale_temporaries_are_removed_only_for_the_names_asked(tmp_path):
    mk = {}
    for base in ("step_1", "step_2", "log.jsonl"):
        p = tmp_path / f".{base}{atomic.TMP_DIR_TAG}{DEAD}-q"
        p.mkdir()
        mk[base] = p
    f = tmp_path / f".step_3{atomic.TMP_FILE_TAG}{DEAD}-q"
    f.write_text("partial")
    assert sorted(remove_stale_temporaries(tmp_path, "step_", names={"step_1", "step_3"})) == sorted(
        [mk["step_1"].name, f.name]
    )
    assert mk["step_2"].exists() and mk["log.jsonl"].exists()
    assert remove_stale_temporaries(tmp_path, "step_") == [mk["step_2"].name]
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_a_moved_aside_folder_is_not_put_back_over_a_new_one(tmp_path):
    aside = tmp_path / f".model{atomic.OLD_DIR_TAG}{DEAD}-abc"
    (aside / "previous").mkdir(parents=True)
    (aside / "previous" / "w").write_text("old")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w").write_text("new")
    assert remove_stale_temporaries(tmp_path) == [aside.name]
    assert (tmp_path / "model" / "w").read_text() == "new" and not aside.exists()


def test_pid_liveness():
    assert atomic._pid_alive(os.getpid())
    assert not atomic._pid_alive(DEAD)
    assert not atomic._pid_alive(0) and not atomic._pid_alive(-1)


def test_pid_liveness_reads_the_kill_probe(monkeypatch):
    """No real signal is sent: os.kill is replaced, so pid 1 is never touched."""
    sent = []

    def probe(outcome):
        def kill(pid, sig):
            sent.append((pid, sig))
            if outcome is not None:
                raise outcome

        return kill

    monkeypatch.setattr(atomic.os, "kill", probe(None))
    assert atomic._pid_alive(1) and sent == [(1, 0)]  # signal 0 only probes
    monkeypatch.setattr(atomic.os, "kill", probe(PermissionError()))
    assert atomic._pid_alive(5)  # exists, owned by someone else
    monkeypatch.setattr(atomic.os, "kill", probe(ProcessLookupError()))
    assert not atomic._pid_alive(5)
    monkeypatch.setattr(atomic.os, "kill", probe(OSError(errno.EINVAL, "bad")))
    assert not atomic._pid_alive(5)


def test_temporary_names_with_repeated_tags_and_dashes():
    parse = atomic._parse_temporary
    tag = atomic.TMP_FILE_TAG
    assert parse(f".a{tag}b{tag}12-x") == (f"a{tag}b", tag, 12)  # the last tag separates
    assert parse(f".m{tag}12-a-b") == ("m", tag, 12)


def test_only_the_asked_temporaries_go_whatever_the_listing_order(tmp_path):
    keep, gone = [], []
    for i in range(5):
        k = tmp_path / f".other{i}{atomic.TMP_DIR_TAG}{DEAD}-q"  # another job's name
        k.mkdir()
        keep.append(k)
        g = tmp_path / f".step_{i}{atomic.TMP_DIR_TAG}{DEAD}-q"
        g.mkdir()
        gone.append(g)
        live = tmp_path / f".step_live{i}{atomic.TMP_FILE_TAG}{os.getpid()}-q"
        live.write_text("in progress")
        keep.append(live)
    assert sorted(remove_stale_temporaries(tmp_path, "step_")) == sorted(g.name for g in gone)
    assert all(k.exists() for k in keep) and not any(g.exists() for g in gone)


def test_stale_files_and_folders_are_really_deleted(tmp_path):
    f = tmp_path / f".x.png{atomic.TMP_FILE_TAG}{DEAD}-q"
    f.write_text("partial")
    d = tmp_path / f".x{atomic.TMP_DIR_TAG}{DEAD}-q"
    (d / "previous").mkdir(parents=True)  # a temporary folder is never "put back", whatever it holds
    link = tmp_path / f".y{atomic.TMP_DIR_TAG}{DEAD}-q"
    link.symlink_to(tmp_path / "elsewhere")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([f.name, d.name, link.name])
    assert list(tmp_path.iterdir()) == []


def test_an_aside_folder_without_its_copy_is_just_removed(tmp_path):
    empty = tmp_path / f".model{atomic.OLD_DIR_TAG}{DEAD}-abc"
    empty.mkdir()
    assert remove_stale_temporaries(tmp_path) == [empty.name]
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_that_vanishes_meanwhile_is_not_an_error(tmp_path, monkeypatch):
    f = tmp_path / f".x.png{atomic.TMP_FILE_TAG}{DEAD}-q"
    f.write_text("partial")

    def gone(self, *a, **kw):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(self))

    monkeypatch.setattr(type(f), "unlink", gone)
    assert remove_stale_temporaries(tmp_path) == [f.name]


def test_renamed_errors_keep_the_cause_and_a_message():
    original = OSError(errno.EROFS, "Read-only file system", "/t/.x")
    err = write_error(original, "/o")
    assert err.__cause__ is original
    bare = write_error(OSError("plain words"), "/o")  # no errno, no strerror: the text is kept
    assert bare.strerror == "plain words" and bare.filename == "/o" and bare.errno is None


def test_a_temporary_that_cannot_be_deleted_does_not_stop_the_clean_up(tmp_path, monkeypatch):
    stuck = tmp_path / f".x{atomic.TMP_DIR_TAG}{DEAD}-q"
    stuck.mkdir()
    (stuck / "w.bin").write_bytes(b"w")
    other = tmp_path / f".y.png{atomic.TMP_FILE_TAG}{DEAD}-q"
    other.write_text("partial")
    real_unlink = os.unlink

    def refuse(path, *a, **kw):
        if os.fspath(path) == "w.bin" or os.fspath(path).endswith("w.bin"):
            raise PermissionError(errno.EPERM, "Operation not permitted", os.fspath(path))
        return real_unlink(path, *a, **kw)

    monkeypatch.setattr(os, "unlink", refuse)
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stuck.name, other.name])
    assert not other.exists()


def test_rename_noreplace_works_on_relative_paths_and_says_how_to_replace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError) as info:
        rename_noreplace("a", "b")
    assert info.value.strerror == "exists; pass --overwrite to replace it" and info.value.filename == "b"
    rename_noreplace("a", "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()
    with pytest.raises(FileNotFoundError) as info:
        rename_noreplace("missing", "d")
    assert info.value.strerror == os.strerror(errno.ENOENT) and info.value.filename == "d"


def test_rename_noreplace_without_renameat2_checks_first(tmp_path, monkeypatch):
    def no_libc(*a, **kw):
        raise OSError("no renameat2 here")

    monkeypatch.setattr(atomic.ctypes, "CDLL", no_libc)
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError) as info:
        rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (info.value.errno, info.value.strerror, info.value.filename) == (
        errno.EEXIST,
        "exists; pass --overwrite to replace it",
        str(tmp_path / "b"),
    )
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        rename_noreplace(tmp_path / "a", tmp_path / "dangling")  # a broken link is taken too
    rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()


def test_fsync_dir_syncs_folders_only(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    (tmp_path / "f").write_text("x")
    atomic.fsync_dir(tmp_path / "f")  # not a folder: nothing to make durable, no error
    atomic.fsync_dir(tmp_path / "missing")
    assert synced == []
    atomic.fsync_dir(tmp_path)
    assert len(synced) == 1
