"""specprune-bench writes the promised JSON fields with sane values (tiny preset)."""
import json
import math

import pytest

from specprune.bench import main

pytestmark = pytest.mark.numeric  # rerun under other CPU kernels (scripts/test.sh)

KEYS = ["baseline_llm_ms", "specprune_llm_ms", "llm_speedup", "baseline_step_ms",
        "specprune_step_ms", "step_speedup", "selection_overhead_frac",
        "kept_visual_tokens_mean", "flops_ratio", "fastv_step_speedup",
        "action_l1_vs_baseline", "hit_rate_layers01_vs_last", "machine"]


def test_bench_json_has_the_fields(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--preset", "tiny", "--steps", "2", "--warmup", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in KEYS:
        assert key in result, key
    assert 0 < result["kept_visual_tokens_mean"] < 512
    assert 0 < result["flops_ratio"] < 1
    assert 0 <= result["hit_rate_layers01_vs_last"] <= 1
    assert set(result["action_l1_vs_baseline"]) == {"specprune", "fastv"}
    assert all(math.isfinite(v) for v in result["action_l1_vs_baseline"].values())
    assert result["machine"]["threads"] >= 1
    assert "SpecPrune" in capsys.readouterr().out


def test_prune_changes_reach_specprune_and_bad_ones_are_refused(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--preset", "tiny", "--steps", "1", "--warmup", "0", "--json", str(out),
                 "--prune", "layer_depth=32", "--prune", "keep_scale=2"]) == 0
    config = json.loads(out.read_text())["prune_config"]
    assert config["layer_depth"] == 32 and config["keep_scale"] == 2.0
    with pytest.raises(SystemExit) as stop:
        main(["--preset", "tiny", "--prune", "keep_scale=-1"])
    assert stop.value.code == 2 and "keep_scale" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--prune", "layer_depth"])
    assert "expected FIELD=VALUE" in capsys.readouterr().err
