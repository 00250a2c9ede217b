import pytest


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """A small store: two-layer nets, 4 widths x {fp32, paper-1bit} x 2 seeds."""
    from bitscale.sweep import SerialExecutor, load_sweep, run_sweep

    tmp = tmp_path_factory.mktemp("store")
    path = tmp / "s.toml"
    path.write_text("""
name = "widths"
[base]
model = { kind = "two_layer" }
task = { function = "sines", d = 8, n_train = 64, n_test = 128, input_dist = "sphere" }
train = { lr = 1.0, steps = 60, schedule = "cosine", eval_every = 20 }
[grid]
width = [8, 16, 32, 64]
quant = ["paper-1bit", "fp32"]
seed = [0, 1]
""")
    sweep, specs = load_sweep(path)
    run_sweep(sweep, specs, tmp / "s.db", SerialExecutor())
    return tmp / "s.db"
