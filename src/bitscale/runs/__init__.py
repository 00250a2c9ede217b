"""What a run is, above the training code: run directories and the models they rebuild.

This package sits above `train` and below `sweep` (docs/architecture.md). It is where code that must
know every kind of run lives, so that the layer packages (`nn`, `models`) never import a run's config.
It holds the registry of run kinds (`kinds`: config class, model skeleton, samples seen, size column)
and packing's side of that knowledge (`packing`: run directories and packed files' skeletons).
"""

from bitscale.runs.kinds import KINDS, RunKind, kind_for, kind_of, parse_run_config
from bitscale.runs.packing import build_skeleton, load_packed, load_packed_lm, load_run_dir

__all__ = ["KINDS", "RunKind", "build_skeleton", "kind_for", "kind_of", "load_packed", "load_packed_lm",
           "load_run_dir", "parse_run_config"]
