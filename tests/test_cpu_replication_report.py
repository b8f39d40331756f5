"""The CPU replication's report: its tables and verdicts come from the runs' files, and unfinished runs show
as missing, never as figures."""

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("cpu_report", ROOT / "experiments" / "cpu_replication" / "report.py")
report = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(report)


def _finish(runs, name, seed, det, sto=None):
    path = runs / name / f"seed-{seed}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"config": {"seed": seed}}))
    (path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "train_time_s": 60.0 * (e + 1)}) + "\n"
                                                for e in range(32)))
    test = {"images": 9980, "deterministic_error": det, **({"stochastic_error": sto} if sto is not None else {})}
    (path / "results.json").write_text(json.dumps({"train_time_s": 1920.0, "splits": {"test": test}}))
    started = "\n=== 2026-12-06 {} swapout train\n"
    (path / "train.log").write_text(started.format("15:10:32") + started.format("17:10:32"))


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(ROOT / "experiments" / "cpu_replication" / "sweep.json", runs / "sweep.json")
    (runs / "campaign.log").write_text("=== 2026-12-06T15:10:32Z start: budget 140 min, 2 cores, a CPU, torch 2\n"
                                       "=== 2026-12-06T17:10:32Z end: exit status 0\n")
    return runs


def test_unfinished_runs_are_missing_and_no_claim_is_judged(runs):
    text = report.write(runs, runs.parent / "README.md")
    assert "**0 of 18 runs finished**, 0 failed; 1 invocation(s)" in text
    assert "| Swapout, Linear(1, 0.5) | 0 | not yet | not yet | 6.43 / 5.68 |" in text
    assert text.count("cannot tell yet") == 5  # every claim waits for its runs
    assert "Wall time 2.00 h" in text and "4.00 core-hours" in text


def test_tables_and_verdicts_follow_the_runs(runs):
    for seed, (res, swap_det, swap_sto) in enumerate([(10.0, 10.5, 9.0), (10.4, 10.7, 9.2)]):
        _finish(runs, "resnet-32ep", seed, res)
        _finish(runs, "linear-1-0.5-32ep", seed, swap_det, swap_sto)
        _finish(runs, "linear-0.5-1-32ep", seed, 12.0 + seed, 11.0 + seed * 0.2)
    text = report.write(runs, runs.parent / "README.md")
    assert "| Swapout, Linear(1, 0.5) | 2 | 10.60 ± 0.14 | 9.10 ± 0.14 | 6.43 / 5.68 |" in text
    assert "| ResNet v2 Ours (baseline) | 2 | 10.20 ± 0.28 | - (no masks) |" in text
    # swapout (9.10) against the ResNet (10.20), the seeds' spread pooled over the three methods with two seeds:
    # 3 df, sd 0.2, half-width 3.182 * 0.2 * sqrt(1/2 + 1/2)
    assert ("| Swapout beats the same ResNet | holds | Linear(1, 0.5) stochastic minus ResNet: -1.10 points "
            "[-1.74, -0.46] (t over seeds, spread pooled over the 32-epoch methods (3 df), n = 2 and 2)") in text
    assert "| Stochastic beats deterministic inference | holds |" in text
    assert ("(t over runs (n = 4)); each run: Linear(0.5, 1) seed 0: -1.00, Linear(0.5, 1) seed 1: -1.80, "
            "Linear(1, 0.5) seed 0: -1.50, Linear(1, 0.5) seed 1: -1.50; 4 of 4 below 0 (sign test, two-sided "
            "p = 0.125;") in text  # 2 / 2 ** 4
    # which methods the seeds' spread comes from, each with its own sd: 0.2 pooled from 0.14, 0.28 and 0.14
    assert ("stochastic, sd 0.20 on 3 df, from Linear(0.5, 1): 0.14, Linear(1, 0.5): 0.14, ResNet (deterministic, "
            "as it has no masks): 0.28") in text
    assert "| More stochasticity in early layers hurts | holds |" in text  # 11.1 against 9.1
    assert "| Linear(1, 0.5) is the best schedule | cannot tell yet (runs not finished) |" in text
    assert "**6 of 18 runs finished**" in text and "6 resumption(s)" in text


