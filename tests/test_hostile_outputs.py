"""Hostile: the output rule (outputs.py) and durable atomic writes (atomic.py)."""

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusers_mdiffae import atomic
from diffusers_mdiffae.atomic import atomic_directory, atomic_file, remove_stale_temporaries
from diffusers_mdiffae.outputs import (
    OutputError,
    check_output_not_input,
    check_planned_outputs,
    image_format,
    is_folder_target,
    mirror_outputs,
    names_from_sources,
)

# -- never write onto an input ------------------------------------------------------------------


def test_same_file_by_any_spelling_is_refused(tmp_path):
    src = tmp_path / "photo.png"
    src.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(src)
    os.link(src, tmp_path / "hard.png")
    for out in (src, tmp_path / "." / "photo.png", tmp_path / "link.png", tmp_path / "hard.png"):
        with pytest.raises(OutputError, match="is the input"):
            check_output_not_input(out, [src])


def test_folder_onto_itself_or_inside_itself_is_refused(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    with pytest.raises(OutputError, match="is the input"):
        check_output_not_input(Path(str(src) + "/"), [src])
    with pytest.raises(OutputError, match="inside the input folder"):
        check_output_not_input(src / "out", [src])
    check_output_not_input(src / "out", [src], reread=False)  # shards are not read back
    check_output_not_input(tmp_path / "elsewhere", [src])


def test_convert_rule_for_the_lead_snapshot_onto_or_around_itself(tmp_path):
    """``check_output_not_input(out, [snapshot], replaces_folder=True)`` is what ``convert`` must call."""
    snap = tmp_path / "models" / "snap"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").write_bytes(b"weights")
    for out, why in (
        (snap, "is the input"),
        (snap / "converted", "inside the input folder"),
        (tmp_path / "models", "contains the input"),
    ):
        with pytest.raises(OutputError, match=why):
            check_output_not_input(out, [snap], replaces_folder=True)
    check_output_not_input(tmp_path / "converted", [snap], replaces_folder=True)
    assert (snap / "model.safetensors").read_bytes() == b"weights"


def test_two_sources_on_one_output_are_refused_with_both_names(tmp_path):
    src = tmp_path / "src"
    for name in ("a.jpg", "a.png", "b.png"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"x")
    inputs = sorted(src.iterdir())
    with pytest.raises(OutputError) as e:
        mirror_outputs(inputs, src, tmp_path / "out")
    assert "a.jpg" in str(e.value) and "a.png" in str(e.value)
    assert mirror_outputs([src / "b.png"], src, tmp_path / "out", ".webp") == [tmp_path / "out" / "b.webp"]


def test_planned_output_equal_to_an_input_is_refused(tmp_path):
    inp = tmp_path / "x.png"
    inp.write_bytes(b"x")
    with pytest.raises(OutputError, match="is the input"):
        check_planned_outputs([tmp_path / "x.png"], ["latent.0"], [inp])


def test_decode_names_keep_folders_and_never_escape():
    assert names_from_sources(["imgs/a/x.png", "imgs/b/x.png"]) == [Path("a/x.png"), Path("b/x.png")]
    assert names_from_sources(["/abs/one.jpg"]) == [Path("one.png")]
    assert names_from_sources([None, "p.png"]) == [Path("image_0.png"), Path("p.png")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(min_size=0, max_size=30)), min_size=1, max_size=6))
def test_decode_names_are_always_relative_and_inside(sources):
    for name in names_from_sources(sources):
        assert not name.is_absolute() and ".." not in name.parts and name.suffix == ".png"


def test_extension_names_the_format_or_is_refused():
    assert image_format("a.PNG") == "PNG" and image_format("a.jpeg") == "JPEG" and image_format("a.tif") == "TIFF"
    for bad, why in (("a.gif", "256 colours"), ("a.xyz", "cannot write .xyz"), ("decoded", "no image extension")):
        with pytest.raises(OutputError, match=why):
            image_format(bad)


def test_folder_targets(tmp_path):
    assert is_folder_target("decoded/") and is_folder_target(str(tmp_path))
    assert not is_folder_target(str(tmp_path / "decoded"))


# -- durable atomic writes -------------------------------------------------------------------


