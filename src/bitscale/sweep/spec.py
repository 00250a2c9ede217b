"""Sweep files: one base run config plus axes, expanded into run specs with stable ids.

A sweep file is TOML:

    name = "paper-width"                 # default: the file's stem
    checkpoint_every = 200               # training-state checkpoint interval in steps (default: eval_every)
    compile = true                       # LM sweeps: torch.compile the decoder blocks (speed only; see train.speed)

    [base]                               # a full run config (see bitscale.train.run), defaults filled in
    model = { kind = "two_layer", quant = "paper-1bit" }
    task = { function = "sines", d = 16, n_train = 256 }
    train = { lr = 1.0, steps = 1000, schedule = "cosine" }

    [grid]                               # every combination of these axes
    width = { logspace = [16, 4096], num = 9 }
    quant = ["paper-1bit", "fp32"]
    seed = [0, 1, 2]

    [[zip]]                              # axes walked together, value i with value i; crossed with the grid
    n_train = [64, 256, 1024]
    steps = [250, 1000, 4000]

An axis is named by a dotted config key (`model.width`, `train.lr`, `task.options.width`, ...) or by
one of the short names of its kind (`KINDS[kind].aliases`, `bitscale.runs.kinds`). Its values are an
explicit list or a range: `{logspace = [a, b], num = n}` (geometric; integers when a and b are integers) or
`{linspace = [a, b], num = n}`. `zip` is a table or an array of tables; each is one group of
equal-length axes. Each config key is an axis at most once, short names resolved: `width` in [grid]
and `model.width` in a [[zip]] group (or in two groups) is an error naming the axis, not one value
silently overriding the other. A file nested more than `bitscale.limits.MAX_TOML_DEPTH` (32) levels deep is refused.

A sweep of language models sets `kind = "lm"` at the top: its [base] is then an `LMRunConfig` (model =
DecoderConfig, data, train; see `bitscale.train.lm_config`) and the short names are those of
`KINDS["lm"].aliases`. Sizes usually move several fields together, so they go in a [[zip]]:

    kind = "lm"
    [base]
    data = { corpus = "tinyshakespeare", tokenizer = "byte", block_size = 128 }
    train = { steps = 300, batch_size = 16, lr = 2e-3 }
    [grid]
    quant = ["fp32", "bitnet-b1.58", "bitnet"]
    seed = [0, 1]
    [[zip]]
    n_layer = [2, 3, 4]
    d_model = [32, 64, 128]

Two designs of the scaling literature set each run's data budget from its size (D is the samples seen,
steps x batch: tokens for an LM; the steps are rounded to whole steps, at least one):

    tokens_per_param = 20                # D = 20 x each size's non-embedding N (Hoffmann et al. 2022)

    isoflop = { budgets = [1e12, 1e13, 1e14], sizes = 3 }
        # for each budget C, the `sizes` model sizes of the sweep nearest N_opt = sqrt(C / 120) (the
        # 20-tokens rule, C = 6 N D), each trained on D = C / (FLOPs per sample), so its FLOPs are C

The model sizes are the configs the axes give; with `isoflop` every other axis (quant, seed, ...) is
crossed with the budgets, each run's point records its `budget`, and runs of one budget have equal
training FLOPs up to the rounding of the steps.

Every expanded run is a validated `RunConfig` (or `LMRunConfig`). Its id is the first 16 hex digits of the SHA-256 of its
canonical JSON: keys sorted, fields equal to their defaults left out (so adding a defaulted field
to bitscale does not change old ids), the quantizer written as its preset name when it is one, and
an `init_seed` equal to the train seed dropped (it builds the same model). The same run reached from
two sweep files therefore has one id and is trained once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel, Discriminator, Field, Tag, ValidationError, ValidationInfo, field_validator, model_validator,
)

from ..limits import STRICT, InputFileError
from ..limits import read_toml as limits_read_toml
from ..quant import QuantConfig, preset_name, resolve_config
from ..train.run import RunConfig, format_validation_error
from .accounting import account
from .kinds import KINDS, AnyRunConfig, config_class, kind_for, kind_of

class SweepError(ValueError):
    """A sweep file that cannot be expanded: the message is one line naming the key."""


def _config_key(key: str, kind: str = "regression") -> str:
    """Resolve an alias and check that the dotted key names a field of the kind's config class."""
    aliases = KINDS[kind].aliases
    path = aliases.get(key, key)
    parts = path.split(".")
    model: Any = config_class(kind)
    for i, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            example = KINDS[kind].example_keys
            raise ValueError(
                f"unknown config key {key!r}; expected a dotted key such as {example}, "
                f"train.lr, or one of {', '.join(aliases)}"
            )
        annotation = fields[part].annotation
        if part in ("options", "quant"):  # free-form tables: any sub-key is the callee's to validate
            return path
        if i < len(parts) - 1:
            model = annotation
    return path


