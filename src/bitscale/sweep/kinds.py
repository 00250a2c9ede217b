"""The kinds of run a sweep can hold: re-exported from `bitscale.runs.kinds`, their one home."""

from __future__ import annotations

from ..runs.kinds import KINDS, AnyRunConfig, RunKind, config_class, kind_for, kind_of, parse_run_config

__all__ = ["KINDS", "AnyRunConfig", "RunKind", "config_class", "kind_for", "kind_of", "parse_run_config"]
