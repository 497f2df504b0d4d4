"""Pre-registered seeds: development runs never touch the claim range fixed in the code;
``--claim`` runs exactly that range, says so in its JSON and never overwrites a file."""
import json
from pathlib import Path

import pytest

from specprune_ros.eval import evaluate
from specprune_ros.eval.configurations import (CLAIM_EPISODES_MAX, CLAIM_SEED, EVAL_SEED,
                                               SUITE_EVAL_SEED, episode_seeds)


def test_claim_range_is_fixed_and_apart_from_development_seeds() -> None:
    assert CLAIM_SEED == 900_000 and CLAIM_EPISODES_MAX == 1_000
    assert episode_seeds(True, None, 3) == [900_000, 900_001, 900_002]
    assert episode_seeds(False, None, 2) == [EVAL_SEED, EVAL_SEED + 1]
    # demos (0...), held-out grounding demos (200000...) and development seeds end below it
    assert EVAL_SEED < 200_000 < CLAIM_SEED


@pytest.mark.parametrize("claim, seed, episodes, reason", [
    (True, 5, 3, "--seed is not allowed"),
    (True, None, CLAIM_EPISODES_MAX + 1, "holds 1000 seeds"),
    (False, CLAIM_SEED + 10, 3, "reach into the claim range"),
    (False, CLAIM_SEED - 2, 3, "reach into the claim range"),
])
def test_seed_rules_are_refused_with_the_reason(claim, seed, episodes, reason) -> None:
    with pytest.raises(ValueError, match=reason):
        episode_seeds(claim, seed, episodes)


def _args(*extra: str):
    return evaluate.parse_args(["--policy", "tiny", "--configs", "unpruned", *extra])


@pytest.mark.parametrize("task, first", [("pick_color", EVAL_SEED),
                                         ("sim_object_3", SUITE_EVAL_SEED),
                                         ("libero_10:9", SUITE_EVAL_SEED)])
def test_the_default_seeds_are_past_every_recorders_seeds(task, first) -> None:
    """LIBERO task 9's demos and the tabletop takeover demos use 100000-104999: the common
    default of 100000 evaluated some training placements when --seed was left out."""
    args = _args("--task", task, "--episodes", "3")
    assert args.seeds == [first, first + 1, first + 2]
    assert SUITE_EVAL_SEED > 104_999 and SUITE_EVAL_SEED + 1000 <= CLAIM_SEED


def test_claim_flag_runs_the_claim_seeds(tmp_path: Path) -> None:
    args = _args("--claim", "--episodes", "4", "--json", str(tmp_path / "claim.json"))
    assert args.claim and args.seeds == [CLAIM_SEED + i for i in range(4)]
    assert args.seed == CLAIM_SEED
    dev = _args("--episodes", "2")
    assert not dev.claim and dev.seeds == [EVAL_SEED, EVAL_SEED + 1]


@pytest.mark.parametrize("argv, reason", [
    (["--claim", "--seed", "100000", "--json", "{tmp}/c.json"], "--seed is not allowed"),
    (["--claim"], "--claim needs --json"),
    (["--seed", str(CLAIM_SEED), "--episodes", "2"], "reach into the claim range"),
])
def test_cli_refuses_claim_mistakes(argv, reason, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        _args(*[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert reason in capsys.readouterr().err


def test_claim_never_overwrites_and_nothing_overwrites_a_claim(tmp_path: Path,
                                                               capsys) -> None:
    """A short claim run writes ``claim: true``; a second claim run on the same file and a
    development run aimed at it are both refused before anything runs."""
    out = tmp_path / "claim.json"
    argv = ["--policy", "tiny", "--configs", "unpruned", "--episodes", "1", "--horizon", "2",
            "--threads", "1", "--hit-every", "0", "--claim", "--json", str(out)]
    assert evaluate.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["claim"] is True and result["seed_set"] == "claim"
    assert result["seeds"] == [CLAIM_SEED]
    assert result["configs"]["unpruned"]["per_episode"][0]["seed"] == CLAIM_SEED
    before = out.read_bytes()
    with pytest.raises(SystemExit):
        evaluate.main(argv)
    assert "never overwrites" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _args("--episodes", "1", "--json", str(out))
    assert "claim run's results" in capsys.readouterr().err
    assert out.read_bytes() == before
    other = tmp_path / "dev.json"
    other.write_text("{}")
    with pytest.raises(SystemExit):
        _args("--claim", "--json", str(other))  # a claim run overwrites nothing at all
    assert _args("--json", str(other)).json == str(other)  # a development file may be


def test_results_are_written_whole_and_a_claim_never_over_another(tmp_path):
    from specprune_ros.eval.configurations import write_result
    path = tmp_path / "claim.json"
    write_result(str(path), {"claim": True, "n": 1}, claim=True)
    with pytest.raises(FileExistsError):
        write_result(str(path), {"claim": True, "n": 2}, claim=True)
    assert json.loads(path.read_text())["n"] == 1
    dev = tmp_path / "dev.json"
    write_result(str(dev), {"n": 1}, claim=False)
    write_result(str(dev), {"n": 2}, claim=False)  # a development result is replaced
    assert json.loads(dev.read_text())["n"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claim.json", "dev.json"]