def _expand_values(key: str, spec: Any) -> list[Any]:
    if isinstance(spec, list):
        if not spec:
            raise ValueError("empty axis; expected a non-empty list or a {logspace|linspace = [a, b], num = n} range")
        return spec
    if isinstance(spec, dict):
        kinds = [k for k in ("logspace", "linspace") if k in spec]
        extra = set(spec) - {"logspace", "linspace", "num"}
        if len(kinds) != 1 or extra or "num" not in spec:
            raise ValueError("a range needs exactly one of logspace/linspace = [a, b] and num = n")
        ends, num = spec[kinds[0]], spec["num"]
        if not (isinstance(ends, list) and len(ends) == 2 and all(isinstance(e, (int, float)) for e in ends)):
            raise ValueError(f"{kinds[0]}: expected [a, b] with two numbers, got {ends!r}")
        if not isinstance(num, int) or isinstance(num, bool) or num < 1:
            raise ValueError(f"num: expected a positive integer, got {num!r}")
        a, b = ends
        if kinds[0] == "logspace":
            if a <= 0 or b <= 0:
                raise ValueError(f"logspace: ends must be positive, got {ends!r}")
            values = [a * (b / a) ** (i / (num - 1)) if num > 1 else a for i in range(num)]
        else:
            values = [a + (b - a) * i / (num - 1) if num > 1 else a for i in range(num)]
        if isinstance(a, int) and isinstance(b, int):
            values = [int(round(v)) for v in values]
            if len(set(values)) < len(values):
                raise ValueError(f"{kinds[0]} {ends} with num={num} repeats integer values; use a smaller num")
        return values
    raise ValueError(f"expected a list of values or a range table, got {spec!r}")


Axes = dict[str, Any]


def _base_kind(value: Any) -> str:
    if isinstance(value, dict):
        return kind_of(value)
    return kind_for(value).name


class IsoFlop(BaseModel):
    """isoFLOP design: for each compute budget, the `sizes` model sizes nearest the 20-tokens optimum."""

    model_config = STRICT

    budgets: list[Annotated[float, Field(gt=0)]] = Field(min_length=1, description="training FLOPs budgets C")
    sizes: int = Field(3, ge=1, description="model sizes per budget")


class SweepFile(BaseModel):
    """The validated contents of a sweep file (see the module docstring)."""

    model_config = STRICT

    name: Optional[str] = Field(None, min_length=1)
    description: str = ""
    kind: Literal[tuple(KINDS)] = "regression"  # type: ignore[valid-type]
    checkpoint_every: Optional[int] = Field(None, ge=1, description="steps between training-state checkpoints")
    compile: bool = Field(False, description="LM sweeps: compile the decoder blocks (a speed setting, not in the ids)")
    base: Annotated[
        Union[tuple(Annotated[k.config_class, Tag(name)] for name, k in KINDS.items())],  # type: ignore[valid-type]
        Discriminator(_base_kind),
    ] = Field(default_factory=RunConfig)
    grid: Axes = Field(default_factory=dict)
    zip: Union[Axes, list[Axes]] = Field(default_factory=list)
    tokens_per_param: Optional[float] = Field(None, gt=0, description="D = tokens_per_param x non-embedding N")
    isoflop: Optional[IsoFlop] = None

    @model_validator(mode="after")
    def _one_data_design(self) -> "SweepFile":
        if self.tokens_per_param is not None and self.isoflop is not None:
            raise ValueError("tokens_per_param and isoflop both set the data budget; give one of them")
        if self.compile and not KINDS[self.kind].compiles:
            compiling = ", ".join(f'"{k.name}"' for k in KINDS.values() if k.compiles)
            raise ValueError(f"compile: {self.kind} runs are not compiled; only sweeps of kind {compiling} compile their models")
        return self

    @model_validator(mode="before")
    @classmethod
    def _base_of_kind(cls, data: Any) -> Any:
        """[base] is validated as the config class of the sweep's `kind`."""
        kind = KINDS.get(data.get("kind")) if isinstance(data, dict) else None
        if kind is not None and "kind" in kind.config_class.model_fields and isinstance(data.get("base", {}), dict):
            data = {**data, "base": {**data.get("base", {}), "kind": kind.name}}  # a kind its configs name
        return data

    @model_validator(mode="after")
    def _base_matches_kind(self) -> "SweepFile":
        if kind_of(self.base.model_dump()) != self.kind:
            raise ValueError(f"base: kind = {kind_of(self.base.model_dump())!r} but the sweep's kind is {self.kind!r}")
        return self

    @field_validator("grid")
    @classmethod
    def _check_grid(cls, axes: Axes, info: ValidationInfo) -> Axes:
        return _check_axes(axes, info.data.get("kind", "regression"))

    @field_validator("zip")
    @classmethod
    def _check_zip(cls, groups: Union[Axes, list[Axes]], info: ValidationInfo) -> list[Axes]:
        groups = [groups] if isinstance(groups, dict) else groups
        kind = info.data.get("kind", "regression")
        # Where an axis was given first; "grid" is unknown when [grid] itself failed validation.
        owner: dict[str, str] = {path: "[grid]" for path in info.data.get("grid", {})}
        checked = []
        for i, group in enumerate(groups):
            axes = _check_axes(group, kind)
            lengths = {k: len(v) for k, v in axes.items()}
            if len(set(lengths.values())) > 1:
                listing = ", ".join(f"{k} has {n}" for k, n in lengths.items())
                raise ValueError(f"zip group {i}: axes must have equal lengths, but {listing}")
            # An axis set twice would have one value silently overwrite the other in every run.
            for name, path in zip(group, axes):
                if path in owner:
                    raise ValueError(f"zip group {i}: axis {name!r} sets {path}, which {owner[path]} sets too; "
                                     f"give each axis once, in [grid] or in one [[zip]] group")
                owner[path] = f"zip group {i}"
            checked.append(axes)
        return checked


