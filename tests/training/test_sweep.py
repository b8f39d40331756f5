"""``swapout sweep``: planning, the recorded definition, where children run, the seed table, and a whole
sweep on the CPU that a budget interrupts and a second invocation finishes."""

import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swapout.cli.checks import train_config
from swapout.cli.main import build_parser, main
from swapout.runs.config import TrainConfig, load_preset
from swapout.runs.report import seed_table
from swapout.runs.rundir import read_checkpoint
from swapout.training import sweep, sweep_plan
from swapout.training.sweep_packs import run_config

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top

RESNET, SWAPOUT = "short/cpu-20-w1-resnet", "short/cpu-20-w1-swapout"
# 1,000 training images, batch 32, at most 12 steps, 50 images evaluated per split: a run's time is mostly its
# process starting. Not fewer or smaller steps: a budget's SIGTERM is repeated every 0.2 s, and a run whose
# training took less than that could finish between two of them instead of stopping.
TINY = ["--depth", "8", "--val-split", "49000", "--batch-size", "32", "--epochs", "2", "--max-steps", "12",
        "--eval-samples", "2", "--eval-limit", "50", "--checkpoint-every", "4"]


def _run_main(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("entries,message", [
    ([{"preset": "table9/none"}], "unknown preset"),
    ([{"preset": RESNET, "seeds": [0, 0]}], "seeds must be distinct"),
    ([{"preset": RESNET, "seeds": [-1]}], "seeds must be distinct integers >= 0"),
    ([{"preset": RESNET, "overrides": {"seed": 3}}], "'seed' cannot be overridden"),
    ([{"preset": RESNET, "overrides": {"device": "cuda"}}], "'device' cannot be overridden"),
    ([{"preset": RESNET, "overrides": {"colour": "red"}}], "'colour' cannot be overridden"),
    ([{"preset": RESNET, "overrides": {"epochs": None}}], r"epochs cannot be overridden with null \(only theta1, "),
    ([{"preset": RESNET, "overrides": {"depth": 21}}], r"run 1 \(short/cpu-20-w1-resnet\): .*6n\+2"),
    ([{"preset": RESNET}, {"preset": RESNET, "overrides": {"epochs": 3}}], "run 2: another run already uses"),
    ([{"preset": RESNET, "seeds": [0, 1]}, {"preset": RESNET, "seeds": [1, 2]}], "already has seed.s. 1; an entry"),
    ([{"preset": RESNET, "name": "r"}, {"preset": SWAPOUT, "name": "r", "seeds": [1]}], "for a different experiment"),
    ([{"preset": RESNET, "name": "../up"}], "name must be"),
    ([], "at least one run"),
])
def test_bad_definitions_are_refused(entries, message):
    with pytest.raises(ValueError, match=message):
        sweep_plan.make_definition(entries)


def test_plan_knows_done_resumable_and_new_runs_and_their_commands(tmp_path):
    definition = sweep_plan.make_definition(
        [{"preset": RESNET, "seeds": [0, 1, 2, 3], "overrides": {"epochs": 3, "sync_bn": True}},
         {"preset": SWAPOUT, "name": "swap-long", "seeds": [5], "overrides": {"milestones": [2, 4]}}],
        overrides={"epochs": 6})
    runs = sweep_plan.plan(definition, tmp_path)
    assert [r.label for r in runs] == [f"short-cpu-20-w1-resnet/seed-{s}" for s in range(4)] + ["swap-long/seed-5"]
    assert runs[0].overrides == {"epochs": 6, "sync_bn": True}  # the command line's value wins
    for run, files in zip(runs, [["config.json", "results.json"], ["config.json", "checkpoint.prev.pt"],
                                 ["config.json", "metrics.jsonl"], []]):
        run.path.mkdir(parents=True)
        for name in files:
            (run.path / name).write_text("{}")
    assert [r.state for r in runs] == ["done", "resume", "restart", "new", "new"]

    resume = ["train", "--quiet", "--device", "cpu", "--resume", str(runs[1].path)]
    assert sweep_plan.train_args(runs[1], "cpu") == resume
    for run, seed in ((runs[3], 3), (runs[4], 5)):  # a new run gets its whole config, typed, as JSON
        args = build_parser().parse_args(sweep_plan.train_args(run, "cuda", data_dir="/d"))
        assert args.out == str(run.path) and (args.device, args.data_dir) == ("cuda", "/d")
        expected = run_config(run.preset, run.overrides, seed).to_dict()
        assert json.loads(args.config_json) == {k: v for k, v in expected.items() if k not in ("device", "data_dir")}
    cfg = train_config(build_parser().parse_args(sweep_plan.train_args(runs[4], "cpu")))  # what the child trains
    expected = run_config(runs[4].preset, runs[4].overrides, 5)
    expected.device = "cpu"
    assert cfg == expected and (cfg.preset, cfg.seed, cfg.milestones) == (SWAPOUT, 5, [2, 4])


def test_an_experiment_may_come_back_with_other_seeds_later_in_the_order(tmp_path):
    # a campaign's seed 0 of every experiment before any seed 1: one name, two entries, one directory per seed
    definition = sweep_plan.make_definition(
        [{"preset": RESNET, "name": "r", "seeds": [0]}, {"preset": SWAPOUT, "name": "s", "seeds": [0]},
         {"preset": RESNET, "name": "r", "seeds": [1]}], overrides={"epochs": 3})
    runs = sweep_plan.plan(definition, tmp_path)
    assert [r.label for r in runs] == ["r/seed-0", "s/seed-0", "r/seed-1"]
    assert runs[0].overrides == runs[2].overrides == {"epochs": 3}


def test_definition_is_recorded_and_a_different_one_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    first = sweep_plan.make_definition([{"preset": RESNET, "seeds": [0, 1], "overrides": {"epochs": 2}}])
    assert sweep_plan.open_sweep(out, first) == first
    assert json.loads((out / "sweep.json").read_text()) == first
    assert sweep_plan.open_sweep(out) == first and sweep_plan.open_sweep(out, first) == first
    assert sweep_plan.read_sweep_file(out / "sweep.json") == first  # the record is itself a sweep file

    given = ["sweep", "--presets", RESNET, "--seeds", "0,1,2", "--epochs", "2", "--out", str(out)]
    code, err = _run_main(given, capsys)
    assert code == 2 and "\n" not in err and "holds a different sweep" in err, err
    assert "recorded: short-cpu-20-w1-resnet seeds 0,1 epochs=2; given: short-cpu-20-w1-resnet seeds 0,1,2 " in err
    code, err = _run_main(["sweep", "--presets", RESNET, "--seeds", "0,1", "--out", str(out)], capsys)
    assert code == 2 and "holds a different sweep" in err  # the overrides differ
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json"]  # nothing was started

    empty = tmp_path / "empty"
    code, err = _run_main(["sweep", "--out", str(empty)], capsys)
    assert code == 2 and "holds no sweep.json" in err and "\n" not in err
    for args, message in [(["--seed", "3"], "--seeds"), (["--per-gpu", "0"], "--per-gpu must be at least 1"),
                          (["--device", "cuda:1"], "--device must be one of auto, cpu, cuda"),
                          (["--file", str(empty / "none.json")], "give --presets .* or --file, not both")]:
        code, err = _run_main(["sweep", "--presets", RESNET, "--out", str(empty), *args], capsys)
        assert code == 2 and "\n" not in err and re.search(message, err), err
    assert not empty.exists()


def test_children_per_gpu_and_on_the_cpu(monkeypatch):
    monkeypatch.setattr(sweep, "_gpu_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert sweep.slots(2) == ["3", "3", "5", "5"]
    assert sweep.slots(3, gpus=[1]) == ["5", "5", "5"]
    assert sweep.slots(2, device="cpu") == [None, None]
    with pytest.raises(ValueError, match="--gpus must list"):
        sweep.slots(1, gpus=[2])
    monkeypatch.setattr(sweep, "_gpu_count", lambda: 0)
    assert sweep.slots(3) == [None, None, None]
    with pytest.raises(ValueError, match="no GPU"):
        sweep.slots(1, device="cuda")
    with pytest.raises(ValueError, match="no GPU"):
        sweep.slots(1, gpus=[0])


def _fake_run(path, preset, seed, det, sto=None, **overrides):
    cfg = TrainConfig.from_dict({**load_preset(preset), **overrides, "seed": seed}).to_dict()
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"config": cfg}))
    test = {"note": "test", "images": 100, "deterministic_error": det}
    if sto is not None:
        test.update(stochastic_error=sto, samples=30)
    (path / "results.json").write_text(json.dumps({"splits": {"test": test}}))
    return str(path)


