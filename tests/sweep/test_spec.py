"""Sweep files: expansion, stable ids, and one-line errors naming the key."""

import pytest

from bitscale.sweep.spec import SweepError, canonical_config, load_sweep, run_id
from bitscale.train import RunConfig


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """
[base]
model = { kind = "two_layer", quant = "paper-1bit" }
task = { function = "sines", d = 8, n_train = 64 }
train = { lr = 0.5, steps = 20 }
"""


def test_grid_times_zip_in_order(tmp_path):
    sweep, runs = load_sweep(write(tmp_path, BASE + """
[grid]
width = { logspace = [16, 256], num = 5 }
quant = ["paper-1bit", "fp32"]
[[zip]]
n_train = [32, 64, 128]
steps = [10, 20, 40]
"""))
    assert sweep.name == "s"
    assert len(runs) == 5 * 2 * 3
    assert [r.config.model.width for r in runs[::6]] == [16, 32, 64, 128, 256]  # first axis slowest
    assert {(r.config.task.n_train, r.config.train.steps) for r in runs} == {(32, 10), (64, 20), (128, 40)}
    assert runs[0].config.train.lr == 0.5 and runs[0].config.task.d == 8  # base kept
    assert len({r.id for r in runs}) == len(runs)


def test_ranges_and_any_dotted_key(tmp_path):
    _, runs = load_sweep(write(tmp_path, BASE + """
[grid]
"train.lr" = { logspace = [0.01, 1.0], num = 3 }
"task.options.width" = [4, 8]
"model.quant.granularity" = ["tensor", "channel"]
"""))
    assert sorted({r.config.train.lr for r in runs}) == pytest.approx([0.01, 0.1, 1.0])
    assert {r.config.task.options["width"] for r in runs} == {4, 8}
    # a quant sub-key keeps the base preset as the base of the table
    assert {(r.config.model.quant.weight, r.config.model.quant.granularity) for r in runs} == {
        ("sign", "tensor"), ("sign", "channel")}


def test_two_zip_groups_cross(tmp_path):
    _, runs = load_sweep(write(tmp_path, BASE + """
[[zip]]
width = [8, 16]
kappa = [1.0, 2.0]
[[zip]]
seed = [0, 1, 2]
lr = [0.1, 0.2, 0.3]
"""))
    assert len(runs) == 6


def test_id_is_stable_and_ignores_spelling():
    a = RunConfig.model_validate({"model": {"width": 64, "quant": "bitnet-b1.58"}})
    b = RunConfig.model_validate({"model": {"width": 64, "quant": {"preset": "bitnet-b1.58"}, "init_seed": 0},
                                  "train": {"seed": 0, "lr": 0.1}})
    assert run_id(a) == run_id(b)  # same run: preset spelled as a table, default init seed, default lr
    assert run_id(a) == "%s" % run_id(RunConfig.model_validate_json(a.model_dump_json()))
    c = RunConfig.model_validate({"model": {"width": 65, "quant": "bitnet-b1.58"}})
    assert run_id(c) != run_id(a)
    assert canonical_config(a) == {"model": {"width": 64, "quant": "bitnet-b1.58"}}


def test_the_same_point_twice_is_one_run(tmp_path):
    _, runs = load_sweep(write(tmp_path, BASE + "[grid]\nwidth = [8, 8, 16]\n"))
    assert len(runs) == 2


@pytest.mark.parametrize(
    "body, expected",
    [
        ("[grid]\nwidht = [1]\n", "grid: widht: unknown config key"),
        ("[grid]\nwidth = []\n", "grid: width: empty axis"),
        ("[grid]\nwidth = ['x']\n", "model.width: Input should be a valid integer"),
        ("[grid]\nquant = ['bitnet1.58']\n", "unknown preset 'bitnet1.58'"),
        ("[[zip]]\nwidth = [1, 2]\nseed = [1, 2, 3]\n", "equal lengths, but model.width has 2, train.seed has 3"),
        ("[grid]\nwidth = { logspace = [0, 4], num = 3 }\n", "logspace: ends must be positive"),
        ("[grid]\nwidth = { logspace = [1, 4] }\n", "width: a range needs"),
        ("colour = 1\n", "colour: Extra inputs are not permitted"),
        ("[base.train]\nlr = -1\n", "base.train.lr: Input should be greater than 0"),
        ("[grid\n", "invalid TOML"),
    ],
)
def test_bad_sweep_files_give_one_line(tmp_path, body, expected):
    with pytest.raises(SweepError) as err:
        load_sweep(write(tmp_path, body))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(SweepError, match="no such file"):
        load_sweep(tmp_path / "nope.toml")


