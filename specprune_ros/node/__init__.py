"""What runs on the robot: the policy node, its parameter table, observation building,
image and TF conversions, ordered shutdown. May import ``specprune`` (the core) and
itself; never ``sim`` or ``eval``."""
