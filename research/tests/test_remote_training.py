"""The remote-training recipe: the data pack (pixel-verified lossless WebP, a size limit), the jobs runner and the
checkpoint tars (research/remote_training)."""
import sys
import tarfile

import numpy as np
import pytest

from research.remote_training import pack_checkpoints, pack_data, run_jobs
from research.remote_training.pack_data import webp_copy
from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset, list_images
from spermlib.data.imageio import load_rgb_array

MiB = 2**20


def test_the_webp_copy_decodes_to_the_original_pixels_under_the_same_names(tmp_path):
    root = SAMPLE_DATA_ROOT / "SMIDS"
    paths = list(list_images(get_dataset("smids"), root)["path"])[::20]
    written = webp_copy(root, tmp_path, paths)
    assert written > 0
    for rel in paths:
        assert (tmp_path / rel).read_bytes()[8:12] == b"WEBP"
        assert np.array_equal(load_rgb_array(tmp_path / rel), load_rgb_array(root / rel))


def test_a_data_pack_larger_than_max_mib_fails(tmp_path):
    argv = ["--data-dir", str(SAMPLE_DATA_ROOT), "--dataset", "hushem", "--backbones", "--out", str(tmp_path)]
    pack_data.main([*argv, "--max-mib", "100"])
    assert any(f.is_file() for f in (tmp_path / "data" / "HuSHeM").rglob("*"))
    with pytest.raises(SystemExit, match="more than --max-mib"):
        pack_data.main([*argv, "--max-mib", "0.01"])


def _checkpoints(root, arch, folds, size):
    folder = root / "smids" / arch
    folder.mkdir(parents=True)
    for k in folds:
        with open(folder / f"fold{k}.safetensors", "wb") as f:
            f.truncate(size)  # sparse: the plan reads sizes only
        (folder / f"fold{k}.json").write_text("{}" + " " * 6600)


def test_checkpoints_go_into_tars_under_the_size_limit_each_once_and_whole(tmp_path):
    for stage in ("p20", "p20_h4"):  # 8 CBAM (7.3 MB) and 10 plain (6.9 MB) checkpoints
        _checkpoints(tmp_path / stage, "effnet_cbam", range(1, 5), 7_273_842)
        _checkpoints(tmp_path / stage, "effnet", range(5), 6_863_006)
    tars = pack_checkpoints.plan(pack_checkpoints.checkpoints_in([tmp_path]), 16 * MiB)
    assert len(tars) == 9  # two checkpoints of ~7 MB per 16 MiB tar
    assert all(sum(f.stat().st_size for c in tar for f in c) <= 16 * MiB for tar in tars)
    seen = [c[0] for tar in tars for c in tar]
    assert len(seen) == len(set(seen)) == 18 and seen == sorted(seen)
    one = pack_checkpoints.checkpoints_in([tmp_path / "p20" / "smids" / "effnet" / "fold2.safetensors"])
    assert [c[1].name for c in one] == ["fold2.json"]
    with pytest.raises(SystemExit, match="exceed"):
        pack_checkpoints.plan(one, 1 * MiB)


def test_the_tars_hold_weights_and_cards_at_their_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _checkpoints(tmp_path / "ck", "effnet", range(3), 1000)
    (tmp_path / "ck" / "smids" / "effnet" / "fold9.safetensors").write_bytes(b"no card")
    with pytest.raises(SystemExit, match="no card beside"):
        pack_checkpoints.main(["out", "ck"])
    (tmp_path / "ck" / "smids" / "effnet" / "fold9.safetensors").unlink()
    pack_checkpoints.main(["out", "--max-mib", "0.51", "ck"])  # 0.01 MiB of files a tar: one checkpoint each
    names = []
    for path in sorted((tmp_path / "out").glob("*.tar")):
        with tarfile.open(path) as t:
            names.append(t.getnames())
    assert names == [[f"ck/smids/effnet/fold{k}.safetensors", f"ck/smids/effnet/fold{k}.json"] for k in range(3)]


JOBS = """# a comment
--fold {fold} --checkpoints a \\
    --runs r && --init-from a --fold {fold}
--fold 9   # no {fold}: once
"""


def test_a_jobs_file_gives_one_job_per_line_and_fold_with_its_stages_in_order():
    jobs = run_jobs.read_jobs(JOBS, [0, 3], common="--device cuda")
    assert [j.name for j in jobs] == ["job01.fold0", "job01.fold3", "job02"]
    assert jobs[1].stages == (("--fold", "3", "--checkpoints", "a", "--runs", "r", "--device", "cuda"),
                              ("--init-from", "a", "--fold", "3", "--device", "cuda"))
    assert jobs[2].stages == (("--fold", "9", "--device", "cuda"),)


def test_a_failed_stage_stops_its_job_and_late_jobs_are_not_started(tmp_path):
    # the "train command" exits with the status given as its last argument
    command = [sys.executable, "-c", "import sys; print(sys.argv[1:]); sys.exit(int(sys.argv[-1]))"]
    jobs = [run_jobs.Job("ok", (("0",), ("0",))), run_jobs.Job("failed", (("3",), ("0",)))]
    status = run_jobs.run_all(jobs, tmp_path, parallel=2, command=command)
    assert status == {"ok": 0, "failed": 3}
    assert (tmp_path / "failed.log").read_text().count("$ ") == 1  # the second stage never ran
    assert run_jobs.run_all(jobs, tmp_path, parallel=1, stop_launching_after=-1, command=command) == {
        "ok": None, "failed": None}
