"""How folder commands report a file they skip: where a message goes (stderr, around a progress bar,
flushed at once), the reason sentence taken from an error, and the tally's counts (in-process)."""

import io
import sys

import pytest
from tqdm import tqdm

from diffusers_mdiffae.skipping import SkipTally, describe_error, reason_of, say

# -- say: one line on stderr ---------------------------------------------------------------------


def test_say_without_tqdm_prints_the_line_on_stderr(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "tqdm", raising=False)
    say("skipped a.png: truncated")
    assert capsys.readouterr() == ("", "skipped a.png: truncated\n")


def test_say_without_tqdm_reaches_a_block_buffered_stderr_at_once(monkeypatch):
    """A log file behind a buffered stderr gets the line when it is said, not when the buffer fills."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, encoding="utf-8", line_buffering=False))
    monkeypatch.delitem(sys.modules, "tqdm", raising=False)
    say("skipped b.png: not an image")
    assert raw.getvalue() == b"skipped b.png: not an image\n"


def test_say_with_a_progress_bar_showing_puts_the_line_between_bar_redraws(capsys):
    assert "tqdm" in sys.modules  # imported by this test file, as the commands import it
    bar = tqdm(total=3, desc="work", file=sys.stderr)
    capsys.readouterr()
    say("skipped c.png: too small")
    err = capsys.readouterr().err
    bar.close()
    # the bar line is cleared first (\r, blanks, \r), the message gets its own line, the bar comes back
    before, message, after = err.partition("skipped c.png: too small\n")
    assert message and before.startswith("\r") and before.endswith("\r") and before.strip() == ""
    assert after.startswith("\rwork:   0%")


# -- reason_of: the reason part of a skip line ---------------------------------------------------


def test_reason_of_an_os_error_is_its_strerror_without_the_errno_or_file():
    e = FileNotFoundError(2, "No such file or directory", "a.png")
    assert reason_of(e, "a.png") == "No such file or directory"
    assert reason_of(e) == "No such file or directory"
    assert reason_of(PermissionError(13, "Permission denied")) == "Permission denied"


def test_reason_of_an_os_error_without_strerror_is_its_message():
    assert reason_of(OSError("a.png: image file is truncated"), "a.png") == "image file is truncated"
    assert reason_of(OSError("broken data stream")) == "broken data stream"


def test_reason_of_drops_only_the_leading_name_it_was_given():
    assert reason_of(ValueError("a.png: cannot identify image"), "a.png") == "cannot identify image"
    assert reason_of(ValueError("b.png: cannot identify image"), "a.png") == "b.png: cannot identify image"
    assert reason_of(ValueError("see a.png: here"), "a.png") == "see a.png: here"
    assert reason_of(ValueError("a.png:no space"), "a.png") == "a.png:no space"


@pytest.mark.parametrize("prefix", ["a.png", "XXXX", "error", "image[3]"])
def test_reason_of_without_a_name_keeps_any_leading_name(prefix):
    assert reason_of(ValueError(f"{prefix}: bad bytes")) == f"{prefix}: bad bytes"


def test_reason_of_is_one_line_or_the_error_type_when_the_message_is_empty():
    assert reason_of(ValueError("a.png: first\n\n  second  \n"), "a.png") == "first; second"
    assert reason_of(EOFError()) == "EOFError"
    assert reason_of(ValueError("   \n")) == "ValueError"


def test_reason_of_a_memory_error_says_memory_and_keeps_any_detail():
    assert reason_of(MemoryError()) == "not enough memory to decode it"
    assert reason_of(MemoryError(), "a.png") == "not enough memory to decode it"
    assert reason_of(MemoryError("a.png: 3 GB needed"), "a.png") == "not enough memory to decode it (3 GB needed)"
    assert reason_of(MemoryError("MemoryError")) == "not enough memory to decode it"
    assert reason_of(MemoryError("memoryerror")) == "not enough memory to decode it (memoryerror)"


# -- describe_error: the one error line of a failed command ---------------------------------------


class _Flagged(Exception):
    def __init__(self, message, user_facing):
        super().__init__(message)
        self.user_facing = user_facing


def test_describe_error_keeps_the_type_name_unless_the_error_is_meant_for_users():
    assert describe_error(_Flagged("explained", True)) == "explained"
    assert describe_error(_Flagged("internal", False)) == "_Flagged: internal"
    assert describe_error(_Flagged("", True)) == "_Flagged"
    assert describe_error(KeyError("k")) == "KeyError: 'k'"
    assert describe_error(ValueError("")) == "ValueError"


# -- SkipTally: counting and reporting ------------------------------------------------------------


def test_tally_attempt_returns_the_result_or_skips_with_the_reason_once():
    logged = []
    tally = SkipTally(log=logged.append, verb="encoded")

    def load(name):
        if name.startswith("bad"):
            raise ValueError(f"{name}: cannot identify image")
        return name.upper()

    assert tally.attempt("a.png", load, "a.png") == (True, "A.PNG")
    assert tally.attempt("bad.png", load, "bad.png") == (False, None)
    tally.done()
    assert logged == ["skipped bad.png: cannot identify image"]
    assert tally.skipped == [("bad.png", "cannot identify image")]
    assert tally.summary() == "encoded 1, skipped 1"
    assert not tally.nothing_done


def test_tally_lets_errors_that_are_not_the_files_through():
    tally = SkipTally(log=lambda _: None)

    def bug():
        raise KeyError("x")

    with pytest.raises(KeyError):
        tally.attempt("a.png", bug)
    assert tally.skipped == []


def test_tally_fails_only_when_there_was_work_and_none_of_it_succeeded():
    tally = SkipTally(log=lambda _: None)
    assert not tally.nothing_done and tally.summary() == "wrote 0, skipped 0"
    tally.skip("a.png", "bad")
    assert tally.nothing_done
    tally.done(2)
    assert not tally.nothing_done and tally.summary() == "wrote 2, skipped 1"


def test_tally_attempt_passes_keyword_arguments_on():
    tally = SkipTally(log=lambda line: None)
    assert tally.attempt("a.png", lambda name, mode="L": (name, mode), "a.png", mode="RGB") == (True, ("a.png", "RGB"))
