# Sourced by the run scripts: environment for the project's processes.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-$MUJOCO_GL}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_LOG_DIR="${ROS_LOG_DIR:-$PWD/log/ros}"
export HOME="${HOME:-$PWD}"
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::DeprecationWarning:lark}"
