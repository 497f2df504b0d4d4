"""The tabletop recorder gives the same demos from the same seeds: a training resumed in a
new checkout (scripts/train_libero.sh from a kept train_state.pt) reads demos recorded
again there, and the resume only accepts them when every file has its old content digest
(specprune.train.resumable.sources; the files' sizes may differ: HDF5's layout does)."""
import shutil

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from specprune.train.resumable import content_digest  # noqa: E402
from specprune_ros.sim.demos import NoiseConfig  # noqa: E402
from specprune_ros.sim.tabletop_demos import record  # noqa: E402
from specprune_ros.sim.tabletop_suites import tabletop_task  # noqa: E402


def _contents(path):
    out = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            out[name] = item[()]
        out[name + ":attrs"] = {k: str(v) for k, v in item.attrs.items()}
    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def test_the_same_seeds_record_the_same_demos(tmp_path):
    paths = [str(tmp_path / f"take{i}.hdf5") for i in range(2)]
    for path in paths:
        record(path, tabletop_task("sim_spatial_1"), 1, 80000, NoiseConfig(), frame_every=4,
               max_tries=5, log=lambda line: None)
    first, second = (_contents(p) for p in paths)
    assert sorted(first) == sorted(second)
    assert any(v.ndim == 4 and v.dtype == np.uint8 for v in first.values()
               if isinstance(v, np.ndarray))  # the rendered views are compared too
    for name, value in first.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, second[name], err_msg=name)
        else:
            assert value == second[name], name
    assert content_digest(paths[0]) == content_digest(paths[1])
    # and one changed value changes it
    changed = str(tmp_path / "changed.hdf5")
    shutil.copy(paths[0], changed)
    with h5py.File(changed, "r+") as f:
        f["data/demo_0/actions"][3, 0] += 1e-3
    assert content_digest(changed) != content_digest(paths[0])
