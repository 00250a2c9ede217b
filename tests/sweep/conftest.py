import pytest

SWEEP = """
name = "tiny"
checkpoint_every = 20
[base]
model = { kind = "two_layer", quant = "paper-1bit" }
task = { function = "sines", d = 8, n_train = 48, n_test = 64, input_dist = "sphere" }
train = { lr = 1.0, steps = 60, schedule = "cosine", eval_every = 20 }
[grid]
width = [16, 32]
quant = ["paper-1bit", "fp32"]
seed = [0, 1]
"""


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SWEEP)
    return path
