#!/usr/bin/env bash
# Issue #19's benchmark on the LIBERO-shaped suites of our own simulator
# (specprune_ros/sim/tabletop_suites.py): scripts/libero_pipeline.sh with BENCH=tabletop,
# the same stages (record, train, evaluate, ros, table; claim only when named), resumable
# the same way:
#
#   nohup bash scripts/tabletop_pipeline.sh > runs/tabletop_pipeline.log 2>&1 &
#
# Folders: demos/tabletop and demos/tabletop_paired, runs/tabletop_grounded (training),
# results/tabletop_grounded_eval, results/tabletop_grounded_claim (tracked),
# checkpoints/tabletop_grounded (the keep stage's copy, committed). Every variable of
# libero_pipeline.sh can be set the same way.
BENCH=tabletop exec bash "$(dirname "$0")/libero_pipeline.sh" "$@"
