"""Training: the OFT recipe, the demonstration dataset, the grounding probe. May import
``specprune.model``, ``specprune.prune`` and the core's leaves; nothing imports it back
except command-line tools. No ROS."""