def _record(monkeypatch):
    """Record fsync (by path), replace and rename calls in order."""
    calls = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b):
        calls.append(("replace", os.fspath(a), os.fspath(b)))
        return real_replace(a, b)

    def rename(a, b):
        calls.append(("rename", os.fspath(a), os.fspath(b)))
        return real_rename(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    return calls


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors")
def test_file_data_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    calls = _record(monkeypatch)
    dest = tmp_path / "out.bin"
    with atomic_file(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.startswith(".out.bin")  # same folder, hidden
        tmp.write_bytes(b"data")
    kinds = [c[0] for c in calls]
    i_replace = kinds.index("replace")
    assert calls[i_replace][2] == str(dest)
    assert ("fsync", calls[i_replace][1]) in calls[:i_replace]  # the temporary's data first
    assert ("fsync", str(tmp_path)) in calls[i_replace + 1 :]  # then the folder holding the new name
    assert dest.read_bytes() == b"data"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors")
def test_folder_contents_synced_before_it_is_renamed_in(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "rename_noreplace", lambda a, b: os.rename(a, b))  # make the rename visible
    calls = _record(monkeypatch)
    with atomic_directory(tmp_path / "ckpt") as tmp:
        (tmp / "w.bin").write_bytes(b"w")
    i_rename = [c[0] for c in calls].index("rename")
    synced = [c[1] for c in calls[:i_rename] if c[0] == "fsync"]
    assert any(p.endswith("w.bin") for p in synced) and ("fsync", str(tmp_path)) in calls[i_rename:]


def test_an_existing_folder_is_never_replaced_without_overwrite(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "keep").write_text("old")
    with pytest.raises(FileExistsError):
        with atomic_directory(dest):
            pass
    # and one that appears while the new one is being written is not replaced either
    late = tmp_path / "late"
    with pytest.raises(FileExistsError):
        with atomic_directory(late) as tmp:
            (tmp / "new").write_text("new")
            late.mkdir()
            (late / "theirs").write_text("theirs")
    assert (dest / "keep").read_text() == "old" and (late / "theirs").read_text() == "theirs"
    assert not (late / "new").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_overwrite_keeps_the_old_folder_until_the_new_one_is_in_place(tmp_path, monkeypatch):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "w").write_text("old")

    def fail(a, b):
        raise OSError(28, "No space left on device", str(b))

    monkeypatch.setattr(atomic, "rename_noreplace", fail)
    with pytest.raises(OSError):
        with atomic_directory(dest, overwrite=True) as tmp:
            (tmp / "w").write_text("new")
    assert (dest / "w").read_text() == "old"  # before the fix: rmtree(old) had already run
    monkeypatch.undo()
    with atomic_directory(dest, overwrite=True) as tmp:
        (tmp / "w").write_text("new")
    assert (dest / "w").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_kill_between_aside_and_in_is_repaired_by_the_next_run(tmp_path):
    """The only copy, moved aside by a writer that died (pid 2**22+1 cannot exist), is put back."""
    aside = tmp_path / f".model{atomic.OLD_DIR_TAG}{2**22 + 1}-abc"
    (aside / "previous").mkdir(parents=True)
    (aside / "previous" / "w").write_text("old")
    (tmp_path / f".model{atomic.TMP_DIR_TAG}{2**22 + 1}-def").mkdir()
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 2 and (tmp_path / "model" / "w").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    live = tmp_path / f".x.png{atomic.TMP_FILE_TAG}{os.getpid()}-abc"
    live.write_bytes(b"in progress")
    dead = tmp_path / f".x.png{atomic.TMP_FILE_TAG}{2**22 + 1}-abc"
    dead.write_bytes(b"partial")
    mine = tmp_path / ".notes.txt"
    mine.write_text("a user's hidden file")
    assert remove_stale_temporaries(tmp_path) == [dead.name]
    assert live.exists() and mine.exists()


def test_write_errors_name_the_destination_not_the_temporary(tmp_path):
    with pytest.raises(OSError) as e:
        with atomic_file(tmp_path / "out.png") as tmp:
            raise OSError(28, "No space left on device", str(tmp))
    assert e.value.filename == str(tmp_path / "out.png") and e.value.errno == 28
    assert list(tmp_path.iterdir()) == []


def test_concurrent_writers_to_one_file_leave_one_complete_file(tmp_path):
    dest = tmp_path / "out.bin"
    payloads = [bytes([i]) * 200_000 for i in range(4)]
    seen, stop = set(), threading.Event()

    def writer(data):
        for _ in range(15):
            with atomic_file(dest) as tmp:
                tmp.write_bytes(data)

    def reader():
        while not stop.is_set():
            if dest.exists():
                seen.add(dest.read_bytes())

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert seen <= set(payloads) and dest.read_bytes() in payloads  # never a mix or a torn file
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_concurrent_folder_writers_without_overwrite_one_wins(tmp_path):
    dest, results, barrier = tmp_path / "ckpt", [], threading.Barrier(4)

    def writer(i):
        try:
            with atomic_directory(dest) as tmp:
                (tmp / "who").write_text(str(i))
                barrier.wait(timeout=10)
            results.append(("ok", i))
        except FileExistsError:
            results.append(("exists", i))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for kind, i in results if kind == "ok"]
    assert len(winners) == 1 and (dest / "who").read_text() == str(winners[0])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