def test_seed_table_mean_and_sample_sd_beside_the_paper(tmp_path):
    paths = [_fake_run(tmp_path / "a0", "table1/swapout-v2-w1", 0, 10.0, 9.0, epochs=2),
             _fake_run(tmp_path / "b0", "table1/swapout-v2-w1", 0, 20.0, 18.0),  # other overrides: other group
             _fake_run(tmp_path / "a1", "table1/swapout-v2-w1", 1, 12.0, 10.0, epochs=2, device="cuda")]
    rows = seed_table(paths).splitlines()[2:]
    assert rows == [
        "| table1/swapout-v2-w1 | epochs=2 | 2 (0, 1) | test | 11.00 ± 1.41 | 9.50 ± 0.71 (30 passes) "
        "| reported 7.97 | stoch +1.53 |",
        "| table1/swapout-v2-w1 | - | 1 (0) | test | 20.00 ± - | 18.00 ± - (30 passes) "
        "| reported 7.97 | stoch +10.03 |"]
    det_only = seed_table([_fake_run(tmp_path / "r", "table2/theta-0.5-0.5", 4, 11.0)]).splitlines()[2]
    assert det_only.endswith("| 11.00 ± - | - | deterministic 10.36, stochastic 6.69 | det +0.64 |"), det_only


