"""Which visual tokens each configuration keeps, drawn: the figure behind demo_replay's
object / target shares (``--overlay PNG``).

One row per sampled policy step, one column per configuration that reports its kept tokens
(SpecPrune and its variants: the layer-2 selection; FastV and random: their one-shot drop).
Each cell shows the step's views side by side as the model saw them, the dropped patches
darkened (the policy node's ``~/pruning_overlay`` rendering), the patches showing the
task's object outlined in green and its target in blue, and the share of each it kept.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from specprune_ros.node.policy_messages import overlay_image

#: outline colours of the labelled patches (demo_replay's PARTS order: object, target)
PART_COLOURS = ("lime", "deepskyblue")


def sample_indices(count: int, wanted: int) -> List[int]:
    """``wanted`` step indices spread evenly over ``count`` steps (all when fewer)."""
    if count <= wanted:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, wanted)})


def as_grids(labels: np.ndarray) -> np.ndarray:
    """(views, patches) or (views, grid, grid) patch labels as (views, grid, grid)."""
    labels = np.asarray(labels)
    if labels.ndim == 3:
        return labels
    grid = int(round(labels.shape[-1] ** 0.5))
    return labels.reshape(labels.shape[0], grid, grid)


def kept_counts(masks: Sequence[np.ndarray], labels: np.ndarray, part: int
                ) -> Tuple[int, int, float]:
    """Of the patches labelled ``part``: how many ``masks`` keep, how many there are, and
    how many a uniform subset of each view's kept count keeps on average."""
    cells = as_grids(labels) == part
    kept, shown, uniform = 0, 0, 0.0
    for view, mask in enumerate(masks):
        mask = np.asarray(mask, bool).reshape(cells[view].shape)
        n = int(cells[view].sum())
        kept += int((mask & cells[view]).sum())
        shown += n
        uniform += n * float(mask.mean())
    return kept, shown, uniform


def kept_share(masks: Sequence[np.ndarray], labels: np.ndarray, part: int) -> float:
    """The share of the patches labelled ``part`` that ``masks`` keep (nan: none shown)."""
    kept, shown, _ = kept_counts(masks, labels, part)
    return kept / shown if shown else float("nan")


def draw(path: str, images: Sequence[Sequence[np.ndarray]],
         masks: Dict[str, Sequence[Sequence[np.ndarray]]], labels: Sequence[np.ndarray],
         parts: Sequence[str]) -> None:
    """Write the figure: ``images[i]`` the views of sampled step i, ``masks[config][i]``
    its kept masks per view, ``labels[i]`` its patch labels per view ((views, patches) or
    (views, grid, grid); 0 none, k + 1 ``parts[k]``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    names = list(masks)
    rows, cols = len(images), len(names)
    views = len(images[0])
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * views * cols, 2.9 * rows),
                             squeeze=False)
    for i, step_images in enumerate(images):
        height, width = step_images[0].shape[:2]
        grids = as_grids(labels[i])
        grid = grids.shape[-1]
        for j, name in enumerate(names):
            ax = axes[i][j]
            ax.imshow(overlay_image(step_images, masks[name][i]))
            for v in range(views):
                for k, colour in enumerate(PART_COLOURS[:len(parts)]):
                    for r, c in zip(*np.nonzero(grids[v] == k + 1)):
                        ax.add_patch(Rectangle(
                            (v * width + c * width / grid, r * height / grid),
                            width / grid, height / grid, fill=False, edgecolor=colour,
                            linewidth=0.8))
            shares = ", ".join(
                f"{part} {100 * kept_share(masks[name][i], grids, k + 1):.0f} %"
                for k, part in enumerate(parts) if (grids == k + 1).any())
            ax.set_title(f"{name}, step {i}: {shares or 'no labelled patch'}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
