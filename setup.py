"""ament_python package: the ROS adapter (specprune_ros) and the ROS-free core (specprune)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "specprune_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        # the trained pick_color policy (checkpoint folder), default of sim_policy.launch.py
        (f"share/{PACKAGE}/checkpoints/pick_color", glob("checkpoints/pick_color/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="specprune_ros maintainers",
    maintainer_email="maintainers@specprune.invalid",
    description="SpecPrune-VLA policy node for ROS 2 (OpenVLA-OFT with token pruning).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "specprune_policy = specprune_ros.node.policy_node:main",
            "specprune_executor = specprune_ros.node.executor_node:main",
            "specprune_sim_arm = specprune_ros.sim.sim_bridge_node:main",
            "specprune-bench = specprune.bench:main",
            "specprune-train = specprune.train.training:main",
            "specprune-demo = specprune_ros.demo:main",
            "specprune-eval = specprune_ros.eval.evaluate:main",
            "specprune-suite-table = specprune_ros.eval.suite_table:main",
            "specprune-grounding = specprune.train.grounding:main",
            "specprune-demos = specprune_ros.sim.demos:main",
            "specprune_recorder = specprune_ros.node.recorder:main",
            "specprune-record = specprune_ros.node.recorder:main",
            "specprune-replay = specprune_ros.eval.replay:main",
            "specprune-bag2demos = specprune_ros.eval.bag2demos:main",
        ],
    },
)