# Stands in for "swapout train" (same arguments, no training; a resumed run's seed from its config.json): by seed,
# it fails (0), finishes (1), ignores SIGTERM (2), or asks the sweep to stop with a SIGINT and then stops on
# SIGTERM with a checkpoint (3).
FAKE_TRAIN = r"""
import json, os, pathlib, signal, sys, time
args = sys.argv[1:]
if "--resume" in args:
    out = pathlib.Path(args[args.index("--resume") + 1])
    seed = str(json.loads((out / "config.json").read_text())["config"]["seed"])
else:
    out = pathlib.Path(args[args.index("--out") + 1])
    seed = str(json.loads(args[args.index("--config-json") + 1])["seed"])
if seed == "0":
    sys.exit(print("loading the data\nthe disk is on fire") or 3)
(out / "config.json").write_text("{}")
if seed == "1":
    sys.exit((out / "results.json").write_text("{}") and 0)
if seed == "3":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit((out / "checkpoint.pt").write_text("") and 0))
    os.kill(os.getppid(), signal.SIGINT)
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(60)
"""


def _fake_sweep(tmp_path, monkeypatch, seeds, **options):
    monkeypatch.setattr(sweep, "_CHILD", FAKE_TRAIN)
    lines = []
    definition = sweep_plan.make_definition([{"preset": RESNET, "seeds": seeds}])
    code = sweep.run_sweep(tmp_path / "s", definition, device="cpu", out=lines.append, **options)
    return code, "\n".join(lines)


