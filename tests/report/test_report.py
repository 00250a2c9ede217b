"""`bitscale report`: a self-contained page whose numbers come from the store, verdicts that follow the
data, and one-line errors for bad input."""

from __future__ import annotations

import base64
import json
import math
import re
import sys

import pytest

from bitscale.cli import main
from bitscale.report import FAILS, HOLDS, INCONCLUSIVE, UNTESTED, build_report
from bitscale.report.commands import sweep_toml
from bitscale.report.findings import CLAIM_GAP, CLAIM_POWER, num
from bitscale.sweep.compare import compare_runs
from bitscale.sweep.spec import load_sweep
from bitscale.sweep.store import Store, load_runs

SWEEP = """
name = "tiny"
checkpoint_every = 20
[base]
model = { kind = "two_layer", quant = "paper-1bit" }
task = { function = "sines", d = 8, n_train = 48, n_test = 64, input_dist = "sphere" }
train = { lr = 1.0, steps = 60, schedule = "cosine", eval_every = 20 }
[grid]
width = [16, 32, 64]
quant = ["paper-1bit", "fp32"]
seed = [0, 1]
"""


def run_cli(*args: str) -> int:
    old = sys.argv
    sys.argv = ["bitscale", *map(str, args)]
    try:
        main()
    except SystemExit as e:
        return e.code or 0
    finally:
        sys.argv = old
    return 0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A store trained by `bitscale sweep` (12 tiny runs) and its report."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.toml").write_text(SWEEP)
    db = root / "s.db"
    assert run_cli("sweep", root / "tiny.toml", "--store", db, "--quiet") == 0
    out = root / "report"
    assert run_cli("report", "--store", db, "--out", out, "--bootstrap", "10") == 0
    return db, out


