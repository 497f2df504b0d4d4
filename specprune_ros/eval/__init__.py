"""Closed-loop evaluation (in process and over ROS), its statistics and results, and the
node-overhead probe. May import ``sim``, ``node`` and ``specprune``; nothing imports it
except the main job (``specprune_ros.demo``)."""