def test_a_failing_run_is_reported_with_its_log_and_the_others_go_on(tmp_path, monkeypatch):
    code, text = _fake_sweep(tmp_path, monkeypatch, [0, 1])  # one at a time: the failure comes first
    assert code == 1, text
    assert "[failed] short-cpu-20-w1-resnet/seed-0: exit status 3" in text and "    the disk is on fire" in text
    assert "[done] short-cpu-20-w1-resnet/seed-1" in text
    assert "1 of 2 runs done, 0 stopped, 1 failed, 0 not started" in text
    assert f"Continue with: swapout sweep --out {tmp_path / 's'} --per-gpu 1 --device cpu" in text


def test_a_child_that_does_not_stop_is_killed_after_the_grace(tmp_path, monkeypatch):
    start = time.time()
    code, text = _fake_sweep(tmp_path, monkeypatch, [2, 1], budget_minutes=0.01, stop_grace_s=1.0)
    assert code == 0 and time.time() - start < 30, text
    assert "budget of 0.01 min used: stopping 1 running run(s)" in text
    assert "[stopped] short-cpu-20-w1-resnet/seed-2" in text and "killed" in text
    assert "0 of 2 runs done, 1 stopped, 0 failed, 1 not started" in text


def test_ctrl_c_stops_the_children_with_a_checkpoint(tmp_path, monkeypatch):
    code, text = _fake_sweep(tmp_path, monkeypatch, [3, 1])
    assert code == 0, text
    assert "SIGINT received: stopping 1 running run(s)" in text and "checkpoint written" in text
    assert (tmp_path / "s" / "short-cpu-20-w1-resnet" / "seed-3" / "checkpoint.pt").exists()
    assert "0 of 2 runs done, 1 stopped, 0 failed, 1 not started" in text
    assert sweep_plan.plan(sweep_plan.open_sweep(tmp_path / "s"), tmp_path / "s")[0].state == "resume"


@needs_data
def test_budget_interrupts_then_the_same_command_finishes_and_reports(tmp_path, capsys, swapout_here):
    out = tmp_path / "sweep"
    first = swapout_here("sweep", "--presets", f"{RESNET},{SWAPOUT}", "--seeds", "0,1", "--out", str(out), "--per-gpu",
                         "2", "--budget-minutes", "0.01", "--device", "cpu", "--keep-finished", "weights", *TINY)
    assert first.returncode == 0, first.stdout + first.stderr
    again = f"swapout sweep --out {out} --per-gpu 2 --device cpu --keep-finished weights"
    assert f"Continue with: {again}\n" in first.stdout
    assert "0 of 4 runs done, 2 stopped, 0 failed, 2 not started" in first.stdout, first.stdout
    interrupted = [out / "short-cpu-20-w1-resnet" / f"seed-{s}" for s in (0, 1)]
    stopped_at = {}
    for run in interrupted:  # stopped mid-run: a checkpoint before the last step, no results
        assert not (run / "results.json").exists()
        stopped_at[run] = read_checkpoint(run / "checkpoint.pt")["state"]["global_step"]
        assert 1 <= stopped_at[run] < 12
    assert not (out / "short-cpu-20-w1-swapout").exists()  # no run starts after the budget
    configs = {run: (run / "config.json").read_bytes() for run in interrupted}

    second = swapout_here(*shlex.split(again)[1:])
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("(resumed)") == 2 and second.stdout.count("[done]") == 4
    results = {}
    for name in ("short-cpu-20-w1-resnet", "short-cpu-20-w1-swapout"):
        for seed in (0, 1):
            run = out / name / f"seed-{seed}"
            results[name, seed] = json.loads((run / "results.json").read_text())
            assert results[name, seed]["steps"] == 12
            # finished: the final weights alone, without the optimiser, in place of the checkpoints
            assert sorted(p.name for p in run.glob("*.pt")) == ["weights.pt"]
            kept = read_checkpoint(run / "weights.pt")
            assert "optimizer" not in kept and kept["state"]["global_step"] == 12 and kept["config"]["seed"] == seed
    for run in interrupted:  # continued from the checkpoint, not started again
        assert (run / "config.json").read_bytes() == configs[run]
        assert re.search(rf"resuming .*step {stopped_at[run]}\b", (run / "train.log").read_text())

    table = second.stdout.split("Mean ± standard deviation over seeds:\n\n")[1].strip()
    rows = {(cells[1], cells[4]): cells for cells in
            ([c.strip() for c in line.split("|")] for line in table.splitlines()[2:])}
    for name, preset in (("short-cpu-20-w1-resnet", RESNET), ("short-cpu-20-w1-swapout", SWAPOUT)):
        cells = rows[preset, "test"]
        det = [results[name, s]["splits"]["test"]["deterministic_error"] for s in (0, 1)]
        assert cells[3] == "2 (0, 1)" and "epochs=2" in cells[2] and "max_steps=12" in cells[2]
        assert cells[5] == f"{statistics.mean(det):.2f} ± {statistics.stdev(det):.2f}"
        if preset == SWAPOUT:
            sto = [results[name, s]["splits"]["test"]["stochastic_error"] for s in (0, 1)]
            assert cells[6] == f"{statistics.mean(sto):.2f} ± {statistics.stdev(sto):.2f} (2 passes)"
        else:
            assert cells[6] == "-"  # a plain ResNet has no masks to sample
    assert main(["report", "--by-seed", *map(str, sorted(out.glob("*/seed-*")))]) == 0
    assert capsys.readouterr().out.strip() == table

    lines = []  # all done: nothing starts, and the report comes again
    assert sweep.run_sweep(out, per_gpu=2, device="cpu", out=lines.append) == 0
    assert not any("[start]" in line for line in lines) and table in "\n".join(lines)


