"""The helpers that move data and checkpoints to and from a lent GPU machine (tools/hushem_gpu)."""
import json

import numpy as np

from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset, list_images
from spermlib.data.imageio import load_rgb_array
from tools.hushem_gpu import pack, pack_calls
from tools.hushem_gpu.prepare import webp_copy

MiB = 2**20


def test_the_webp_copy_decodes_to_the_original_pixels_under_the_same_names(tmp_path):
    root = SAMPLE_DATA_ROOT / "SMIDS"
    paths = list(list_images(get_dataset("smids"), root)["path"])[::20]
    written = webp_copy(root, tmp_path, paths)
    assert written > 0
    for rel in paths:
        assert (tmp_path / rel).read_bytes()[8:12] == b"WEBP"
        assert np.array_equal(load_rgb_array(tmp_path / rel), load_rgb_array(root / rel))


def test_checkpoints_are_split_over_calls_within_the_return_limits(tmp_path):
    """The eleventh session's case: 8 CBAM (7.3 MB) and 10 plain (6.9 MB) checkpoints come back in 2 calls, each under
    64 MiB in at most 8 files of at most 16 MiB, CBAM first, every checkpoint exactly once."""
    for stage in ("p20", "p20_h4"):
        for arch, folds, size in (("effnet_cbam", range(1, 5), 7_273_842), ("effnet", range(5), 6_863_006)):
            folder = tmp_path / stage / "smids" / arch
            folder.mkdir(parents=True)
            for k in folds:
                with open(folder / f"fold{k}.safetensors", "wb") as f:
                    f.truncate(size)  # sparse: the plan reads sizes only
                (folder / f"fold{k}.json").write_text("{}" + " " * 6600)
    calls = pack_calls.plan(pack_calls.checkpoints_under(tmp_path))
    assert len(calls) == 2
    seen = []
    for tars in calls:
        assert len(tars) <= pack_calls.MAX_TARS
        sizes = [sum(f.stat().st_size for item in tar for f in item) for tar in tars]
        assert max(sizes) <= 16 * MiB and sum(sizes) < 63 * MiB
        seen += [item[0] for tar in tars for item in tar]
    assert len(seen) == len(set(seen)) == 18
    assert all(p.parent.name == "effnet_cbam" for p in seen[:8])


def test_the_hushem_sweeps_first_call_leaves_room_for_its_results_archive(tmp_path):
    """pack.py: the chosen checkpoints of the HuSHeM sweep (2 archs × 5 folds, 7 MB each) by the same plan, with call 1
    capped at 56 MiB in 6 tars (it also carries results.tgz and the log)."""
    chosen = {arch: {str(k): {"candidate": f"cand{k % 2}"} for k in range(5)} for arch in ("effnet", "effnet_cbam")}
    (tmp_path / "chosen.json").write_text(json.dumps(chosen))
    items = pack.chosen_checkpoints(tmp_path / "chosen.json", tmp_path / "runs")
    for weights, card in items:
        weights.parent.mkdir(parents=True, exist_ok=True)
        with open(weights, "wb") as f:
            f.truncate(7_000_000)
        card.write_text("{}")
    calls = pack_calls.plan(items, first_call=pack.FIRST_CALL)
    first = [sum(f.stat().st_size for item in tar for f in item) for tar in calls[0]]
    assert len(calls[0]) <= 6 and sum(first) <= 56 * MiB
    assert sorted(str(item[0]) for c in calls for tar in c for item in tar) == sorted(str(i[0]) for i in items)
    assert len(calls) == 2