def test_one_seed_uses_the_test_sets_sampling_error_and_says_so():
    d, lo, hi, kind = report.difference([8.0], [10.0], 10000)
    half = 1.96 * 100 * math.sqrt(0.08 * 0.92 / 10000 + 0.1 * 0.9 / 10000)
    assert (lo, hi) == pytest.approx((d - half, d + half)) and "seed spread not included" in kind
    assert report.verdict((d, lo, hi, kind)) == "holds"
    assert report.verdict((-d, -hi, -lo, kind)) == "does not hold"


def test_two_seeds_a_method_judge_with_the_spread_pooled_over_methods():
    assert report.pooled_spread([[9.0], [10.0], []]) is None  # no method has two seeds yet
    spread = report.pooled_spread([[9.0, 9.2], [10.0, 10.4], [11.0], []])
    assert spread == pytest.approx((math.sqrt((0.02 + 0.08) / 2), 2))
    d, lo, hi, kind = report.difference([9.0, 9.2], [10.0, 10.4], 9980, spread)
    assert (lo, hi) == pytest.approx((d - 4.303 * spread[0], d + 4.303 * spread[0]))  # sqrt(1/2 + 1/2) = 1
    assert report.verdict((d, lo, hi, kind)) == "holds" and "(2 df)" in kind
    one = report.difference([9.0, 9.2], [10.0, 10.4], 9980, (spread[0], 1))  # one method with two seeds
    assert report.verdict(one) == "cannot tell"  # t = 12.7 at 1 df


def _curve(runs, seed, errors, images=9980):
    mean = [sum(col) / len(col) for col in zip(*errors)]
    curve = {"samples": list(range(1, 31)), "mean_error": mean, "standard_error": [0.0] * 30, "errors": errors,
             "repeats": len(errors), "images": images}
    (runs / "linear-1-0.5-32ep" / f"seed-{seed}" / "figure2-test.json").write_text(json.dumps(curve))


def test_few_passes_pairs_10_and_30_within_repetitions_and_waits_for_every_curve(runs):
    for seed in (0, 1):
        _finish(runs, "linear-1-0.5-32ep", seed, 14.0, 12.7)
    flat = [[13.0] * 9 + [12.0 + r * 0.5] * 21 for r in range(4)]  # every repetition: 10 passes = 30 passes
    _curve(runs, 0, flat)
    verdict, why = report.few_passes(report.read_campaign(runs))
    assert verdict == "cannot tell yet (phase 5 not run)" and "seed-1: not yet" in why
    _curve(runs, 1, flat, images=200)  # a quick check on a few images does not count
    assert report.few_passes(report.read_campaign(runs))[0] == "cannot tell"
    _curve(runs, 1, flat)
    verdict, why = report.few_passes(report.read_campaign(runs))
    assert verdict == "holds" and "+0.00 points (2 SE 0.00, 4 repetitions)" in why
    assert "10 passes reach: 100%, 100%" in why  # 1 pass 13.0 and 10 passes as good as 30
    # 10 passes worse than 30 by 0.1 in every repetition: the repetitions' spread (0.5 between them) would
    # hide it unpaired; paired, the difference is exact and the claim does not hold
    _curve(runs, 1, [[13.0] * 9 + [12.1 + r * 0.5] * 20 + [12.0 + r * 0.5] for r in range(4)])
    verdict, why = report.few_passes(report.read_campaign(runs))
    assert verdict == "does not hold" and "+0.10 points (2 SE 0.00, 4 repetitions)" in why
    # differences 0.1, 0.3, 0.1, 0.3: mean 0.2, 2 SE = 2 * 0.1155 / sqrt(4) = 0.12 < 0.2
    _curve(runs, 1, [[13.0] * 9 + [12.0 + d] * 20 + [12.0] for d in (0.1, 0.3, 0.1, 0.3)])
    verdict, why = report.few_passes(report.read_campaign(runs))
    assert verdict == "does not hold" and "+0.20 points (2 SE 0.12" in why
    _curve(runs, 1, [[13.0] * 9 + [12.0 + d] * 20 + [12.0] for d in (-0.3, 0.3, -0.2, 0.4)])  # mean 0.05, 2 SE 0.17
    assert report.few_passes(report.read_campaign(runs))[0] == "holds"


