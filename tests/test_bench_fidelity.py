"""benchmarks/bench_fidelity.py's judging, without a lab: pooling earlier CSVs, the range test, the goals."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

SPEC = importlib.util.spec_from_file_location("bench_fidelity", ROOT / "benchmarks" / "bench_fidelity.py")
assert SPEC is not None and SPEC.loader is not None
bench = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = bench     # its dataclasses look their module up
SPEC.loader.exec_module(bench)


def variant(label: str, per_run: list[list[float]], metric: str = "back-off gap", first_run: int = 0):
    """A Variant with `per_run[i]` as run first_run + i's samples of `metric`."""
    v = bench.Variant(label, "real" if label == "real" else "model", None if label == "real" else 10.0)
    for i, values in enumerate(per_run):
        v.run = first_run + i
        for value in values:
            v.add(metric, value)
    return v


def uniform_runs(rng: np.random.Generator, runs: int, low: float = 10.0, high: float = 16.0) -> list[list[float]]:
    return [list(rng.uniform(low, high, 8)) for _ in range(runs)]


def test_a_pooled_csv_joins_as_runs_of_their_own(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.csv"
    bench.write_csv(earlier, [variant("real", [[11.0, 12.0], [13.0]]), variant("model", [[14.0]])])
    now = variant("real", [[15.0, 16.0]])
    assert bench.pool(earlier, [now]) == 3           # the model's row has no variant here: left out
    assert now.samples["back-off gap"] == [15.0, 16.0, 11.0, 12.0, 13.0]
    assert bench.runs_of(now) == [0, 1, 2]            # the earlier runs 0 and 1 follow this run's 0
    assert [list(g) for g in bench.by_run(now, "back-off gap")] == [[15.0, 16.0], [11.0, 12.0], [13.0]]


def test_pooling_twice_keeps_every_run_apart(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.csv"
    bench.write_csv(earlier, [variant("model", [[1.0], [2.0]])])
    now = variant("model", [])
    bench.pool(earlier, [now])
    bench.pool(earlier, [now])
    assert bench.runs_of(now) == [0, 1, 2, 3]


@pytest.mark.parametrize("content, says", [
    ("a,b\n1,2\n", "no column variant"),
    ("", "no column variant"),
    ("variant,kubernetes,backoff,run,sample,metric,value\nmodel,model,1.0,0,0,back-off gap,1.2\n",
     "line 2: variant model ran at back-off 1 s there, 10 s here"),
    ("variant,kubernetes,backoff,run,sample,metric,value\nmodel,model,10.0,x,0,back-off gap,1.2\n", "line 2:"),
])
def test_a_file_that_is_not_such_a_csv_says_what_and_joins_nothing(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    now = variant("model", [[3.0]])
    with pytest.raises(ValueError, match=says):
        bench.pool(path, [now])
    assert now.samples == {"back-off gap": [3.0]} and bench.runs_of(now) == [0]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read it"):
        bench.pool(tmp_path / "none.csv", [variant("model", [])])


def test_one_distribution_passes_the_range_test_though_its_plain_ranges_need_not_nest() -> None:
    rng = np.random.default_rng(1)
    real, model = variant("real", uniform_runs(rng, 10)), variant("model", uniform_runs(rng, 20))
    r, m = real.samples["back-off gap"], model.samples["back-off gap"]
    real.samples["back-off gap"][int(np.argmax(r))] = max(m) + 0.05      # one value beyond: common by chance
    assert not bench.nested(r, m)
    beyond, p = bench.range_p(real, model, "back-off gap")
    assert beyond == 1 and p > 0.2
    assert not [miss for miss in bench.goal_misses(real, model) if miss.startswith("back-off gap")]


def test_a_model_whose_range_is_short_of_reals_misses() -> None:
    rng = np.random.default_rng(2)
    real, model = variant("real", uniform_runs(rng, 10)), variant("model", uniform_runs(rng, 20, high=14.5))
    beyond, p = bench.range_p(real, model, "back-off gap")
    assert beyond > 5 and p < bench.RANGE_ALPHA
    assert any("outside the model's range" in miss for miss in bench.goal_misses(real, model))


def test_a_median_half_a_second_off_misses() -> None:
    rng = np.random.default_rng(3)
    real = variant("real", uniform_runs(rng, 10))
    model = variant("model", [[x + 0.8 for x in run] for run in uniform_runs(rng, 20)])
    assert any(miss.startswith("back-off gap: medians") for miss in bench.goal_misses(real, model))


def test_heal_detection_is_held_under_50_ms_at_p95() -> None:
    rng = np.random.default_rng(4)
    real, model = variant("real", uniform_runs(rng, 10)), variant("model", uniform_runs(rng, 20))
    for run, value in enumerate([2.0] * 9 + [30.0]):
        real.run = run
        real.add(bench.DETECTION, value, scaled=False)
    assert not [m for m in bench.goal_misses(real, model) if m.startswith("heal detection")]
    real.samples[bench.DETECTION][-1] = 400.0     # p95 of ten values lies between the two largest
    assert any(m.startswith("heal detection on real: p95") for m in bench.goal_misses(real, model))


def test_the_model_split_in_halves_keeps_every_sample_once() -> None:
    model = variant("model", [[float(i)] * 3 for i in range(5)])
    odd, even = bench.halves(model)
    assert bench.runs_of(odd) == [0, 2, 4] and bench.runs_of(even) == [1, 3]
    assert sorted(odd.samples["back-off gap"] + even.samples["back-off gap"]) == sorted(model.samples["back-off gap"])


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["bench_fidelity.py", *args])
    monkeypatch.setattr(bench, "run_all", lambda *a: pytest.fail("--runs 0 must not bring a lab up"))
    return bench.main()


METRICS = [*bench.HELD, bench.DETECTION]


def earlier_csv(tmp_path: Path) -> Path:
    """A CSV of 10 real and 20 model runs, 8 samples of each metric per run, real's inside the model's range."""
    rng = np.random.default_rng(5)
    earlier = tmp_path / "earlier.csv"
    real, model = bench.Variant("real", "real", None), bench.Variant("model", "model", 10.0)
    for v, runs in ((real, 10), (model, 20)):
        for run in range(runs):
            v.run = run
            for metric in METRICS:
                inside = (11, 15) if v is real else (10, 16)
                for value in rng.uniform(1, 2, 8) if metric == bench.DETECTION else rng.uniform(*inside, 8):
                    v.add(metric, value, scaled=False)
    bench.write_csv(earlier, [real, model])
    return earlier


def test_runs_0_judges_pooled_files_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    earlier, metrics = earlier_csv(tmp_path), METRICS
    assert run_main(monkeypatch, "--runs", "0", "--pool", str(earlier), "--csv", str(tmp_path / "new.csv")) == 0
    out = capsys.readouterr().out
    assert f"pooled {earlier}: {(10 + 20) * 8 * len(metrics)} samples" in out
    assert "(10 | 20 runs)" in out and "event texts and facts not judged" in out
    assert "real against the model at 10 s: every distribution within the goals" in out   # texts: not claimed
    assert not (tmp_path / "new.csv").exists()       # no runs, no new samples: the pooled file is not copied


def test_runs_0_without_a_pool_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_main(monkeypatch, "--runs", "0")
    assert exit_.value.code == 2 and "nothing to judge" in capsys.readouterr().err


def test_a_bad_pool_file_is_refused_with_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n")
    with pytest.raises(SystemExit) as exit_:
        run_main(monkeypatch, "--runs", "0", "--pool", str(bad))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"--pool {bad}: not a CSV of this script" in err and "Traceback" not in err


def test_pool_only_takes_that_variants_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    earlier = earlier_csv(tmp_path)
    assert run_main(monkeypatch, "--runs", "0", "--pool-only", "real", "--pool", str(earlier)) == 1
    out = capsys.readouterr().out
    assert f"pooled {earlier}: {10 * 8 * len(METRICS)} samples" in out   # real's only
    assert "back-off gap: no samples" in out                               # nothing of the model's to judge


def test_incidental_events_are_counted_per_pod_kept_in_the_csv_and_shown_apart(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mount = {"reason": "FailedMount", "message": "MountVolume.SetUp failed"}
    started = {"reason": "Started", "message": "Started container echo"}
    real, model = bench.Variant("real", "real", None), bench.Variant("model", "model", 10.0)
    for events in ([mount, started], [started], [started]):
        bench.count_incidental(real, events)
    bench.count_incidental(model, [started])
    metric = bench.incidental_metric("FailedMount")
    assert real.samples[metric] == [1.0, 0.0, 0.0] and model.samples[metric] == [0.0]
    assert bench.reasons([mount, started]) == "Started"            # left out of the sequence compared
    path = tmp_path / "run.csv"
    bench.write_csv(path, [real])
    pooled = bench.Variant("real", "real", None)
    assert bench.pool(path, [pooled]) == 3 and sum(pooled.samples[metric]) == 1.0
    bench.print_table([real, model])
    out = capsys.readouterr().out
    assert "FailedMount: real 1 of 3 | model 0 of 1" in out
    assert f"  {metric}" not in out.split("incidental events")[0]     # not among the distributions
