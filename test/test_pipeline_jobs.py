"""scripts/jobs.sh, the pipeline's background jobs: at most JOBS at once, every job's end
seen even when bash reaped it during a foreground command, a failed job ends the run
with its status (real bash, real processes)."""
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bash(body: str, jobs: int = 2) -> subprocess.CompletedProcess:
    script = f"set -euo pipefail\nJOBS={jobs}\nsource scripts/jobs.sh\n{body}\n"
    return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_a_job_that_ended_during_a_foreground_command_is_still_seen():
    # the first job ends while the shell waits for `sleep`: bash reaps it there, and a bare
    # `wait -n` would return 127 at the drain (set -e: a failed run)
    done = _bash("spawn true\nsleep 0.5\nspawn sleep 0.2\ndrain\necho all-done")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "all-done"


def test_a_failed_job_ends_the_run_with_its_status():
    done = _bash("spawn bash -c 'exit 3'\nsleep 0.5\nspawn true\ndrain\necho not-reached")
    assert done.returncode == 3
    assert "not-reached" not in done.stdout


def test_at_most_jobs_run_at_once_and_every_one_runs(tmp_path):
    log = tmp_path / "log"
    job = f"bash -c 'echo start >> {log}; sleep 0.3; echo end >> {log}'"
    done = _bash("\n".join([f"spawn {job}"] * 5 + ["drain", "echo all-done"]))
    assert done.returncode == 0, done.stderr
    running, most = 0, 0
    for line in log.read_text().split():
        running += 1 if line == "start" else -1
        most = max(most, running)
    assert log.read_text().split().count("end") == 5 and most == 2