def test_the_opening_line_counts_the_runs_to_resume_not_the_packs(tmp_path):
    runs = [sweep_plan.Run("r", RESNET, seed, {}, tmp_path / "r" / f"seed-{seed}") for seed in (0, 1)]
    work = [sweep_plan.Pack(runs, tmp_path / "packs" / "pack-1")]
    (pack,) = work
    pack.path.mkdir(parents=True)
    (pack.path / "checkpoint.pt").write_text("{}")  # stopped by a budget: the pack and its runs checkpointed
    for run in pack.runs:
        run.path.mkdir(parents=True)
        for name in ("config.json", "checkpoint.pt"):
            (run.path / name).write_text("{}")
    line = sweep._opening(tmp_path, work, 1, [None], 2, None)
    assert "2 runs (1 pack), 0 done, 2 to resume;" in line, line


def test_a_niced_sweeps_children_stay_niced_in_their_own_sessions():
    # each child is a session of its own (so that Ctrl-C reaches the sweep alone); under Linux's autogroup
    # scheduling a session is a group that shares the CPU equally with the others whatever its processes'
    # niceness, so the sweep gives the group its own niceness
    if not Path("/proc/self/autogroup").exists():
        pytest.skip("no autogroup scheduling here: a process's niceness is what counts")
    code = ("import os, subprocess, sys; os.nice(19); from swapout.training.sweep_children import keep_priority; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(5)'], start_new_session=True); "
            "keep_priority(p.pid); print(open(f'/proc/{p.pid}/autogroup').read()); p.kill()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split()[-1] == "19", out.stdout + out.stderr


def test_a_childs_output_follows_its_log_when_the_file_is_replaced(tmp_path):
    # restoring a run directory from version control while it trains replaces train.log under the same name;
    # the child's lines must go on into the file that the name holds, not into the one that was removed
    log, go_on = tmp_path / "train.log", tmp_path / "go-on"
    code = ("import os, sys, time; from swapout.training.sweep_children import follow_log\n"
            f"follow_log({str(log)!r}, 0.05)\n"
            f"print('before', flush=True)\n"
            f"while not os.path.exists({str(go_on)!r}): time.sleep(0.02)\n"
            # until the follower has moved stdout to the restored file (a deadline, not a guess at the machine's load)
            f"deadline = time.time() + 30\n"
            f"while os.fstat(1).st_ino != os.stat({str(log)!r}).st_ino and time.time() < deadline: time.sleep(0.02)\n"
            "print('after', flush=True); print('on stderr', file=sys.stderr, flush=True)\n"
            "sys.stdout.write('at exit, unflushed')\n")
    with open(log, "w") as fh:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while "before" not in log.read_text() and time.time() < deadline:
        time.sleep(0.05)
    replacement = tmp_path / "restored"
    replacement.write_text("restored\n")
    replacement.replace(log)
    go_on.touch()
    assert child.wait(timeout=60) == 0
    assert log.read_text() == "restored\nafter\non stderr\nat exit, unflushed"


@pytest.mark.parametrize("order, started", [
    ("definition", ["short/seed-1", "long/seed-1", "half/seed-1"]),
    ("longest-first", ["long/seed-1", "short/seed-1", "half/seed-1"]),  # 8, 2 and 1 epochs left
])
def test_longest_first_starts_the_runs_with_the_most_epochs_left(tmp_path, monkeypatch, order, started):
    monkeypatch.setattr(sweep, "_CHILD", FAKE_TRAIN)  # seed 1: finishes at once
    monkeypatch.setattr(sweep, "_final_report", lambda paths: "")  # the fake runs have nothing to report
    definition = sweep_plan.make_definition([{"preset": RESNET, "seeds": [1], "name": name, "overrides": {"epochs": e}}
                                             for name, e in (("short", 2), ("long", 8), ("half", 8))])
    half = tmp_path / "s" / "half" / "seed-1"  # stopped in its eighth epoch: 7 complete, one under way
    half.mkdir(parents=True)
    (half / "config.json").write_text(json.dumps({"config": {"seed": 1}}))
    (half / "checkpoint.pt").write_text("")
    (half / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(7))
                                        + json.dumps({"epoch": 7, "partial": True}) + "\n")
    assert [sweep_plan.epochs_left(run) for run in sweep_plan.units(definition, tmp_path / "s")] == [2, 8, 1]
    lines = []
    assert sweep.run_sweep(tmp_path / "s", definition, device="cpu", order=order, out=lines.append) == 0
    assert [line.split()[1] for line in lines if line.startswith("[start]")] == started
    assert ("the runs with the most epochs left first" in lines[0]) == (order == "longest-first")
    assert [sweep_plan.epochs_left(run) for run in sweep_plan.units(definition, tmp_path / "s")] == [0, 0, 0]


