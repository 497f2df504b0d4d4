"""The libero-deep preset: deep enough that, with the paper's layers written for 32 layers
(PruneConfig.layer_depth=32), layer pruning acts at four layers and V_global reads two."""
from specprune.config import PruneConfig, resolve_layers
from specprune.model.presets import preset_config
from specprune.model.tiny_tokenizer import build_tokenizer, empty_token_id
from specprune_ros.node.parameters import check_layers


def test_the_papers_layers_keep_their_relative_depth_on_libero_deep():
    tok = build_tokenizer()
    layers = preset_config("libero-deep", len(tok), empty_token_id(tok)).text_config[
        "num_hidden_layers"]
    assert layers == 16
    cfg = PruneConfig(layer_depth=32)
    assert resolve_layers(cfg.layer_prune_layers, layers, cfg.layer_depth, 2) == (3, 5, 8, 10)
    assert resolve_layers(cfg.global_score_layers, layers, cfg.layer_depth) == (7, 15)
    # on sim-small (6 layers): 10, 15, 20 -> 2, 3, 4; 5 -> 1 falls among the scoring layers
    assert resolve_layers(cfg.layer_prune_layers, 6, 32, 2) == (2, 3, 4)
    assert check_layers({"prune.layer_depth": 32, "prune.layer_prune_layers": [5, 10, 15, 20]},
                        layers) is None
    assert "do not exist in a model of prune.layer_depth 32" in check_layers(
        {"prune.layer_depth": 32, "prune.layer_prune_layers": [5, 40]}, layers)
