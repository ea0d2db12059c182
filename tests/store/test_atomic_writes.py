"""Every results, cache and detector file is written atomically: when the write fails (here: a full disk at the
rename that completes it), the file of the previous run is whole, no temporary file is left, and the one error
names the file."""

from __future__ import annotations

import errno
import json

import numpy as np
import pandas as pd
import pytest

from spermlib import fileio
from spermlib.calibration.store import StoredDetector, read_detector, write_detector
from spermlib.fileio import OutputError
from spermlib.store.embeddings import CachedEmbedding, write_embedding
from spermlib.store.examples import Example, example_path, write_example
from spermlib.store.results import oof_path, write_json, write_oof, write_robustness_fold

EXAMPLE = Example("hushem", "effnet_cbam", "01_Normal/x.BMP", 2, "01_Normal", "01_Normal", 0.9)


def _json(tmp_path, version):
    return write_json(tmp_path / "metrics.json", {"archs": {}, "version": version})


def _oof(tmp_path, version):
    return write_oof(tmp_path, "effnet", pd.DataFrame({"path": ["a.png"], "version": [version]}))


def _robustness(tmp_path, version):
    return write_robustness_fold(tmp_path, "effnet", 0, "key", pd.DataFrame({"clean": [version]}, index=["a.png"]),
                                 {"version": version})


def _embedding(tmp_path, version):
    path = tmp_path / "fold0-k.safetensors"
    write_embedding(path, CachedEmbedding({"features": np.full((2, 3), version, np.float32)}, {"version": version}))
    return path


def _example(tmp_path, version):
    panels = [("input", np.full((4, 4, 3), version, np.uint8))]
    return write_example(EXAMPLE, panels, "digest", {"version": version}, tmp_path)


def _detector(tmp_path, version):
    stored = StoredDetector({"mean": np.full(3, version, np.float32)}, {"method": "m", "version": version})
    return write_detector(tmp_path / "fold0.safetensors", stored)


WRITERS = {"results JSON": _json, "OOF CSV": _oof, "robustness fold": _robustness, "embedding cache": _embedding,
           "worked example": _example, "detector": _detector}


def _contents(tmp_path) -> dict[str, bytes]:
    return {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", WRITERS)
def test_a_failed_write_keeps_the_previous_files_whole_and_names_the_file(kind, tmp_path, monkeypatch):
    write = WRITERS[kind]
    write(tmp_path, 1)
    before = _contents(tmp_path)

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", full_disk)
    with pytest.raises(OutputError, match=r"could not write .*: no space left on device"):
        write(tmp_path, 2)
    assert _contents(tmp_path) == before  # nothing half-written, no temporary file left beside them


@pytest.mark.parametrize("kind", WRITERS)
def test_a_write_replaces_the_previous_files(kind, tmp_path):
    WRITERS[kind](tmp_path, 1)
    WRITERS[kind](tmp_path, 2)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_what_was_written_reads_back(tmp_path):
    assert json.loads(_json(tmp_path, 2).read_text())["version"] == 2
    _oof(tmp_path, 2)
    assert pd.read_csv(oof_path(tmp_path, "effnet"))["version"].tolist() == [2]
    assert read_detector(_detector(tmp_path, 2)).meta["version"] == 2
    assert (tmp_path / "fold0.safetensors").stat().st_mode & 0o777 == 0o644  # shipped like the checkpoints
    _example(tmp_path, 1)
    _example(tmp_path, 2)
    assert json.loads(example_path("hushem", tmp_path).read_text())["inference"]["version"] == 2
    assert len(list((tmp_path / "hushem" / "worked_example").glob("*.png"))) == 1  # the earlier panel removed
