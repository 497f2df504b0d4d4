"""The simulated arm: robosuite tasks, the SimArm wrapper, the scripted expert, demo
recording and the bridge node that puts the arm on ROS topics. May import ``node`` and
``specprune``; never ``eval``."""
