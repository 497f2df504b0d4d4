"""Installed data is found through the package's ament share directory, the source tree
otherwise (issue #13: a plain colcon build broke paths derived from __file__)."""
from pathlib import Path

import pytest

from specprune_ros.node import package_data
from specprune_ros.eval.evaluate import resolve_policy


def fake_install(prefix: Path) -> Path:
    """An ament prefix holding specprune_ros: the index marker and a share directory with a
    checkpoint folder, as a plain `colcon build` installs it (setup.py data_files)."""
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages"
    marker.mkdir(parents=True)
    (marker / package_data.PACKAGE).write_text("")
    share = prefix / "share" / package_data.PACKAGE
    (share / package_data.SHIPPED_CHECKPOINT).mkdir(parents=True)
    return share


def test_source_tree_is_used_when_the_package_is_not_installed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert package_data.share_directory() == package_data.SOURCE_ROOT
    checkpoint = Path(package_data.shipped_checkpoint())
    assert checkpoint == package_data.SOURCE_ROOT / "checkpoints" / "pick_color"
    assert (checkpoint / "config.json").is_file()


def test_installed_share_directory_wins_from_any_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    share = fake_install(tmp_path / "install")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install"))
    monkeypatch.chdir(tmp_path)
    assert package_data.share_directory() == share
    installed = str(share / package_data.SHIPPED_CHECKPOINT)
    assert package_data.shipped_checkpoint() == installed
    assert resolve_policy(package_data.SHIPPED_CHECKPOINT) == installed
    # data the install lacks is still found in the source tree
    assert package_data.data_path("config/policy.yaml") == str(
        package_data.SOURCE_ROOT / "config" / "policy.yaml")


def test_unknown_policy_is_neither_a_folder_nor_a_preset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    with pytest.raises(ValueError, match="neither a checkpoint folder nor a preset"):
        resolve_policy("checkpoints/does_not_exist")
