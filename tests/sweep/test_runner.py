"""run_sweep with the serial, processes and ray executors: results, skipping, failures, locking."""

import math

import pytest

from bitscale.sweep.executors import ProcessExecutor, SerialExecutor, make_executor
from bitscale.sweep.runner import StoreLock, run_sweep, workdir_of
from bitscale.sweep.spec import load_sweep
from bitscale.sweep.store import Store, StoreError, load_runs
from bitscale.train import run


def reference_losses(specs):
    return {s.id: run(s.config)[2].final_train_loss for s in specs}


def stored_losses(store_path):
    with Store(store_path) as db:
        return {r["id"]: r["final_train_loss"] for r in db.runs()}


def test_serial_sweep_stores_every_run_once_and_resumes_nothing(tmp_path, sweep_file):
    sweep, specs = load_sweep(sweep_file)
    db = tmp_path / "r.db"
    report = run_sweep(sweep, specs, db, SerialExecutor())
    assert report.total == 8 and report.finished_before == 0 and report.count("done") == 8
    assert stored_losses(db) == pytest.approx(reference_losses(specs), rel=0, abs=0)
    with Store(db) as store:
        r = store.get_run(specs[0].id)
        assert r["n_params"] == 16 * 8 + 16 and r["samples_seen"] == 60 * 48
        assert r["precision_bits"] == 1.0 and r["storage_bits_per_weight"] == 1 + 32 / (16 * 8)
        assert r["train_flops"] == 6 * r["n_params"] * r["samples_seen"]
        steps = [(m["step"], m["split"]) for m in r["metrics"]]
        assert steps == sorted(set(steps), key=lambda t: (t[1], t[0]))  # no duplicates
        assert {s for s, _ in steps} == {0, 20, 40, 60}
    again = run_sweep(sweep, specs, db, SerialExecutor())
    assert again.finished_before == 8 and again.outcomes == []
    assert not any(workdir_of(db).iterdir()) if workdir_of(db).exists() else True
    frame = load_runs(db)
    assert len(frame) == 8 and set(frame["model.width"]) == {16, 32}


def test_failed_and_diverged_runs_are_recorded_and_the_sweep_goes_on(tmp_path, sweep_file):
    sweep, specs = load_sweep(sweep_file)
    bad_task = specs[0].config.model_copy(
        update={"task": specs[0].config.task.model_copy(update={"function": "teacher", "options": {"colour": 3}})}
    )
    fp32 = specs[2].config
    assert fp32.model.quant == "fp32"  # a sign network's output is bounded whatever its lr
    huge_lr = fp32.model_copy(update={"train": fp32.train.model_copy(update={"lr": 1e30})})
    from bitscale.sweep.spec import RunSpec, run_id

    specs = [RunSpec(run_id(bad_task), bad_task, {}), RunSpec(run_id(huge_lr), huge_lr, {})] + specs[3:]
    db = tmp_path / "r.db"
    report = run_sweep(sweep, specs, db, SerialExecutor())
    assert [o.status for o in report.outcomes[:2]] == ["failed", "diverged"]
    assert report.count("done") == 5
    with Store(db) as store:
        failed = store.get_run(specs[0].id)
        assert failed["status"] == "failed" and "colour" in failed["error"]
        diverged = store.get_run(specs[1].id)
        assert diverged["status"] == "diverged" and diverged["final_train_loss"] is None
    assert run_sweep(sweep, specs, db, SerialExecutor()).outcomes == []  # failed runs are finished runs
    retried = run_sweep(sweep, specs, db, SerialExecutor(), retry_failed=True)
    assert [o.id for o in retried.outcomes] == [specs[0].id]


def test_a_second_sweep_on_a_locked_store_is_refused(tmp_path, sweep_file):
    sweep, specs = load_sweep(sweep_file)
    db = tmp_path / "r.db"
    with StoreLock(db):
        with pytest.raises(StoreError, match="another sweep"):
            run_sweep(sweep, specs, db, SerialExecutor())


def test_processes_executor_matches_serial(tmp_path, sweep_file):
    sweep, specs = load_sweep(sweep_file)
    with ProcessExecutor(workers=2) as engine:
        report = run_sweep(sweep, specs, tmp_path / "p.db", engine)
    assert report.count("done") == 8
    assert {o.pid for o in report.outcomes} != {__import__("os").getpid()}  # trained in the workers
    assert stored_losses(tmp_path / "p.db") == reference_losses(specs)


def test_ray_executor_on_a_local_instance(tmp_path, sweep_file):
    pytest.importorskip("ray")
    import ray

    sweep, specs = load_sweep(sweep_file)
    specs = specs[:4]
    with make_executor("ray", workers=2) as engine:  # starts a local Ray instance ...
        assert ray.is_initialized()
        report = run_sweep(sweep, specs, tmp_path / "ray.db", engine)
    assert not ray.is_initialized()  # ... and stops it
    assert report.count("done") == 4
    assert stored_losses(tmp_path / "ray.db") == reference_losses(specs)
    assert all(math.isfinite(o.final_test_loss) for o in report.outcomes)


def test_batched_executor_matches_serial(tmp_path, sweep_file):
    sweep, specs = load_sweep(sweep_file)
    with make_executor("batched") as engine:
        report = run_sweep(sweep, specs, tmp_path / "b.db", engine)
    assert report.count("done") == 8
    assert stored_losses(tmp_path / "b.db") == pytest.approx(reference_losses(specs), rel=1e-5)
    with Store(tmp_path / "b.db") as store:
        assert all(len(store.metrics(s.id)) == 2 * 4 for s in specs)  # train and test at steps 0, 20, 40, 60
    assert not workdir_of(tmp_path / "b.db").exists() or not any(workdir_of(tmp_path / "b.db").iterdir())
