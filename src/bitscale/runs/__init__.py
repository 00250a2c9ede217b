"""What a run is, above the training code: run directories and the models they rebuild.

This package sits above `train` and below `sweep` (docs/architecture.md). It is where code that must
know every kind of run lives, so that the layer packages (`nn`, `models`) never import a run's config.
So far it holds packing's side of that knowledge (`packing`); the kinds registry of `sweep/kinds.py` is
to move here.
"""

from bitscale.runs.packing import build_skeleton, load_packed, load_packed_lm, load_run_dir

__all__ = ["build_skeleton", "load_packed", "load_packed_lm", "load_run_dir"]
