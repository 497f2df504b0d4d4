"""The per-suite table (the paper's Table 1 shape) from result JSONs, by one command."""
import json
from pathlib import Path
from typing import Any, Dict

import pytest

from specprune_ros.eval import suite_table
from specprune_ros.eval.eval_results import ConfigRun, EpisodeRecord, StepRecord, summarize


def _result(task: str, outcomes: Dict[str, list], step_ms: Dict[str, float],
            claim: bool = False) -> Dict[str, Any]:
    runs = {}
    for name, wins in outcomes.items():
        run = ConfigRun(name, {})
        run.episodes = [EpisodeRecord(seed=100 + i, success=w) for i, w in enumerate(wins)]
        run.steps = [StepRecord(step_ms=step_ms[name])] * 3
        runs[name] = run
    return summarize(runs, {"task": task, "claim": claim}, [])


def _write(tmp_path: Path, name: str, result: Dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(result))
    return str(path)


def test_table_has_success_per_suite_average_and_speedup(tmp_path: Path, capsys) -> None:
    a = _result("suite_a", {"unpruned": [1, 1, 1, 0], "specprune": [1, 1, 0, 0],
                            "random": [0, 0, 0, 0]},
                {"unpruned": 40.0, "specprune": 20.0, "random": 25.0})
    b = _result("suite_b", {"unpruned": [1, 1, 0, 0], "specprune": [1, 1, 1, 0]},
                {"unpruned": 30.0, "specprune": 20.0})
    ablation = _result("suite_b", {"no_local": [0, 1, 0, 0]}, {"no_local": 19.0})
    named = (("a.json", a), ("b.json", b), ("b_abl.json", ablation))
    paths = [_write(tmp_path, n, r) for n, r in named]
    md, png = tmp_path / "t.md", tmp_path / "t.png"
    assert suite_table.main(paths + ["--md", str(md), "--plot", str(png)]) == 0
    text = md.read_text()
    assert capsys.readouterr().out == text
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
             if line.startswith("| ")}
    # unpruned: 75 % and 50 %, average 62.5 %, the reference of the speedup
    assert lines["unpruned"] == "| unpruned | 75.0 | 50.0 | 62.5 | 35.0 | 1.00x |"
    # specprune: 50 % and 75 %; speedup = mean(40/20, 30/20) = 1.75x
    assert lines["specprune"] == "| specprune | 50.0 | 75.0 | 62.5 | 20.0 | 1.75x |"
    # random ran on one suite only: no average; an ablation without unpruned: no speedup
    assert lines["random"] == "| random | 0.0 | - | - | - | - |"
    assert lines["no_local"] == "| no_local | - | 25.0 | - | - | - |"
    assert "| suite_a | -25.0 pp |" in text and "| suite_b | +25.0 pp |" in text
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_duplicates_and_mixed_claims_are_refused(tmp_path: Path, capsys) -> None:
    a = _result("suite_a", {"unpruned": [1]}, {"unpruned": 1.0})
    with pytest.raises(SystemExit):
        suite_table.main([_write(tmp_path, "1.json", a), _write(tmp_path, "2.json", a)])
    assert "appears in two results" in capsys.readouterr().err
    claim = _result("suite_b", {"unpruned": [1]}, {"unpruned": 1.0}, claim=True)
    with pytest.raises(SystemExit):
        suite_table.main([_write(tmp_path, "1.json", a), _write(tmp_path, "3.json", claim)])
    assert "mixed" in capsys.readouterr().err