def test_epochs_left_counts_only_the_epochs_max_steps_lets_a_run_train(tmp_path):
    caps = (("capped", {"epochs": 8, "max_steps": 700}), ("started", {"epochs": 8, "max_steps": 350}),
            ("uncapped", {"epochs": 8}))
    definition = sweep_plan.make_definition([{"preset": RESNET, "name": name, "overrides": o} for name, o in caps])
    started = tmp_path / "s" / "started" / "seed-0"  # 100 steps an epoch, one epoch done: 350 steps end in its 4th
    started.mkdir(parents=True)
    (started / "config.json").write_text(json.dumps({"config": {}, "resolved": {"steps_per_epoch": 100}}))
    (started / "checkpoint.pt").write_text("")
    (started / "metrics.jsonl").write_text(json.dumps({"epoch": 0}) + "\n")
    # not started: 45,000 images (5,000 held out) in batches of 128 are 351 steps an epoch; 700 steps end in the 2nd
    assert [sweep_plan.epochs_left(run) for run in sweep_plan.units(definition, tmp_path / "s")] == [2, 3, 8]


def test_the_continue_command_keeps_the_order():
    assert sweep.continue_command("s", 2, order="longest-first").endswith("--order longest-first")
    assert "--order" not in sweep.continue_command("s", 2)
