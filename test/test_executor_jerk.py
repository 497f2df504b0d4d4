"""specprune_ros.eval.executor_jerk: its JSON says which model ran where (issue #17)."""
import json

from specprune.bench import machine
from specprune.model.checkpoint import checkpoint_hash
from specprune_ros.eval import executor_jerk
from specprune_ros.node.package_data import shipped_checkpoint


def test_json_records_the_checkpoint_hash_and_the_machine(tmp_path) -> None:
    out = tmp_path / "jerk.json"
    assert executor_jerk.main(["--episodes", "1", "--horizon", "8", "--rules", "latest",
                               "--threads", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["policy"] == shipped_checkpoint()
    assert result["checkpoint_hash"] == checkpoint_hash(shipped_checkpoint())
    assert result["machine"] == machine(1, "cpu", "float32")
    assert set(result["rules"]) == {"latest"} and result["episodes"] == 1
