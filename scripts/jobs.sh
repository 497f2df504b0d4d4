# Sourced by scripts/libero_pipeline.sh: run commands in the background, at most JOBS at
# once; a job that fails stops the run (the caller has set -e).
#
# Why not a counter and bare `wait -n`: bash (5.2 here) reaps a background job that ends
# while the shell waits for a foreground command (a `mv`, a `nice`), and `wait -n` then
# no longer reports it: it blocks for another job or, with none left, returns 127, which
# set -e turns into a failed run. `wait PID` still gives any job's own status, so the jobs
# are kept by PID and each one's end is read with it.
pids=()

reap() {  # wait for one job to end; its status is the function's (set -e: a failure ends)
  local i pid running
  while :; do
    # bash's own list of its jobs still running or stopped (no PID reused by another
    # process, as kill -0 would see)
    running=$'\n'$(jobs -rp; jobs -sp)$'\n'
    for i in "${!pids[@]}"; do
      pid=${pids[$i]}
      if [[ $running != *$'\n'$pid$'\n'* ]]; then
        unset "pids[$i]"
        pids=("${pids[@]}")
        wait "$pid"
        return
      fi
    done
    # until some job ends; at once (127) when bash has already reaped it, which the next
    # look at the running jobs then shows
    wait -n 2>/dev/null || sleep 0.1
  done
}

spawn() {  # run "$@" in the background, waiting first while JOBS of them run
  "$@" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "${JOBS:-1}" ]; then reap; fi
}

drain() {  # wait for every job
  while [ "${#pids[@]}" -gt 0 ]; do reap; done
}
