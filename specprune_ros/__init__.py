"""ROS 2 adapter of SpecPrune-VLA: nodes, message conversions and the simulated-arm bridge."""
