"""The ROS 2 adapter: ``node`` (policy node and what it needs), ``sim`` (simulated arm and
its bridge), ``eval`` (closed-loop evaluation, probes), ``demo`` (the main job). Imports
point down only: eval -> sim -> node -> specprune."""
