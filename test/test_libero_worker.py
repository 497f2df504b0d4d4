"""The LIBERO worker: its wire format, its error replies, and the real worker process in
.venv-libero (errors come back as exceptions, a dead worker is detected, the worker follows
its parent out, frames are rendered only when asked)."""
import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from specprune_ros.sim import libero_worker as lw
from specprune_ros.sim.libero_env import (ROOT, LiberoWorker, LiberoWorkerConfig,
                                          LiberoWorkerDied, LiberoWorkerError, libero_python)

needs_libero = pytest.mark.skipif(
    libero_python() is None, reason=".venv-libero is not installed (scripts/setup.sh installs "
    "it; SPECPRUNE_SKIP_LIBERO=1 skipped it)")


def _round_trip(message):
    buffer = io.BytesIO()
    lw.write_message(buffer, message)
    buffer.seek(0)
    return lw.read_message(buffer.read)


def test_arrays_cross_as_plain_values_and_come_back_equal():
    message = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.int64(4), 2.5],
               "c": ("x", np.array([True, False])), "d": {"e": np.zeros((0, 3), np.uint8)}}
    plain = lw.to_plain(message)
    assert "numpy" not in repr(type(plain["b"][0]))
    back = _round_trip(message)
    np.testing.assert_array_equal(back["a"], message["a"])
    assert back["a"].dtype == np.float32 and back["a"].flags.writeable
    assert back["b"] == [4, 2.5] and back["c"][0] == "x"
    assert back["c"][1].tolist() == [True, False] and back["d"]["e"].shape == (0, 3)


def test_end_of_stream_is_none_between_messages_and_an_error_inside_one():
    assert lw.read_message(io.BytesIO(b"").read) is None
    buffer = io.BytesIO()
    lw.write_message(buffer, {"x": 1})
    with pytest.raises(EOFError, match="ended"):
        lw.read_message(io.BytesIO(buffer.getvalue()[:-2]).read)


class _Server:
    closed = False

    def add(self, a, b):
        return a + b

    def fail(self):
        raise KeyError("no such thing")

    def close(self):
        self.closed = True


def _serve(*requests):
    inbox, outbox, server = io.BytesIO(), io.BytesIO(), _Server()
    for request in requests:
        lw.write_message(inbox, request)
    inbox.seek(0)
    lw.serve(inbox.read, outbox, server)
    outbox.seek(0)
    replies = []
    while (reply := lw.read_message(outbox.read)) is not None:
        replies.append(reply)
    return replies, server


def test_serve_answers_errors_as_replies_and_stops_at_shutdown():
    replies, server = _serve({"cmd": "add", "args": {"a": 2, "b": 3}}, {"cmd": "fail"},
                             {"cmd": "_serve"}, {"cmd": "add", "args": {"a": 1}},
                             {"cmd": "shutdown"}, {"cmd": "add", "args": {"a": 1, "b": 1}})
    assert replies[0] == {"ok": 5}
    assert replies[1]["error"] == "KeyError" and "no such thing" in replies[1]["message"]
    assert "raise KeyError" in replies[1]["traceback"]
    assert replies[2]["error"] == "ValueError" and "unknown command" in replies[2]["message"]
    assert replies[3]["error"] == "TypeError"
    assert replies[4] == {"ok": None} and len(replies) == 5  # nothing after shutdown
    assert server.closed


def test_config_rejects_an_unknown_gl_backend_and_a_bad_timeout():
    with pytest.raises(ValueError, match="mujoco_gl"):
        LiberoWorkerConfig(mujoco_gl="glfw")
    with pytest.raises(ValueError, match="timeout_s"):
        LiberoWorkerConfig(timeout_s=0)


def test_a_missing_interpreter_says_how_to_install_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="setup.sh"):
        LiberoWorker(LiberoWorkerConfig(python=str(tmp_path / "python")))


@pytest.fixture(scope="module")
def worker():
    with LiberoWorker() as w:
        yield w


@needs_libero
def test_worker_runs_libero_on_robosuite_1_4_and_lists_the_suites(worker):
    hello = worker.hello()
    assert hello["robosuite"] == "1.4.0" and hello["pid"] == worker.process.pid
    assert {"libero_spatial", "libero_object", "libero_goal", "libero_10"} <= set(
        worker.suites())
    tasks = worker.tasks("libero_object")
    assert len(tasks) == 10 and tasks[0]["index"] == 0
    assert tasks[0]["language"].startswith("pick up the")


@needs_libero
def test_worker_errors_come_back_as_exceptions_and_the_worker_lives_on(worker):
    with pytest.raises(LiberoWorkerError, match="unknown suite 'libero_nope'") as caught:
        worker.tasks("libero_nope")
    assert caught.value.remote_type == "ValueError" and "_suite" in caught.value.remote_traceback
    with pytest.raises(LiberoWorkerError, match="call make"):
        worker.step(np.zeros(7))
    assert worker.alive and worker.hello()["pid"] == worker.process.pid


@needs_libero
def test_a_dead_worker_is_detected_with_its_exit_code():
    w = LiberoWorker()
    w.hello()
    w.process.kill()
    w.process.wait()
    with pytest.raises(LiberoWorkerDied, match="exited with code -9 during 'suites'"):
        w.suites()
    with pytest.raises(LiberoWorkerDied, match="closed"):
        w.hello()
    w.close()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return any(line.split()[:2] == ["State:", "Z"] for line in status)
    except FileNotFoundError:
        return True


@needs_libero
def test_the_worker_exits_when_its_parent_dies():
    parent = ("import os, sys\n"
              "from specprune_ros.sim.libero_env import LiberoWorker\n"
              "w = LiberoWorker()\n"
              "print(w.hello()['pid'], flush=True)\n"
              "os.kill(os.getpid(), 9)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                         env=env, cwd=str(ROOT), timeout=120)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 30.0  # liveness bound, not a timing claim
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(pid), f"worker {pid} outlived its parent"


@needs_libero
def test_frames_come_only_from_ticks_that_ask_and_seeds_repeat(worker):
    info = worker.make("libero_spatial", 0, camera_size=64, hard_reset=False)
    assert info["n_init_states"] == 50 and "plate_1" in info["objects_of_interest"]
    first = worker.reset(seed=11)
    bowl = first.object_pos("akita_black_bowl_1").copy()
    assert first.images == {} and not first.success
    rendered = worker.stats()["frames_rendered"]
    plain = worker.step([0, 0, 0, 0, 0, 0, -1])
    assert plain.images == {} and plain.timestep == 1
    assert worker.stats()["frames_rendered"] == rendered
    seen = worker.step([0, 0, 0, 0, 0, 0, -1], views=("agentview",))
    assert sorted(seen.images) == ["agentview"]
    assert worker.stats()["frames_rendered"] == rendered + 1
    assert seen.images["agentview"].shape == (64, 64, 3) and seen.images["agentview"].std() > 5
    np.testing.assert_allclose(worker.reset(seed=11).object_pos("akita_black_bowl_1"), bowl)
    with pytest.raises(LiberoWorkerError, match="unknown view"):
        worker.step(np.zeros(7), views=("frontview_x",))
    with pytest.raises(KeyError, match="akita_black_bowl_1"):
        first.object_pos("mug")
