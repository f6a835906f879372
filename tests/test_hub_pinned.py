"""models/hub pinned: the strict loader's report of what does not match, line by line."""

import pytest

from diffusers_mdiffae.models.hub import check_loading_info


def _report(info):
    with pytest.raises(ValueError) as err:
        check_loading_info(info, "/models/m", "AutoencoderMDiffAE")
    return str(err.value)


def test_a_clean_load_passes():
    check_loading_info({}, "/models/m", "AutoencoderMDiffAE")
    empty = {"missing_keys": [], "unexpected_keys": None, "mismatched_keys": [], "error_msgs": []}
    check_loading_info(empty, "/models/m", "AutoencoderMDiffAE")


def test_every_kind_of_mismatch_is_listed_sorted_and_counted():
    info = {
        "missing_keys": ["b.weight", "a.bias"],
        "unexpected_keys": ["z.extra"],
        "mismatched_keys": [("c.weight", (4, 2), (4, 3)), ("d.bias", [8], [9])],
        "error_msgs": ["size mismatch", RuntimeError("bad")],
    }
    assert _report(info) == (
        "checkpoint /models/m does not match AutoencoderMDiffAE(config):\n"
        "  missing keys (2): a.bias, b.weight\n"
        "  unexpected keys (1): z.extra\n"
        "  shape mismatches: c.weight [4, 2] vs [4, 3], d.bias [8] vs [9]\n"
        "  errors: size mismatch; bad"
    )


@pytest.mark.parametrize(
    "info, line",
    [
        ({"missing_keys": ["x"]}, "  missing keys (1): x"),
        ({"unexpected_keys": ["y", "x"]}, "  unexpected keys (2): x, y"),
        ({"mismatched_keys": [("k", (1,), (2,))]}, "  shape mismatches: k [1] vs [2]"),
        ({"error_msgs": ["e"]}, "  errors: e"),
    ],
)
def test_each_kind_alone_gives_its_own_line(info, line):
    assert _report(info) == "checkpoint /models/m does not match AutoencoderMDiffAE(config):\n" + line