# -- data budgets from the size: tokens_per_param and isoFLOP --------------------------------------------

LM_SIZES = """
kind = "lm"
[base]
data = { corpus = "tinyshakespeare", tokenizer = "byte", block_size = 64 }
train = { steps = 300, batch_size = 8, lr = 2e-3, warmup_steps = 1 }
[grid]
quant = ["fp32", "bitnet-b1.58"]
[[zip]]
n_layer = [1, 2, 2, 3]
d_model = [16, 32, 48, 64]
"""


def test_tokens_per_param_sets_each_sizes_tokens(tmp_path):
    from bitscale.sweep.accounting import account

    _, specs = load_sweep(write(tmp_path, "tokens_per_param = 20\n" + LM_SIZES))
    assert len(specs) == 8
    for spec in specs:
        acc = account(spec.config)
        per_step = 8 * 64
        assert abs(acc.samples_seen - 20 * acc.n_params_non_embedding) <= per_step / 2
    # regression: D counts samples seen (steps x batch)
    _, specs = load_sweep(write(tmp_path, "tokens_per_param = 4\n" + BASE + "[grid]\nwidth = [8, 32]\n", "r.toml"))
    for spec in specs:
        acc = account(spec.config)
        assert spec.config.train.steps == round(4 * acc.n_params_non_embedding / 64)


def test_isoflop_picks_sizes_around_the_optimum_with_equal_flops(tmp_path):
    import math

    from bitscale.sweep.accounting import account

    text = "isoflop = { budgets = [3e10, 3e11], sizes = 2 }\n" + LM_SIZES
    _, specs = load_sweep(write(tmp_path, text))
    _, again = load_sweep(write(tmp_path, text, "again.toml"))
    assert [s.id for s in specs] == [s.id for s in again]                  # stable ids
    assert len(specs) == 2 * 2 * 2                                         # budgets x quants x sizes
    all_n = sorted({account(s.config).n_params_non_embedding for s in load_sweep(write(tmp_path, LM_SIZES, "b.toml"))[1]
                    if s.config.model.quant == "fp32"})
    for budget in (3e10, 3e11):
        runs = [s for s in specs if s.point["budget"] == budget and s.config.model.quant == "fp32"]
        n_opt = math.sqrt(budget / 120)
        nearest = sorted(sorted(all_n, key=lambda n: abs(math.log(n / n_opt)))[:2])
        assert sorted(account(s.config).n_params_non_embedding for s in runs) == nearest
        for s in runs:
            acc = account(s.config)
            per_step = acc.train_flops / s.config.train.steps
            assert abs(acc.train_flops - budget) <= per_step / 2 + 1


@pytest.mark.parametrize("head, expected", [
    ("tokens_per_param = 0\n", "tokens_per_param: Input should be greater than 0"),
    ("tokens_per_param = 20\nisoflop = { budgets = [1e12] }\n", "give one of them"),
    ("isoflop = { budgets = [1e3] }\n", "isoflop.budgets: 1000 FLOPs is less than one batch of the smallest model"),
    ("isoflop = { budgets = [1e12], sizes = 9 }\n", "isoflop.sizes: 9 sizes per budget, but the sweep's axes give 4"),
    ("isoflop = { budgets = [-1.0] }\n", "isoflop.budgets.0: Input should be greater than 0"),
])
def test_bad_data_designs_give_one_line(tmp_path, head, expected):
    with pytest.raises(SweepError) as err:
        load_sweep(write(tmp_path, head + LM_SIZES))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_isoflop_sizes_that_are_the_same_model(tmp_path):
    body = LM_SIZES.replace("n_layer = [1, 2, 2, 3]", "n_layer = [1, 2, 2, 3]\nd_ff = [64, 128, 128, 256]") \
        .replace("d_model = [16, 32, 48, 64]", "d_model = [16, 32, 32, 64]")
    with pytest.raises(SweepError, match="round to the same model"):
        load_sweep(write(tmp_path, "isoflop = { budgets = [1e12] }\n" + body))


