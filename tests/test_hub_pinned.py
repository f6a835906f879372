"""models/hub pinned: the strict loader's report of what does not match, line by line."""

import pytest

from diffusers_mdiffae.models.hub import check_loading_info, locate_original_snapshot


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


# -- locating a published snapshot on the Hub (downloads replaced by recorders) -------------------

REPO = "someone-test/published-repo"  # not a local path
KEEP = {"revision": "v1", "cache_dir": "/hf-cache", "token": "hf_x", "local_files_only": True, "force_download": True}
PACKAGES = ["fcdm_diffae", "capacitor_diffae", "m_diffae", "m_diffae_v2", "ir_diffae"]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """Recorded ``hf_hub_download`` / ``snapshot_download`` calls; the "download" is ``tmp_path / root``."""
    import huggingface_hub

    calls = []
    (tmp_path / "root" / "sub").mkdir(parents=True)

    def hf_hub_download(repo_id, filename, **kwargs):
        calls.append(("file", repo_id, filename, kwargs))
        sub = kwargs.get("subfolder")
        return str(tmp_path / "root" / (sub or "") / filename)

    def snapshot_download(repo_id, **kwargs):
        calls.append(("snapshot", repo_id, kwargs))
        return str(tmp_path / "root")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def test_a_hub_snapshot_is_fetched_with_the_download_options_and_the_subfolder(tmp_path, hub):
    seen = []
    found = locate_original_snapshot(
        REPO, "sub", detect=lambda p: seen.append(p) or True, **KEEP, proxies={"https": "p"}, torch_dtype="x"
    )
    assert found == tmp_path / "root" / "sub" and seen == [tmp_path / "root" / "sub"]
    patterns = ["sub/config.json", "sub/*.safetensors", *[f"sub/{p}/*" for p in PACKAGES]]
    assert hub == [
        ("file", REPO, "config.json", {"subfolder": "sub", **KEEP}),
        ("snapshot", REPO, {"allow_patterns": patterns, **KEEP}),
    ]


def test_without_packages_only_the_config_and_the_weights_are_fetched(tmp_path, hub):
    found = locate_original_snapshot(REPO, detect=lambda p: True, with_packages=False, revision=None, token="t")
    assert found == tmp_path / "root"
    assert hub == [
        ("file", REPO, "config.json", {"subfolder": None, "token": "t"}),
        ("snapshot", REPO, {"allow_patterns": ["config.json", "*.safetensors"], "token": "t"}),
    ]


def test_a_hub_repo_that_is_not_published_layout_fetches_nothing_more(hub):
    assert locate_original_snapshot(REPO, detect=lambda p: False, local_files_only=True) is None
    assert hub == [("file", REPO, "config.json", {"subfolder": None, "local_files_only": True})]
