#!/usr/bin/env bash
# The test command: sets up everything it needs, then runs the whole suite. With no
# arguments it then reruns the `numeric` tests (parity with recorded reference numbers,
# keep-all and round-trip equalities, bench figures) under the other CPU kernel sets torch
# can dispatch here (ATEN_CPU_CAPABILITY=default, avx2), so that a test that holds only
# with one CPU's rounding fails on every machine, not only on a contributor's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
PYTEST=(.venv/bin/python -m pytest -q -rs)
if [ $# -gt 0 ]; then
  exec "${PYTEST[@]}" "$@"
fi
"${PYTEST[@]}"
native=$(.venv/bin/python -c "import torch; print(torch.backends.cpu.get_cpu_capability())")
for capability in default avx2; do
  if [ "${capability^^}" = "$native" ]; then continue; fi
  if [ "$capability" = avx2 ] && ! grep -qw avx2 /proc/cpuinfo; then continue; fi
  echo "== numeric tests again with ATEN_CPU_CAPABILITY=$capability (native: $native)"
  ATEN_CPU_CAPABILITY=$capability "${PYTEST[@]}" -m numeric
done
