"""One-off comparison (not a product tool): a SpecPrune variant (or another configuration,
CONFIG, e.g. grid) evaluated alone on the development seeds of an earlier main run, paired
by seed with each of that run's configurations (Newcombe interval, McNemar), and its step /
LLM times against that run's ("new": the variant). Claim runs (claim_*.json) pair the same
way with the claim run they were added to.

    .venv/bin/python docs/tabletop_probe/paired_variant.py NEW_EVAL_DIR OLD_EVAL_DIR [CONFIG]
"""
import glob
import json
import sys

import numpy as np

sys.path.insert(0, '.')
from specprune_ros.eval.eval_stats import paired_comparison  # noqa: E402

SUITES = ('sim_spatial', 'sim_object', 'sim_goal', 'sim_long')
OTHERS = ('unpruned', 'specprune', 'random', 'fastv')


def successes(run: dict, config: str) -> dict:
    return {e['seed']: e['success'] for e in run['configs'][config]['per_episode']}


def suite_line(new_dir: str, old_dir: str, suite: str, config: str = 'specprune') -> str:
    pairs = {k: ([], []) for k in OTHERS}
    step_new, step_old, llm_new, llm_old = [], [], [], []
    paths = (glob.glob(f'{new_dir}/main_{suite}_task*.json')
             or glob.glob(f'{new_dir}/claim_{suite}_task*.json'))  # a claim run's
    for path in sorted(paths):
        new = json.load(open(path))
        old = json.load(open(path.replace(new_dir, old_dir)))
        assert new['seeds'] == old['seeds'], path
        mine = successes(new, config)
        for k in OTHERS:
            theirs = successes(old, k)
            for seed in new['seeds']:
                pairs[k][0].append(mine[seed])
                pairs[k][1].append(theirs[seed])
        spec, base = new['configs'][config], old['configs']
        step_new.append(spec['step_ms_median'])
        llm_new.append(spec['llm_ms_mean'])
        step_old.append((base['specprune']['step_ms_median'], base['unpruned']['step_ms_median']))
        llm_old.append((base['specprune']['llm_ms_mean'], base['unpruned']['llm_ms_mean']))
    n = len(pairs['random'][0])
    if not n:
        return ''
    line = [f"{suite} n={n} new={100 * sum(pairs['random'][0]) / n:.1f}"]
    for k, (a, b) in pairs.items():
        c = paired_comparison(a, b)
        lo, hi = c['difference_ci95']
        line.append(f"vs {k} {100 * sum(b) / n:.1f}: {100 * c['difference']:+.1f} "
                    f"[{100 * lo:+.1f},{100 * hi:+.1f}] p={c['mcnemar_p']:.3f}")
    step, old, llm, old_llm = (np.mean(step_new), np.mean(step_old, axis=0), np.mean(llm_new),
                               np.mean(llm_old, axis=0))
    line.append(f"step ms new {step:.1f} specprune {old[0]:.1f} unpruned {old[1]:.1f} "
                f"(new {old[1] / step:.2f}x, sp {old[1] / old[0]:.2f}x); llm mean new "
                f"{llm:.1f} sp {old_llm[0]:.1f} unpruned {old_llm[1]:.1f} (new "
                f"{old_llm[1] / llm:.2f}x, sp {old_llm[1] / old_llm[0]:.2f}x)")
    return ' | '.join(line)


if __name__ == '__main__':
    for name in SUITES:
        text = suite_line(*sys.argv[1:3], name, *sys.argv[3:4])
        if text:
            print(text)
