"""SpecPrune: token scoring, static selection, frame comparison, the action-aware
controller, layer-pruning hooks and the layer-by-layer decoder pass. May import
``specprune.model`` and the core's leaves; never ``train`` or ROS."""