def test_the_page_is_self_contained(tiny):
    _, out = tiny
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower()
    # nothing to fetch: no src/href (or CSS url()) pointing at the network
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(", page, re.I)
    assert "http://" not in page and "https://" not in page
    images = re.findall(r"<img\b[^>]*>", page)
    assert len(images) >= 2  # the comparison plot and a law fit plot
    for tag in images:
        src = re.search(r'src="([^"]*)"', tag).group(1)
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n") and raw[12:16] == b"IHDR"
        width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
        assert width > 100 and height > 100
    assert '<nav>' in page and "<figcaption>" in page and "<caption>" in page
    for name in ("report.json", "tiny.toml"):
        assert (out / name).is_file()


def test_numbers_match_compare_runs(tiny):
    db, out = tiny
    page = (out / "report.html").read_text()
    data = json.loads((out / "report.json").read_text())
    expected = compare_runs(db, sweep="tiny", size="model.width")
    got = data["sweeps"][0]["slices"][0]["table"]
    assert len(got) == len(expected) == 6
    for row, r in zip(got, expected.itertuples(index=False)):
        assert (row["size"], row["label"], row["n"]) == (r.size, r.label, r.n)
        for key in ("mean", "std", "min", "max", "gap", "gap_se"):
            value = getattr(r, key)
            assert (row[key] is None and math.isnan(value)) or row[key] == pytest.approx(value, rel=1e-12)
        # and the page shows them
        assert f"<td>{num(r.mean)}</td>" in page and f"<td>{num(r.std)}</td>" in page
        if not math.isnan(r.gap):
            assert f"{num(r.gap, '+.4g')} ± {num(r.gap_se, '.2g')}" in page


def test_reproduce_commands_rebuild_the_sweep(tiny):
    db, out = tiny
    data = json.loads((out / "report.json").read_text())
    commands = data["sweeps"][0]["commands"]
    assert commands[0] == f"bitscale sweep {out / 'tiny.toml'} --store {db}"
    assert any(c.startswith("bitscale fit --law ") for c in commands)
    assert any(c.startswith(f"bitscale report --store {db} --out {out}") for c in commands)
    _, specs = load_sweep(out / "tiny.toml")  # the rebuilt sweep file gives the stored runs
    assert {s.id for s in specs} == set(load_runs(db, "tiny")["id"])


def _hand_store(path, gap_at, spread=0.004, shared=1.0):
    """fp32 vs paper-1bit at 5 widths x 3 seeds; fp32 loss = 0.3 + 3 / sqrt(width) + shared * noise[seed],
    1-bit loss = fp32 loss + gap_at(width) + spread * seed."""
    widths, seeds = [16, 64, 256, 1024, 4096], [0, 1, 2]
    noise = [shared * x for x in (-0.01, 0.0, 0.012)]
    with Store(path) as db:
        db.add_sweep("hand", {"name": "hand", "base": {}, "grid": {}})
        for quant, bits in (("fp32", 32.0), ("paper-1bit", 1.0)):
            for w in widths:
                for seed in seeds:
                    config = {"model": {"kind": "two_layer", "quant": quant, "width": w},
                              "task": {"n_train": 256}, "train": {"seed": seed, "steps": 100}}
                    run_id = f"{quant}-{w}-{seed}"
                    db.add_runs("hand", [{"id": run_id, "config": config, "n_params": 17 * w,
                                          "n_params_non_embedding": 17 * w, "precision_bits": bits,
                                          "storage_bits_per_weight": bits,
                                          "train_flops": 6.0 * 17 * w * 256 * 100}])
                    fp = 0.3 + 3.0 * w ** -0.5 + noise[seed]
                    loss = fp + (gap_at(w) if quant != "fp32" else 0.0) + (spread * seed if quant != "fp32" else 0)
                    db.finish_run(run_id, "done", final_test_loss=loss, final_train_loss=0.8 * loss, steps_done=100)


@pytest.mark.parametrize("gap_at, spread, shared, verdict", [
    (lambda w: 0.5 * (16 / w), 0.004, 1.0, HOLDS),   # the gap shrinks to 0
    (lambda w: 0.3, 0.004, 1.0, FAILS),              # the gap stays
    # seed noise of +-0.24 that both precisions share: Welch's 2 s.e. at the largest width is ~0.35, as
    # large as the loss, but it cancels in the paired differences, whose 2 s.e. is 0.0046
    (lambda w: 0.5 * (16 / w), 0.004, 20.0, HOLDS),
    # the gap shrinks to 0 but the 1-bit seeds add 0, 0.1, 0.2: at the largest width (fp32 loss 0.35)
    # the paired differences are 0.002 + (0, 0.1, 0.2), so gap 0.102 <= 2 s.e. = 2 * 0.1 / sqrt(3) = 0.115,
    # and |gap| + 2 s.e. = 0.22 > 5% of 0.35: a gap of 0.1 could hide there
    (lambda w: 0.5 * (16 / w), 0.1, 1.0, INCONCLUSIVE),
])
def test_the_gap_verdict_follows_the_data(tmp_path, gap_at, spread, shared, verdict):
    db = tmp_path / "hand.db"
    _hand_store(db, gap_at, spread, shared)
    result = build_report(db, tmp_path / "out", law="power_N", bootstrap=10)
    gap = [c for c in result.claims if c.claim == CLAIM_GAP]
    assert [c.verdict for c in gap] == [verdict]
    assert "gap" in gap[0].evidence and "per doubling" in gap[0].evidence
    power = {c.scope.split(": ")[1]: c.verdict for c in result.claims if c.claim == CLAIM_POWER}
    assert set(power) == {"fp32", "paper-1bit"}
    page = (tmp_path / "out" / "report.html").read_text()
    css = {HOLDS: "holds", FAILS: "fails", INCONCLUSIVE: "inconclusive"}[verdict]
    assert re.search(f'<td class="text {css}">{re.escape(verdict)}</td>', page)
    # claims a store cannot decide are said to be untested, not guessed
    assert any(c.verdict == UNTESTED for c in result.claims)


def test_the_law_is_chosen_from_what_varies(tmp_path):
    from bitscale.report import collect
    from bitscale.report.fits import choose_law

    db = tmp_path / "hand.db"
    _hand_store(db, lambda w: 0.1)
    (sweep,) = collect(db)
    assert choose_law(sweep)[0] == "precision_size"  # P = 32 vs 1 bits, one data budget
    assert sweep.slice_axes == [] and sweep.size == "model.width"


def test_sweep_toml_round_trips_lists_and_nested_tables():
    import tomllib

    config = {"name": "x", "description": 'a "quoted" one', "kind": "lm", "checkpoint_every": None,
              "base": {"model": {"d_model": 32, "d_ff": None, "betas": [0.9, 0.95]}, "eval_seed": 3,
                       "task": {"options": {}}},
              "grid": {"model.quant": ["fp32", "bitnet"]}, "zip": [{"model.n_layer": [1, 2], "model.d_model": [8, 16]}]}
    parsed = tomllib.loads(sweep_toml(config))
    assert parsed["base"]["model"] == {"d_model": 32, "betas": [0.9, 0.95]}  # None -> left out (the default)
    assert parsed["grid"] == config["grid"] and parsed["zip"] == config["zip"] and parsed["kind"] == "lm"
    assert parsed["description"] == 'a "quoted" one' and parsed["base"]["task"]["options"] == {}


def test_the_rebuilt_sweep_file_keeps_its_data_design_and_compile_setting(tmp_path):
    """A tokens_per_param or isoflop sweep rebuilt from the store expands to the same run ids."""
    import tomllib

    from bitscale.sweep.spec import SweepFile, load_sweep

    for head in ("tokens_per_param = 20", "isoflop = { budgets = [1e11, 4e11], sizes = 2 }"):
        text = (f'kind = "lm"\ncompile = true\n{head}\n[base]\ndata = {{ block_size = 16 }}\n'
                'model = { block_size = 16 }\ntrain = { steps = 10, batch_size = 4, warmup_steps = 1 }\n'
                '[[zip]]\nn_layer = [1, 2]\nd_model = [16, 32]\nn_head = [1, 2]\n')
        original = tmp_path / "a.toml"
        original.write_text(text)
        sweep, specs = load_sweep(original)
        rebuilt = tmp_path / "b.toml"
        rebuilt.write_text(sweep_toml(sweep.model_dump(mode="json")))
        again, again_specs = load_sweep(rebuilt)
        assert again.compile and [s.id for s in again_specs] == [s.id for s in specs]
        assert isinstance(SweepFile.model_validate(tomllib.loads(rebuilt.read_text())), SweepFile)


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, tiny):
    db, _ = tiny
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello")
    empty = tmp_path / "empty.db"
    with Store(empty) as s:
        s.add_sweep("queued-only", {"name": "queued-only"})
        s.add_runs("queued-only", [{"id": "r1", "config": {"model": {"quant": "fp32", "width": 8}}}])
    cases = [
        (["--store", tmp_path / "missing.db"], "no such store"),
        (["--store", not_a_store], "not a bitscale results store"),
        (["--store", db, "--sweep", "nope"], "unknown sweep 'nope'"),
        (["--store", empty], "no runs with status 'done'"),
        (["--store", db, "--reference", "fp16"], "--reference 'fp16'"),
        (["--store", db, "--law", "nolaw"], "nolaw"),
        (["--store", db, "--theory", tmp_path], "no summary.json"),
    ]
    capsys.readouterr()
    for args, message in cases:
        out = tmp_path / "out"
        assert run_cli("report", *args, "--out", out) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
        assert not (out / "report.html").exists()
    assert not_a_store.read_text() == "hello"


