"""The app, its consoles, and the helpers every command shares."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

app = typer.Typer(
    name="bitscale",
    help="Train, scale and run 1-bit and ternary neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Rich assumes 80 columns when output is not a terminal; the demo's table needs a little more.
console = Console() if sys.stdout.isatty() else Console(width=110)
err_console = Console(stderr=True)


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit code 2."""


def fail(message: str) -> None:
    raise UserError(message)


def load_config(path: Path, model: type):
    """Read the TOML file `path` into the pydantic model class `model`; every mistake is one line."""
    from ..limits import InputFileError, read_toml
    from ..train import format_validation_error

    try:  # one line for a missing file, bad TOML, or one nested too deeply
        data = read_toml(path)
    except InputFileError as e:
        fail(str(e))
    try:
        return model.model_validate(data)
    except ValidationError as e:
        fail(format_validation_error(e, str(path)))


def load_lm_run(run_dir: Path, hint: str = ""):
    """(model, tokenizer, LMRunConfig) of an LM run directory (`bitscale lm --out`); every failure is one
    error line naming the directory (`hint`: how to install a missing package)."""
    from ..train import format_validation_error
    from ..train.lm_files import load_lm

    try:
        return load_lm(run_dir)
    except ValidationError as e:
        fail(format_validation_error(e, f"{run_dir}/config.json"))
    except (ValueError, OSError) as e:
        text = " ".join(str(e).split())
        fail(text if text.startswith(str(run_dir)) else f"{run_dir}: {text}")
    except ImportError as e:  # a BPE run without `tokenizers`
        fail(f"{run_dir}: {e}" + (f": {hint}" if hint else ""))


def load_run_config(path: Path):
    """A regression `RunConfig`, or a `ClassificationRunConfig` when the file says kind = "classification"."""
    from ..limits import InputFileError, read_toml
    from ..train import RunConfig
    from ..train.classification import ClassificationRunConfig

    try:
        kind = read_toml(path).get("kind")
    except InputFileError as e:
        fail(str(e))
    return load_config(path, ClassificationRunConfig if kind == "classification" else RunConfig)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def progress_bar_with_failures() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed/diverged"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


DEFAULT_STORE = Path("runs/bitscale.db")


def curve_studies(title: str, study, *, store: Path, sweep, by: str, split: str, metric: str,
                  variables: dict, t_min: float, resamples: int, seed: int, outputs) -> list:
    """What `bitscale scale-time` and `bitscale double-descent` share: check the options and outputs,
    read the store's curves (one LawData per value of `by`) and run `study(data, resamples=, seed=,
    t_min=, progress=)` on each under a progress bar. Returns the studies; user mistakes exit via fail()."""
    from ..atomic import check_output
    from ..laws import LawDataError, from_store
    from ..sweep.store import StoreError
    from .fit import MAX_BOOTSTRAP, check_count, check_positive_float

    check_count("--resamples", resamples, 0, MAX_BOOTSTRAP)
    check_positive_float("--t-min", t_min)
    for out in outputs:
        if out is not None:
            check_output(out, inputs=[store])
    if not store.exists():
        fail(f"{store}: no such store")
    try:
        datasets = from_store(store, sweep=sweep, by=by, split=split, curves=True, metric=metric,
                              variables=variables)
    except (LawDataError, ValueError, StoreError) as e:
        fail(" ".join(str(e).split()))
    studies = []
    with progress_bar() as bar:
        for data in datasets:
            task = bar.add_task(f"{title} {data.label}", total=max(resamples, 1))
            try:
                studies.append(study(data, resamples=resamples, seed=seed, t_min=t_min,
                                     progress=lambda done, total: bar.update(task, completed=done)))
            except (LawDataError, ValueError, RuntimeError) as e:
                fail(f"{data.label}: {' '.join(str(e).split())}")
            bar.update(task, completed=max(resamples, 1))
    return studies
