"""A seeded fuzz corpus of malformed inputs, run through the `bitscale` command in this process.

Every case must be refused the way a user mistake is: exit code 2, one line on stderr naming the field,
option or file, no traceback, nothing written, and within a time bound (a hang fails the case through
SIGALRM). The corpus is generated from the config models themselves, so a new field is fuzzed too:
each leaf field gets values its type can never accept (true for an integer, "yes" for a boolean, inf
and nan for a float, 2^70 for any integer, an unknown name for a literal), and every file gets
structural damage (broken TOML, deep nesting, bytes that are not UTF-8, unknown keys and kinds).
Damaged run directories (truncations and flipped bytes in each file) go through `pack` and `generate`.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sys
import time
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

import bitscale.cli
from bitscale.theory.study import TheoryConfig
from bitscale.train import RunConfig
from bitscale.train.lm_config import LMRunConfig
from tests.damage import flip, truncate

SEED = 17
TIME_LIMIT_S = 20
ROOT = Path(__file__).resolve().parents[1]

REGRESSION = {"model": {"width": 16, "quant": "paper-1bit"}, "task": {"d": 4, "n_train": 16, "n_test": 16},
              "train": {"lr": 0.5, "steps": 5, "eval_every": 5}}
LM = {"eval_batches": 1, "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "block_size": 16},
      "data": {"block_size": 16}, "train": {"steps": 2, "batch_size": 2, "warmup_steps": 0, "eval_every": 2}}
THEORY = {"widths": [8, 16], "seeds": [0], "steps": 2, "every": 1, "ntk_widths": [8], "kappas": [1.0]}
SWEEP = {"base": REGRESSION, "grid": {"width": [8, 16]}}


# -- writing TOML (the test writes its own, to be independent of the code under test) --------------

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def toml_text(data: dict) -> str:
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines += [f"{json.dumps(kk)} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# -- the corpus ---------------------------------------------------------------------------------------

def _leaf_kind(annotation) -> str | None:
    """int | float | bool | literal | model | None (not fuzzed) for a field annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaf_kind(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return "literal"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        kinds = {_leaf_kind(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model"
    return None


def leaf_fields(cls: type[BaseModel], prefix=()) -> list[tuple[tuple[str, ...], str]]:
    out = []
    for name, field in cls.model_fields.items():
        kind = _leaf_kind(field.annotation)
        if kind == "model":
            out.append(((*prefix, name), "table"))
            out += leaf_fields(field.annotation, (*prefix, name))
        elif kind is not None:
            out.append(((*prefix, name), kind))
    return out


BAD_VALUES = {
    "int": [True, "7", 1.5, 2**70, -(2**70), [1]],
    "float": ["x", True, math.inf, -math.inf, math.nan, [1.0]],
    "bool": ["yes", 1, 0.5, "true"],
    "literal": ["no-such-value", 3, True],
    "table": [3, "text", [1, 2]],
}


def _set(data: dict, path: tuple[str, ...], value) -> dict:
    data = json.loads(json.dumps(data))
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            return data
    node[path[-1]] = value
    return data


def _structural(rng: random.Random, base: dict) -> list[bytes]:
    text = toml_text(base)
    tables = [k for k, v in base.items() if isinstance(v, dict)]
    return [
        text.encode() + b"[broken\n",
        text.encode() + b"key = = 3\n",
        b"\xff\xfe" + text.encode(),                                  # not UTF-8
        text.replace("=", ":", 1).encode(),
        (text + "\n" + text).encode(),                                # duplicate keys and tables
        ("x = " + "[" * 5000 + "]" * 5000 + "\n").encode(),           # deep nesting
        ("x = " + "{ a = " * 300 + "1" + " }" * 300 + "\n").encode(),
        toml_text({**base, "no_such_key": 1}).encode(),
        toml_text(_set(base, (rng.choice(tables), "no_such_field"), 1)).encode() if tables else b"x = 1\n",
    ]


def config_cases(cls, base: dict, rng: random.Random) -> list[bytes]:
    cases = []
    for path, kind in leaf_fields(cls):
        for value in BAD_VALUES[kind]:
            cases.append(toml_text(_set(base, path, value)).encode())
    cases += _structural(rng, base)
    return cases


# -- running the command in this process ---------------------------------------------------------------

class Hang(Exception):
    pass


def invoke(args: list[str], capsys) -> tuple[int, str, str]:
    def alarm(signum, frame):
        raise Hang(f"bitscale {' '.join(args)} ran past {TIME_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIME_LIMIT_S)
    old_argv = sys.argv
    sys.argv = ["bitscale", *args]
    code = 0
    try:
        bitscale.cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        sys.argv = old_argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*")) if not p.is_fifo()}


def assert_refused(args: list[str], folder: Path, capsys, what: str) -> None:
    before = _tree(folder)
    started = time.perf_counter()
    code, out, err = invoke(args, capsys)
    lines = err.strip().splitlines()
    context = f"{what}: bitscale {' '.join(args)} -> exit {code}\nstdout: {out[-500:]}\nstderr: {err[-1500:]}"
    assert code == 2, context
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, context
    assert _tree(folder) == before, f"{what}: wrote files on refused input"
    assert time.perf_counter() - started < TIME_LIMIT_S, context


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command, cls, base, extra", [
    ("train", RunConfig, REGRESSION, []),
    ("lm", LMRunConfig, LM, []),
    ("theory", TheoryConfig, THEORY, ["--out", "theory-out"]),
])
def test_malformed_configs_are_refused_in_one_line(command, cls, base, extra, in_tmp, capsys):
    rng = random.Random(f"{SEED}-{command}")
    cases = config_cases(cls, base, rng)
    assert len(cases) >= 40
    path = in_tmp / "config.toml"
    for i, case in enumerate(cases):
        path.write_bytes(case)
        assert_refused([command, str(path), *extra], in_tmp, capsys, f"{command} case {i}: {case[:200]!r}")


def test_malformed_sweep_files_are_refused_in_one_line(in_tmp, capsys):
    rng = random.Random(f"{SEED}-sweep")
    cases = [toml_text(_set(SWEEP, ("base", *path), value)).encode()
             for path, kind in leaf_fields(RunConfig) for value in BAD_VALUES[kind][:2]]
    cases += [toml_text({**SWEEP, "grid": {"width": v}}).encode() for v in ([], "wide", [True], [1.5], {"a": 1})]
    cases += [toml_text({**SWEEP, "grid": {"no_such_axis": [1]}}).encode(),
              toml_text({**SWEEP, "kind": "vision"}).encode(),
              toml_text({**SWEEP, "checkpoint_every": True}).encode(),
              toml_text({**SWEEP, "compile": "yes"}).encode()]
    cases += _structural(rng, SWEEP)
    path = in_tmp / "sweep.toml"
    for i, case in enumerate(cases):
        path.write_bytes(case)
        assert_refused(["sweep", str(path), "--store", str(in_tmp / "store.db")], in_tmp, capsys,
                       f"sweep case {i}: {case[:200]!r}")


CSV_CASES = [
    b"",
    b"N,loss\n",
    b"N,loss\n1e6,abc\n2e6,3.0\n4e6,2.5\n",
    b"N,loss\n-1,3\n2,2\n3,1\n",
    b"N,loss\nnan,3\ninf,2\n3,1\n",
    b"M,loss\n1,3\n2,2\n3,1\n",                   # no N column
    b"\xff\xfe\x00garbage",
    b"N,loss\n" + b"1," * 10_000 + b"\n",
    b'N,loss\n"1,2\n',
]


@pytest.mark.parametrize("case", range(len(CSV_CASES)))
def test_malformed_csvs_are_refused_in_one_line(case, in_tmp, capsys):
    path = in_tmp / "points.csv"
    path.write_bytes(CSV_CASES[case])
    assert_refused(["fit", "--law", "power_N", "--csv", str(path), "--columns", "N=N,loss=loss"], in_tmp, capsys,
                   f"csv case {case}")


@pytest.mark.parametrize("args", [
    ["fit", "--law", "power_N", "--csv", "points.csv", "--columns", "N=N,loss=loss", "--bootstrap", "-1"],
    ["fit", "--law", "power_N", "--csv", "points.csv", "--columns", "N=N,loss=loss", "--drop-top", "-3"],
    ["fit", "--law", "power_N", "--csv", "points.csv", "--columns", "N=" + "(" * 500 + "N" + ")" * 500 + ",loss=loss"],
    ["fit", "--law", "no_such_law", "--csv", "points.csv", "--columns", "N=N,loss=loss"],
])
def test_out_of_range_options_are_refused(args, in_tmp, capsys):
    (in_tmp / "points.csv").write_text("N,loss\n1e3,3.0\n1e4,2.0\n1e5,1.5\n1e6,1.25\n")
    assert_refused(args, in_tmp, capsys, " ".join(args))


# -- damaged run directories -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_runs(tmp_path_factory):
    """A trained regression run and LM run, each written by the command itself."""
    from bitscale.train import build_model, build_task, save_run, train
    from bitscale.train.lm import train_lm

    root = tmp_path_factory.mktemp("runs")
    cfg = RunConfig.model_validate({**REGRESSION, "model": {"width": 16, "quant": "bitnet-b1.58"}})
    task = build_task(cfg.task)
    model = build_model(cfg.model, task.d, cfg.train.seed)
    save_run(root / "regression", model, cfg, train(model, task, cfg.train))
    train_lm(LMRunConfig.model_validate(LM), root / "lm")
    return root


def _damaged(run: Path, rng: random.Random) -> list[tuple[str, callable]]:
    """(description, damage(directory)) for truncations and flipped bytes in each file of the run."""
    cases = []
    for name in sorted(p.name for p in run.iterdir()):
        size = (run / name).stat().st_size
        for cut in sorted({0, 7, size // 3, size - 2}):  # size - 1 can leave valid JSON (its newline)
            cases.append((f"{name} truncated to {cut} B", lambda d, n=name, c=cut: truncate(d / n, c)))
        for offset in sorted(rng.sample(range(size), min(6, size))):
            cases.append((f"{name} byte {offset} flipped", lambda d, n=name, o=offset: flip(d / n, o, 0x80)))
        cases.append((f"{name} removed", lambda d, n=name: (d / n).unlink()))
    cases.append(("config.json is an array", lambda d: (d / "config.json").write_text("[1, 2]")))
    cases.append(("config.json names an unknown kind",
                  lambda d: (d / "config.json").write_text(json.dumps({"kind": "vision"}))))
    return cases




@pytest.mark.parametrize("kind", ["regression", "lm"])
def test_damaged_run_directories_are_refused_in_one_line(kind, good_runs, in_tmp, capsys):
    rng = random.Random(f"{SEED}-{kind}")
    good = good_runs / kind
    cases = [c for c in _damaged(good, rng) if not c[0].startswith("result.json")]  # not read by pack
    assert len(cases) >= 20
    for what, damage in cases:
        run = in_tmp / "run"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(good, run)
        damage(run)
        assert_refused(["pack", str(run), str(in_tmp / "out.safetensors")], in_tmp, capsys, f"pack: {what}")
        if kind == "lm":
            assert_refused(["generate", str(run), "--max-new-tokens", "2"], in_tmp, capsys, f"generate: {what}")


def test_a_fifo_in_place_of_a_file_is_refused_without_hanging(good_runs, in_tmp, capsys):
    run = in_tmp / "run"
    shutil.copytree(good_runs / "regression", run)
    (run / "model.safetensors").unlink()
    os.mkfifo(run / "model.safetensors")
    assert_refused(["pack", str(run), str(in_tmp / "out.safetensors")], in_tmp, capsys, "model.safetensors is a FIFO")
    config = in_tmp / "fifo.toml"
    os.mkfifo(config)
    assert_refused(["train", str(config)], in_tmp, capsys, "the config is a FIFO")