def test_theory_directory_adds_its_claims(tmp_path, tiny):
    db, _ = tiny
    theory = tmp_path / "theory"
    theory.mkdir()
    summary = {"config": {"quant": "paper-1bit"}, "plots": [],
               "targets": {"teacher-d128": {"mean_rel": {"gamma": 0.2, "ci": [0.1, 0.3], "level": 0.95, "widths": [64, 256]},
                                            "movement_exponent": {"paper-1bit": -0.5, "fp32": -0.6}},
                           "sines-d16": {"mean_rel": {"gamma": 0.01, "ci": [-0.05, 0.07], "level": 0.95, "widths": [64]},
                                         "movement_exponent": {"paper-1bit": 0.1, "fp32": -0.6}}}}
    (theory / "summary.json").write_text(json.dumps(summary))
    result = build_report(db, tmp_path / "out", bootstrap=0, law="power_N", theory=theory)
    from bitscale.report.theory import CLAIM_GENDIFF, CLAIM_KERNEL

    verdicts = {(c.claim, c.scope): c.verdict for c in result.claims if "target" in c.scope}
    assert verdicts == {(CLAIM_GENDIFF, "paper-1bit; target teacher-d128"): HOLDS,
                        (CLAIM_KERNEL, "paper-1bit; target teacher-d128"): HOLDS,
                        (CLAIM_GENDIFF, "paper-1bit; target sines-d16"): FAILS,
                        (CLAIM_KERNEL, "paper-1bit; target sines-d16"): FAILS}
    assert "Theory (NTK study)" in (tmp_path / "out" / "report.html").read_text()


