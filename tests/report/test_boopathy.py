"""Boopathy & Fiete's claims in the report: sweeps named as studies get the paper's claims and no 1-bit
paper claims, an unnamed store gets them all "not tested", and a wrong name is one line."""

import pytest
from conftest import train_sweeps

from bitscale.report import ReportError, build_report
from bitscale.report.boopathy import CLAIM_DATA, CLAIM_DD, CLAIM_EQUIV, CLAIM_LAW, CLAIM_NOISE, CLAIM_PREDICT
from bitscale.report.findings import UNTESTED

SWEEPS = {
    "st-tiny": """
name = "st-tiny"
kind = "classification"
[base]
model = { kind = "cnn1d", depth = 2 }
data = { n_train = 200, n_test = 100, pool = 400 }
train = { steps = 40, eval_every = 10, schedule = "constant" }
[grid]
width = [4, 8, 16]
quant = ["fp32", "bitnet"]
seed = [0, 1]
""",
    "dd-tiny": """
name = "dd-tiny"
kind = "classification"
[base]
model = { kind = "mlp", depth = 1 }
data = { n_train = 400, pool = 600, n_test = 100 }
train = { steps = 30, eval_every = 10, batch_size = 100 }
[grid]
width = [4, 16, 64, 256]
quant = ["fp32", "bitnet"]
n_train = [200, 400]
label_noise = [0.0, 0.2]
seed = [0, 1]
""",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return train_sweeps(tmp_path_factory.mktemp("boopathy") / "runs.db", *SWEEPS.values())


def test_named_sweeps_get_the_papers_claims(store, tmp_path):
    result = build_report(store, tmp_path / "r", bootstrap=0, scale_time=["st-tiny"], double_descent=["dd-tiny"],
                          study_resamples=3)
    boopathy = result.data["boopathy"]
    claims = {c["claim"] for c in boopathy["claims"]}
    assert {CLAIM_EQUIV, CLAIM_PREDICT, CLAIM_DD, CLAIM_NOISE, CLAIM_LAW, CLAIM_DATA} == claims
    # n_train varies in dd-tiny, so "larger models need less data" is judged, not left untested
    assert all(c["verdict"] != UNTESTED for c in boopathy["claims"] if c["claim"] == CLAIM_DATA)
    # the 1-bit paper's claims are not judged on the studied sweeps; their tables are still on the page
    assert all(not c["scope"].startswith(("st-tiny", "dd-tiny")) for c in result.data["claims"])
    assert {s["name"] for s in result.data["sweeps"]} == {"st-tiny", "dd-tiny"}
    page = result.html_path.read_text()
    assert "Boopathy" in page and "bitscale double-descent --store" in page
    assert "--scale-time st-tiny" in " ".join(result.data["sweeps"][0]["commands"])


def test_without_named_sweeps_every_claim_is_not_tested(store, tmp_path):
    result = build_report(store, tmp_path / "r", bootstrap=0)
    assert {c["verdict"] for c in result.data["boopathy"]["claims"]} == {UNTESTED}


def test_an_unknown_study_sweep_is_one_line(store, tmp_path):
    with pytest.raises(ReportError, match="no sweep 'nope' with done runs"):
        build_report(store, tmp_path / "r", bootstrap=0, double_descent=["nope"])
