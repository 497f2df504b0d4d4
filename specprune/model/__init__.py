"""The OpenVLA-OFT model: architecture, released-checkpoint IO, preprocessing, prompt,
presets. Imports only the core's leaves (``specprune.config``, ``specprune.types``) and
itself: never ``prune``, ``train`` or ROS."""