def test_fit_sentences_flag_parameters_at_a_bound_and_unreliable_bootstraps():
    """A parameter pinned at its bound is named, and the answers resting on it are not stated as findings."""
    from types import SimpleNamespace

    import numpy as np

    from bitscale.laws import LawData, analyze
    from bitscale.report.findings import fit_sentences

    N = np.geomspace(1e3, 1e6, 8)
    data = LawData({"N": N}, 30 * N ** -0.3 - 0.02, label="fp32")    # best floor < 0: E sits at its bound
    a = analyze("power_N", data, bootstrap_n=50)
    assert a.fit.at_bound == {"E": "lower"}
    fs = SimpleNamespace(key=None, title="", analyses=[a], law="power_N", errors={})
    fits = SimpleNamespace(main=[fs], power=[fs], law="power_N", reason="one size variable", bootstrap=50)
    text = " ".join(fit_sentences(SimpleNamespace(reference="fp32"), fits))
    assert "E = " in text and "(at its lower bound)" in text and "not findings" in text
    assert "50 resamples" in text and "failed" in text


def _lm_slice(tokens_for):
    """A fixed-D-or-not LM sweep of 4 sizes x {fp32, ternary} x 3 seeds whose ternary gap vanishes."""
    from types import SimpleNamespace

    import pandas as pd

    from bitscale.report.collect import Slice
    from bitscale.sweep.compare import compare_frame

    rows = []
    for i, d_model in enumerate((32, 64, 128, 256)):
        n = 12 * d_model ** 2 * 2
        for label in ("fp32", "bitnet-b1.58"):
            for seed in range(3):
                gap = 0.2 / 2 ** i if label != "fp32" else 0.0
                rows.append({"_label": label, "model.d_model": d_model, "train.seed": seed, "n_params_non_embedding": n,
                             "samples_seen": tokens_for(n), "final_test_loss": 2.0 - 0.1 * i + gap + 0.001 * seed})
    runs = pd.DataFrame(rows)
    table = compare_frame(runs, label="_label", size="model.d_model", reference="fp32",
                          n_column="n_params_non_embedding")
    sweep = SimpleNamespace(kind="lm", size="model.d_model", reference="fp32", n_column="n_params_non_embedding")
    return sweep, Slice({}, runs, table, table)


def test_a_vanished_gap_on_undertrained_lms_is_not_a_verdict():
    from bitscale.report.findings import HOLDS, INCONCLUSIVE, gap_claim

    fixed = gap_claim(*_lm_slice(lambda n: 1_000_000), "bitnet-b1.58")        # D/N = 0.64 at the largest size
    assert fixed.verdict == INCONCLUSIVE and "undertrained" in fixed.evidence and "D/N = 0.64" in fixed.evidence
    optimal = gap_claim(*_lm_slice(lambda n: 20 * n), "bitnet-b1.58")        # compute-optimal: D grows with N
    assert optimal.verdict == HOLDS and "undertrained" not in optimal.evidence