def test_compile_is_a_speed_setting_outside_the_run_ids(tmp_path):
    plain_file, specs = load_sweep(write(tmp_path, LM_SIZES, "a.toml"))
    compiled_file, compiled = load_sweep(write(tmp_path, "compile = true\n" + LM_SIZES, "b.toml"))
    assert (plain_file.compile, compiled_file.compile) == (False, True)
    assert [s.id for s in specs] == [s.id for s in compiled]
    with pytest.raises(SweepError) as err:  # a regression sweep has nothing to compile
        load_sweep(write(tmp_path, "compile = true\n[grid]\nwidth = [8]\n", "c.toml"))
    assert 'compile: regression runs are not compiled; only sweeps of kind "lm"' in str(err.value) and "\n" not in str(err.value)


def test_the_sweep_file_writer_round_trips_every_setting(tmp_path):
    """sweep_file_text writes each top-level setting of SweepFile (from its fields, not a list)."""
    from bitscale.sweep.sweep_file import SETTINGS, sweep_file_text

    assert set(SETTINGS) == set(type(load_sweep(write(tmp_path, LM_SIZES))[0]).model_fields) - {"base", "grid", "zip"}
    sweep, specs = load_sweep(write(tmp_path, 'checkpoint_every = 7\ncompile = true\ntokens_per_param = 4\n' + LM_SIZES))
    text = sweep_file_text(sweep.model_dump(mode="json"), header="a test")
    assert text.startswith("# a test\n")
    again, again_specs = load_sweep(write(tmp_path, text, "again.toml"))
    assert again == sweep.model_copy(update={"name": again.name}) and [s.id for s in again_specs] == [s.id for s in specs]


@pytest.mark.parametrize("axes, expected", [
    ('[grid]\nwidth = [16, 32]\n[[zip]]\n"model.width" = [8, 9]\nseed = [0, 1]',
     "zip group 0: axis 'model.width' sets model.width, which [grid] sets too"),
    ('[grid]\n"model.width" = [16, 32]\n[[zip]]\nwidth = [8, 9]',
     "zip group 0: axis 'width' sets model.width, which [grid] sets too"),
    ('[grid]\nseed = [0, 1]\n[zip]\nseed = [2, 3]', "zip group 0: axis 'seed' sets train.seed, which [grid] sets too"),
    ('[[zip]]\nseed = [0, 1]\n[[zip]]\n"train.seed" = [3, 4]',
     "zip group 1: axis 'train.seed' sets train.seed, which zip group 0 sets too"),
])
def test_an_axis_in_grid_and_zip_is_an_error_not_an_override(tmp_path, axes, expected):
    with pytest.raises(SweepError) as e:
        load_sweep(write(tmp_path, BASE + axes))
    message = str(e.value)
    assert expected in message and message.startswith(str(tmp_path / "s.toml")) and "\n" not in message


def test_grid_and_zip_on_different_axes_still_cross(tmp_path):
    _, runs = load_sweep(write(tmp_path, BASE + '[grid]\nwidth = [16, 32]\n[[zip]]\nseed = [0, 1]\nlr = [0.1, 0.2]'))
    assert sorted((r.config.model.width, r.config.train.seed) for r in runs) == [(16, 0), (16, 1), (32, 0), (32, 1)]


def test_deeply_nested_toml_is_one_line(tmp_path):
    deep = write(tmp_path, "a = " + "[" * 10_000 + "]" * 10_000 + "\n", "deep.toml")
    with pytest.raises(SweepError) as e:  # tomllib itself would end in a RecursionError
        load_sweep(deep)
    assert str(e.value) == f"{deep}: TOML nested too deeply (at most 32 levels of tables and arrays)"
    nested = write(tmp_path, BASE + "[grid]\nwidth = " + "[" * 40 + "16" + "]" * 40 + "\n", "forty.toml")
    with pytest.raises(SweepError, match=r"forty\.toml: TOML nested too deeply \(42 levels of tables and arrays; "
                                         r"at most 32\)"):
        load_sweep(nested)  # parses, but deeper than any sweep file needs
    inline = write(tmp_path, "x = " + "{ a = " * 40 + "1" + " }" * 40 + "\n", "tables.toml")
    with pytest.raises(SweepError, match="TOML nested too deeply"):
        load_sweep(inline)