def test_the_summary_the_docs_show_says_what_it_cost_and_how_to_continue(runs):
    text = report.write(runs, runs.parent / "README.md")
    summary = text.split("<!-- summary -->", 1)[1].split("<!-- /summary -->", 1)[0]
    assert "**0 of 18 runs finished**" in summary and "Wall time 2.00 h" in summary
    assert "- machine: 2 cores, a CPU, torch 2" in summary
    assert "    experiments/cpu_replication/run.sh [BUDGET_MINUTES]" in summary
    if (ROOT / "results" / "benchmarks" / "cpu_campaign.json").exists():
        assert "| 2 runs x 1 thread |" in summary


def test_every_command_of_the_readme_names_files_that_exist_from_the_repositorys_root(runs):
    text = report.write(runs, runs.parent / "README.md")
    commands = [line.strip() for line in text.splitlines() if line.startswith("    ") and line.strip()]
    paths = [word for command in commands for word in command.split()
             if "/" in word and not word.startswith("results/")]  # results/ is where runs write
    assert "experiments/cpu_replication/run.sh" in paths and "benchmarks/bench_cpu_campaign.py" in paths
    assert [p for p in paths if not (ROOT / p).exists()] == []


def test_notes_in_the_campaign_log_are_listed_with_the_time_they_refer_to(runs):
    with open(runs / "campaign.log", "a") as log:
        log.write("=== 2026-12-06T16:00:00Z note: figure 2 drawn by hand beside the sweep\n")
    text = report.write(runs, runs.parent / "README.md")
    assert "- note, 2026-12-06T16:00:00Z: figure 2 drawn by hand beside the sweep" in text
    assert "1 invocation(s)" in text  # a note is not an invocation


def test_the_gap_to_the_resnet_by_budget_pools_the_budget_curves_spread(runs):
    for seed, (res, swap) in enumerate([(12.0, 14.0), (12.4, 14.2)]):
        _finish(runs, "resnet-16ep", seed, res)
        _finish(runs, "linear-1-0.5-16ep", seed, swap + 1.5, swap)
    text = report.write(runs, runs.parent / "README.md")
    # 14.1 - 12.2; sd pooled from 0.28 and 0.14 on 2 df: sqrt(0.05), half-width 4.303 * sqrt(0.05) * sqrt(1/2 + 1/2)
    assert ("16 epochs +1.90 points [+0.94, +2.86] (t over seeds, spread pooled over the budget curve (2 df), "
            "n = 2 and 2)") in text
    assert "32 epochs +" not in text  # no finished 32-epoch run: no gap drawn there


@pytest.mark.parametrize("df,quantile", [(1, 12.706), (6, 2.447), (11, 2.201), (15, 2.131), (20, 2.086),
                                         (30, 2.042), (60, 2.000), (120, 1.980), (10 ** 9, 1.960)])
def test_t_quantiles_match_the_tables_beyond_ten_degrees_of_freedom(df, quantile):
    # the published two-sided 95% quantiles, to their three decimals; a fractional df rounds down (wider)
    assert report.t975(df) == pytest.approx(quantile, abs=6e-4)
    assert report.t975(df + 0.5) == report.t975(df)


def test_a_method_that_gives_most_of_the_pooled_variance_is_named_with_the_spread_without_it():
    steady, wild = [10.0, 10.2], [20.0, 26.0]
    pooled = report.pooled_spread([steady, wild, [5.0, 5.2]])
    remark = report.dominant_share({"steady": steady, "wild": wild}, [5.0, 5.2], pooled)
    # sums of squares: 0.02, 18, 0.02; without wild: sd sqrt(0.04 / 2) = 0.14 on 2 df
    assert remark == " (wild gives 100% of this pooled variance; without it the pooled sd would be 0.14 on 2 df)"
    assert report.dominant_share({"a": steady, "b": [3.0, 3.15]}, [5.0, 5.2], report.pooled_spread(
        [steady, [3.0, 3.15], [5.0, 5.2]])) == ""  # the largest share, 0.02 of 0.05, is under half