def _check_axes(axes: Axes, kind: str = "regression") -> Axes:
    """Resolve each axis to (dotted key -> list of values), raising ValueError naming the axis."""
    out: dict[str, list[Any]] = {}
    for key, spec in axes.items():
        try:
            path = _config_key(key, kind)
            values = _expand_values(key, spec)
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
        if path in out:
            raise ValueError(f"{key}: axis {path} given twice")
        out[path] = values
    return out


@dataclass(frozen=True)
class RunSpec:
    """One expanded run: its stable id, its validated config, and the axis values that made it."""

    id: str
    config: AnyRunConfig
    point: dict[str, Any]


def canonical_config(config: AnyRunConfig) -> dict[str, Any]:
    """The config as the dict its id hashes (see the module docstring). An LM config keeps its
    `kind` (a default, but the one thing that tells it from a regression config)."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    model = data.setdefault("model", {})
    quant = config.model.quant
    if isinstance(quant, dict):
        quant = resolve_config(quant)
    if isinstance(quant, QuantConfig):
        model["quant"] = preset_name(quant) or quant.model_dump(mode="json")
    else:
        model["quant"] = quant
    init_seed = getattr(config.model, "init_seed", None)
    if init_seed is not None and init_seed == config.train.seed:
        model.pop("init_seed", None)
    if "kind" in type(config).model_fields:  # a kind with its own `kind` field (lm) always names it
        data["kind"] = config.kind
    return data


def run_id(config: AnyRunConfig) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of `config`."""
    text = json.dumps(canonical_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        node = data.get(p)
        if not isinstance(node, dict):
            # a preset name replaced by a table of fields keeps the preset as its base
            node = {"preset": node} if p == "quant" and isinstance(node, str) else {}
            data[p] = node
        data = node
    data[leaf] = value


def expand(sweep: SweepFile, source: str = "sweep") -> list[RunSpec]:
    """All runs of the sweep in order: grid product (first axis slowest), then zip rows.

    Raises SweepError naming the axis values of the first run whose config is invalid. Duplicate runs
    (two axis points giving the same config) are kept once.
    """
    grid_keys = list(sweep.grid)
    grid_points = [dict(zip(grid_keys, combo)) for combo in itertools.product(*sweep.grid.values())]
    zip_groups = sweep.zip if isinstance(sweep.zip, list) else [sweep.zip]
    zip_rows = [
        [dict(zip(group, row)) for row in zip(*group.values())] for group in zip_groups if group
    ]
    base = sweep.base.model_dump(mode="json", exclude_unset=True)
    config_cls = config_class(sweep.kind)
    points = []
    for grid_point in grid_points:
        for rows in itertools.product(*zip_rows) if zip_rows else [()]:
            point = dict(grid_point)
            for row in rows:
                point.update(row)
            points.append(point)

    def build(point: dict[str, Any], extra: dict[str, Any] | None = None) -> AnyRunConfig:
        data = json.loads(json.dumps(base))
        for path, value in {**point, **(extra or {})}.items():
            _set_path(data, path, value)
        try:
            return config_cls.model_validate(data)
        except ValidationError as e:
            at = ", ".join(f"{k}={v!r}" for k, v in {**point, **(extra or {})}.items())
            raise SweepError(f"{format_validation_error(e, source, tags=KINDS)} (at {at})") from None

    if sweep.isoflop is not None:
        runs = _isoflop_runs(sweep.isoflop, points, build)
    elif sweep.tokens_per_param is not None:
        runs = []
        for point in points:
            config = build(point)
            n = account(config).n_params_non_embedding
            runs.append((point, build(point, {"train.steps": _steps_for(config, sweep.tokens_per_param * n)})))
    else:
        runs = [(point, build(point)) for point in points]
    specs, seen = [], set()
    for point, config in runs:
        rid = run_id(config)
        if rid not in seen:
            seen.add(rid)
            specs.append(RunSpec(rid, config, point))
    return specs


def _steps_for(config: AnyRunConfig, samples: float) -> int:
    """Whole training steps that see `samples` samples (LM: tokens), at least one."""
    return max(1, int(round(samples / kind_for(config).samples_per_step(config))))


_SHAPE_KEYS = ("model.width", "model.depth", "model.d", "model.n_layer", "model.n_head", "model.d_model",
               "model.d_ff", "model.block_size")


def _isoflop_runs(design: IsoFlop, points: list[dict[str, Any]], build) -> list[tuple[dict[str, Any], AnyRunConfig]]:
    """(point, config) per budget x family x chosen size; see the module docstring. A family is every
    axis value but the model's shape; its sizes are the configs the shape axes give."""
    families: dict[str, list[tuple[dict[str, Any], AnyRunConfig, Any]]] = {}
    for point in points:
        config = build(point)
        acc = account(config)
        shape = {k: v for k, v in point.items() if k in _SHAPE_KEYS}
        key = json.dumps({k: v for k, v in point.items() if k not in _SHAPE_KEYS}, sort_keys=True, default=str)
        families.setdefault(key, []).append((point, config, (shape, acc)))
    out = []
    for members in families.values():
        by_n: dict[int, tuple[dict[str, Any], AnyRunConfig, Any]] = {}
        for point, config, (shape, acc) in members:
            if acc.n_params_non_embedding in by_n:
                other = by_n[acc.n_params_non_embedding][2][0]
                raise SweepError(f"isoflop: sizes {other} and {shape} round to the same model "
                                 f"(N = {acc.n_params_non_embedding:,}); give distinct sizes")
            by_n[acc.n_params_non_embedding] = (point, config, (shape, acc))
        if design.sizes > len(by_n):
            raise SweepError(f"isoflop.sizes: {design.sizes} sizes per budget, but the sweep's axes give "
                             f"{len(by_n)} model size(s)")
        sizes = sorted(by_n)
        smallest = by_n[sizes[0]]
        per_sample = smallest[2][1].train_flops / max(smallest[2][1].samples_seen, 1)
        one_batch = per_sample * kind_for(smallest[1]).samples_per_step(smallest[1])
        for budget in design.budgets:
            if budget < one_batch:
                raise SweepError(f"isoflop.budgets: {budget:g} FLOPs is less than one batch of the smallest model "
                                 f"({one_batch:.3g} FLOPs = 6 N x one batch)")
            n_opt = math.sqrt(budget / 120.0)
            chosen = sorted(sorted(sizes, key=lambda n: (abs(math.log(n / n_opt)), n))[:design.sizes])
            for n in chosen:
                point, config, (_, acc) = by_n[n]
                flops_per_sample = acc.train_flops / max(acc.samples_seen, 1)
                steps = _steps_for(config, budget / flops_per_sample)
                out.append(({**point, "budget": budget}, build(point, {"train.steps": steps})))
    return out


def read_toml(path: "str | Path") -> dict[str, Any]:
    """`bitscale.limits.read_toml`, its one-line errors raised as SweepError."""
    try:
        return limits_read_toml(path)
    except InputFileError as e:
        raise SweepError(str(e)) from None


def load_sweep(path: "str | Path") -> tuple[SweepFile, list[RunSpec]]:
    """Read, validate and expand a sweep file. Every user mistake raises SweepError with one line."""
    path = Path(path)
    data = read_toml(path)
    try:
        sweep = SweepFile.model_validate(data)
    except ValidationError as e:
        raise SweepError(format_validation_error(e, str(path), tags=KINDS)) from None
    if sweep.name is None:
        sweep = sweep.model_copy(update={"name": path.stem})
    return sweep, expand(sweep, str(path))

