import math

from bitscale.demo import FULL, QUICK, DemoSettings, results_json, run_demo, width_table


def test_settings_meet_the_required_grid():
    for settings in (QUICK, FULL):
        assert len(settings.widths) >= 6 and len(settings.seeds) >= 3 and len(settings.targets) >= 2
    assert max(FULL.widths) >= 4096
    configs = FULL.configs()
    assert len(configs) == len(FULL.widths) * len(FULL.seeds) * len(FULL.targets) * 2


def test_tiny_demo_pairs_share_init_and_data():
    settings = DemoSettings(widths=(8, 32), seeds=(0, 1), targets=(("sines", 4),), steps=30, n_train=32, n_test=64)
    calls = []
    results = run_demo(settings, on_run=calls.append)
    assert len(calls) == 8 and len(results) == 4
    for r in results:
        assert set(r.test_loss) == {"fp32", "paper-1bit"}
        assert r.output_difference > 0 and math.isfinite(r.output_difference)
    rows = width_table(results)
    assert [(row["target"], row["width"], row["seeds"]) for row in rows] == [
        ("sines-d4-sphere", 8, 2),
        ("sines-d4-sphere", 32, 2),
    ]
    mean, std = rows[0]["test_gap"]
    gaps = [r.test_loss["paper-1bit"] - r.test_loss["fp32"] for r in results if r.width == 8]
    assert math.isclose(mean, sum(gaps) / 2)
    assert list(results_json(settings, results)["settings"]["widths"]) == [8, 32]
