"""What the command line refuses, warns about or says before any work: one line on standard error and exit
status 2 for a wrong request, never a traceback; help texts that agree with what the commands accept."""

import argparse
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest
import torch

import swapout.runs.config
import swapout.runs.report
import swapout.training.train
from swapout.cli.checks import eval_options, sweep_setup, train_config
from swapout.cli.main import build_parser, main
from swapout.cli.tune import tune_checks
from swapout.runs.config import TrainConfig
from swapout.runs.distributed import Process
from swapout.runs.evaluate import check_options
from swapout.runs.report import report_table, seed_table
from swapout.training import sweep

SWAPOUT = "short/cpu-20-w1-swapout"


def _refused(args, capsys, message):
    """``swapout ARGS`` exits 2 with one line on standard error that matches ``message``."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    return err


@pytest.fixture
def trained(monkeypatch):
    """Stands in for training: records the config and where it would train, and trains nothing."""
    calls = []

    def record(cfg, out, resume=False, progress=True):
        calls.append((cfg, out, resume))
        return {"stopped": "SIGTERM"}

    monkeypatch.setattr(swapout.training.train, "train", record)
    return calls


@pytest.mark.parametrize("overrides", [[1, 2], "epochs=1"])
def test_sweep_file_with_overrides_that_are_not_a_mapping(tmp_path, capsys, overrides):
    (tmp_path / "s.json").write_text(json.dumps({"runs": [{"preset": SWAPOUT, "overrides": overrides}]}))
    _refused(["sweep", "--file", str(tmp_path / "s.json"), "--out", str(tmp_path / "out")], capsys,
             r"run 1 \(short/cpu-20-w1-swapout\): overrides must be a mapping \{\"field\": value\}")


@pytest.mark.parametrize("text,message", [("runs: []", r"s\.json: not JSON \(.*\); a sweep file holds"),
                                          ("[]", r"s\.json: a sweep file holds")])
def test_sweep_file_that_is_not_a_json_object(tmp_path, capsys, text, message):
    (tmp_path / "s.json").write_text(text)
    _refused(["sweep", "--file", str(tmp_path / "s.json"), "--out", str(tmp_path / "out")], capsys, message)


@pytest.mark.parametrize("where,message", [("file", "is a file: it must name a sweep's directory"),
                                           ("file/sweep", "cannot write the sweep directory .*: Not a directory"),
                                           ("/proc/sweep", "cannot write the sweep directory /proc/sweep")])
def test_sweep_out_that_cannot_be_a_directory(tmp_path, capsys, where, message):
    if where.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc file system here")
    (tmp_path / "file").write_text("")
    out = where if where.startswith("/") else str(tmp_path / where)
    _refused(["sweep", "--presets", SWAPOUT, "--device", "cpu", "--out", out], capsys, message)


def test_train_data_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    _refused(["train", "--data-dir", str(tmp_path / "file"), "--depth", "8", "--device", "cpu", "--out",
              str(tmp_path / "run")], capsys, "cannot be made a data folder .*point --data-dir")
    assert not (tmp_path / "run").exists()


def test_a_method_given_drops_the_thetas_of_the_preset_and_none_clears_one(capsys, trained):
    for args in (["--preset", "short/quickstart", "--method", "resnet"], ["--preset", SWAPOUT, "--method", "resnet"],
                 ["--preset", "short/quickstart", "--method", "resnet", "--theta1", "None", "--theta2", "none"]):
        assert main(["train", *args, "--quiet"]) == 0, capsys.readouterr().err
        cfg = trained[-1][0]
        assert (cfg.method, cfg.theta1, cfg.theta2, cfg.preset) == ("resnet", None, None, args[1])
    assert main(["train", "--preset", SWAPOUT, "--method", "dropout", "--quiet"]) == 0  # dropout reads theta2 only
    assert (trained[-1][0].theta1, trained[-1][0].theta2) == (None, "linear(1,0.5)")
    assert main(["train", "--preset", "short/quickstart", "--theta1", "None", "--quiet"]) == 0
    assert trained[-1][0].theta1 is None and trained[-1][0].join().theta1.values(3) == [1.0, 0.75, 0.5]
    # a theta the method cannot take: the message says where each of them came from
    _refused(["train", "--preset", "short/cpu-20-w1-resnet", "--theta1", "0.5"], capsys,
             "method 'resnet' takes no theta; .* \\(theta1 from the command line; method from preset "
             "short/cpu-20-w1-resnet\\)")
    # and a sweep's runs are planned the same way
    args = build_parser().parse_args(["sweep", "--out", "s", "--presets", "short/quickstart", "--method", "resnet"])
    assert sweep_setup(args)[0]["runs"][0]["overrides"] == {"method": "resnet"}


@pytest.mark.parametrize("args,message", [
    (["--milestones", "5,1"], r"milestones must be increasing epochs >= 1 \(e.g. 196,224\), got \[5, 1\]"),
    (["--milestones", "3,3"], "milestones must be increasing"),
    (["--sync-bn", "true", "--device", "cpu"], "--sync-bn true: BatchNorm statistics are synchronised between "
                                               "GPUs only, and this run is on the CPU")])
def test_settings_that_would_be_ignored_or_misread_are_refused_before_training(capsys, trained, args, message):
    _refused(["train", *args], capsys, message)
    assert not trained


def test_milestones_at_or_past_the_last_epoch_are_warned_of_and_the_run_goes_on(capsys, trained):
    assert main(["train", "--epochs", "4", "--milestones", "2,4,9", "--quiet"]) == 0
    assert trained[-1][0].milestones == [2, 4, 9]
    assert capsys.readouterr().err == ("swapout train: warning: milestones 4,9 are not before the last epoch (4): "
                                       "the learning rate never drops there\n")
    assert main(["train", "--epochs", "4", "--milestones", "1,3", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_eval_refuses_more_repeats_than_it_can_draw_before_loading_anything(tmp_path, capsys):
    # the target does not exist: the bound is checked before it is looked for
    code = main(["eval", str(tmp_path / "nothing"), "--repeats", "1001"])
    err = capsys.readouterr().err
    assert code == 2 and "--repeats must be at most 1,000" in err and "got 1,001" in err and "nothing" not in err
    args = dict(samples=30, limit=None, recalibrate_bn=0, delta=0.05, shift=False, corruptions=None, severities=None,
                seed=0)
    assert check_options(repeats=1000, **args) == (None, None)


def test_a_sweep_on_the_cpu_refuses_sync_bn(tmp_path, capsys):
    _refused(["sweep", "--presets", SWAPOUT, "--sync-bn", "true", "--device", "cpu", "--out", str(tmp_path / "s")],
             capsys, "sync_bn true: BatchNorm statistics are synchronised between GPUs only, and this sweep's runs")
    assert not (tmp_path / "s").exists()


def _finished_run(path, **results):
    cfg = TrainConfig(depth=8, epochs=4, max_steps=results.pop("max_steps", None))
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
    (path / "results.json").write_text(json.dumps({"epochs": 4, "splits": {}, **results}))
    return str(path)


def test_resuming_a_finished_run_reports_it_done_and_evaluates_only_when_asked(tmp_path, capsys, trained):
    run = _finished_run(tmp_path / "done", epochs_completed=4.0, steps=124)
    assert main(["train", "--resume", run]) == 0
    out, err = capsys.readouterr()
    assert err == f"swapout train: {run} is finished (all 4 epochs are done): nothing is left to train, and its " \
                  f"results stay as they are (give --re-evaluate to evaluate it again)\n"
    assert not trained and "| run | preset |" in out  # its results, as they are: nothing is evaluated again
    assert main(["train", "--resume", run, "--re-evaluate"]) == 0
    assert "evaluating it again (--re-evaluate)" in capsys.readouterr().err and trained[-1][2] is True
    short = _finished_run(tmp_path / "short", epochs_completed=0.1, steps=3, max_steps=3)
    assert main(["train", "--resume", short]) == 0
    assert "it stopped at --max-steps 3 (give a larger --max-steps to train further)" in capsys.readouterr().err
    assert len(trained) == 1
    assert main(["train", "--resume", short, "--max-steps", "9"]) == 0  # it goes on: nothing to say
    assert capsys.readouterr().err == "" and len(trained) == 2
    _refused(["train", "--preset", SWAPOUT, "--re-evaluate"], capsys, "--re-evaluate goes with --resume")


def test_resume_of_a_run_with_no_checkpoint_refuses_what_it_cannot_train_again(tmp_path, capsys, trained):
    run = tmp_path / "killed"
    run.mkdir()
    config = {"config": TrainConfig(depth=8, epochs=4).to_dict(), "resolved": {}}
    (run / "config.json").write_text(json.dumps(config))
    _refused(["train", "--resume", str(run), "--re-evaluate"], capsys,
             f"--re-evaluate: {re.escape(str(run))} stopped before its first checkpoint, so it has nothing to "
             f"evaluate; resume it without --re-evaluate to train it again from the start")
    assert main(["train", "--resume", str(run)]) == 0 and trained[-1][2] is True  # the loop starts it over
    config["resolved"]["pack"] = {"dir": str(tmp_path / "pack"), "runs": 2, "index": 0}
    (run / "config.json").write_text(json.dumps(config))
    _refused(["train", "--resume", str(run)], capsys, f"this run trains in the pack {re.escape(str(tmp_path))}/pack, "
             f"which holds its checkpoint: go on with swapout train --pack-dir")
    assert len(trained) == 1


def test_a_pack_whose_runs_are_all_finished_is_reported_and_evaluated_only_when_asked(tmp_path, capsys, monkeypatch):
    from swapout.training.train import write_pack

    calls = []
    monkeypatch.setattr(swapout.training.train, "train_pack", lambda *a, **k: calls.append(a) or [{}])
    runs = [_finished_run(tmp_path / f"run-{i}", epochs_completed=4.0, steps=124) for i in (0, 1)]
    write_pack(tmp_path / "pack", [TrainConfig(depth=8, epochs=4)] * 2, runs)
    assert main(["train", "--pack-dir", str(tmp_path / "pack")]) == 0
    out, err = capsys.readouterr()
    assert err == f"swapout train: every run of the pack {tmp_path / 'pack'} is finished: nothing is left to train, " \
                  f"and their results stay as they are (give --re-evaluate to evaluate them again)\n"
    assert not calls and "| run | preset |" in out
    assert main(["train", "--pack-dir", str(tmp_path / "pack"), "--re-evaluate"]) == 0 and len(calls) == 1


def _fake_run(path, seed, det, samples=1, note="10,000 test images", **fields):
    cfg = TrainConfig(**{"depth": 8, **fields, "seed": seed}).to_dict()
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"config": cfg}))
    test = {"note": note, "images": 100, "deterministic_error": det, "stochastic_error": det - 1,
            "samples": samples}
    (path / "results.json").write_text(json.dumps({"epochs_completed": 1, "splits": {"test": test}}))
    return str(path)


def test_report_by_seed_refuses_two_runs_with_the_same_seed_and_counts_in_words(tmp_path, capsys):
    a, b, c = (_fake_run(tmp_path / name, seed, det) for name, seed, det in (("a", 0, 10.0), ("b", 0, 10.0),
                                                                             ("c", 1, 12.0)))
    _refused(["report", "--by-seed", a, c, b], capsys,
             re.escape(f"{a} and {b} are the same experiment with the same seed 0: --by-seed needs runs that differ "
                       f"in their seed"))
    assert "(1 pass)" in seed_table([a, c]) and "(1 pass)" in report_table([a])
    assert "passes" not in seed_table([a, c]) + report_table([a])


def test_report_sets_a_run_beside_the_paper_only_for_the_presets_network_and_lists_what_differs(tmp_path):
    preset = swapout.runs.config.load_preset("table1/swapout-v2-w2")
    as_preset = _fake_run(tmp_path / "same", 0, 10.0, note="10,000 test images, first 50 only", **preset)
    recipe = _fake_run(tmp_path / "recipe", 0, 10.0, **{**preset, "lr": 0.05, "val_split": 49000, "eval_samples": 2})
    other = _fake_run(tmp_path / "other", 0, 10.0, **{**preset, "method": "resnet", "theta1": None, "theta2": None,
                                              "dataset": "cifar100"})
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in report_table([as_preset, recipe, other])
            .splitlines()[2:]}
    assert rows["same"][6] == "reported 5.68" and rows["same"][7] == "1 of 256 epochs; 10,000 test images, first 50 " \
                                                                       "only |"
    # a recipe change keeps the paper's figure beside the run, and says what changed; the evaluation's passes
    # are in the stochastic column, not a difference of the recipe
    assert rows["recipe"][6] == "reported 5.68" and rows["recipe"][7] == "lr=0.05; val_split=49000; 1 of 256 epochs |"
    assert rows["other"][6] == "- (not the preset's network)"
    assert rows["other"][7].startswith("dataset=cifar100; method=resnet; theta1=None; theta2=None; 1 of 256")
    # the method's default thetas, written out, are the preset's network still
    spelled = _fake_run(tmp_path / "spelled", 0, 10.0, **{**preset, "theta1": "linear(1, 0.5)"})
    assert report_table([spelled]).splitlines()[2].split(" | ")[6:] == ["reported 5.68", "1 of 256 epochs |"]
    # the quick start's own milestones left out: the paper's, scaled, and said so
    scaled = _fake_run(tmp_path / "scaled", 0, 10.0, **{**swapout.runs.config.load_preset("short/quickstart"),
                                                       "milestones": None})
    assert "milestones=None (the paper's, scaled to the epochs)" in report_table([scaled])
    by_seed = seed_table([other]).splitlines()[2].split(" | ")
    assert by_seed[6] == "- (not the preset's network)" and by_seed[7] == "- |"


def test_counts_of_one_are_singular(tmp_path, monkeypatch):
    # a child that finishes at once, and no report of what it did not train
    monkeypatch.setattr(sweep, "_CHILD", "import pathlib, sys; a = sys.argv[1:]; "
                                         "pathlib.Path(a[a.index('--out') + 1], 'results.json').write_text('{}')")
    monkeypatch.setattr(swapout.runs.report, "report_table", lambda paths: "")
    monkeypatch.setattr(swapout.runs.report, "seed_table", lambda paths: "")
    lines = []
    definition = {"runs": [{"name": "one", "preset": SWAPOUT, "seeds": [0], "overrides": {}}]}
    assert sweep.run_sweep(tmp_path / "s", definition, device="cpu", out=lines.append) == 0
    assert lines[0].startswith(f"sweep {tmp_path / 's'}: 1 run, 0 done") and "1 runs" not in "\n".join(lines)
    assert f"sweep {tmp_path / 's'}: 1 of 1 run done" in "\n".join(lines)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert Process(0, 1, torch.device("cpu")).describe().endswith(", 1 thread)")
    finally:
        torch.set_num_threads(threads)


def _help(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command] if command else parser


def test_help_offers_only_what_the_commands_accept():
    sweep_help = _help("sweep").format_help()
    assert "--seed SEED" not in sweep_help and "--seeds SEEDS" in sweep_help
    assert "auto, cpu or cuda (choose GPUs with --gpus)" in " ".join(sweep_help.split())
    assert "cuda:N" not in sweep_help
    train_help = " ".join(_help("train").format_help().split())
    assert "None: unit, or batch for stochastic_depth; default: None" in train_help
    assert "default: 10" in " ".join(_help("eval").format_help().split())
    assert "markdown table" in _help("presets").format_help()


def _walk():
    """(command, option, documented default) for every option whose help says ``default: X``."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, parser in sub.choices.items():
        for action in parser._actions:
            if not action.option_strings or action.help in (None, argparse.SUPPRESS):
                continue
            # one form only, so that no documented default escapes the walk
            assert not re.search(r"\bdefault\b(?!: )", action.help), (command, action.help)
            for value in re.findall(r"default: ([^;)]+?)(?= \(|;|\)|$)", action.help):
                yield command, action.option_strings[0], value.strip("'")


def _check(command, argv, tmp_path):
    """Parse ``argv`` and run the checks the command runs before any work (nothing is trained or loaded)."""
    args = build_parser().parse_args(argv)
    if command == "train":
        train_config(args)
    elif command == "eval":
        given = eval_options(args)
        check_options(**{k: given[k] for k in inspect.signature(check_options).parameters})
    elif command == "sweep":
        sweep_setup(args)
    elif command == "tune":
        tune_checks(args)


def test_every_documented_default_is_accepted_as_it_stands(tmp_path):
    """``--theta1 None`` was refused although its help said "default: None": the walk tries every such
    value on the command line and through the checks that run before any work."""
    base = {"eval": ["eval", str(tmp_path)], "sweep": ["sweep", "--out", str(tmp_path), "--presets", SWAPOUT],
            "tune": ["tune", "--preset", SWAPOUT]}
    walked = []
    for command, option, value in _walk():
        argv = base.get(command, [command]) + [option, value]
        try:
            _check(command, argv, tmp_path)
        except (SystemExit, ValueError) as err:
            pytest.fail(f"swapout {' '.join(argv)} (its documented default) is refused: {err}")
        walked.append((command, option))
    assert ("train", "--theta1") in walked and ("sweep", "--theta2") in walked and ("eval", "--repeats") in walked
    assert ("tune", "--pruner") in walked and ("tune", "--grace") in walked
    assert len(walked) > 60


def test_eval_options_are_checked_before_anything_is_loaded(tmp_path, capsys):
    for args, message in ((["--limit", "0"], "--limit must be >= 1"), (["--severities", "1"], "go with --shift")):
        _refused(["eval", str(tmp_path / "none"), *args], capsys, message)



def test_a_config_given_as_json_trains_as_given_and_a_bad_one_is_refused(tmp_path, capsys, trained):
    cfg = TrainConfig.from_dict({**swapout.runs.config.load_preset(SWAPOUT), "preset": SWAPOUT, "seed": 4,
                                 "milestones": [3, 5], "theta1": None})
    cfg.device = "cpu"
    (tmp_path / "config.json").write_text(json.dumps({"config": cfg.to_dict(), "resolved": {}}))  # a run's file
    for text in (json.dumps(cfg.to_dict()), (tmp_path / "config.json").read_text()):
        assert main(["train", "--config-json", text, "--out", str(tmp_path / "run"), "--quiet"]) == 0
        assert trained[-1][0] == cfg
    assert main(["train", "--config-json", json.dumps(cfg.to_dict()), "--epochs", "9", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    assert trained[-1][0].epochs == 9  # an option given beside it goes over it
    _refused(["train", "--config-json", "[1, 2]"], capsys, r"--config-json: expected an object of config fields")
    _refused(["train", "--config-json", "{epochs: 3}"], capsys, r"--config-json: not JSON")
    _refused(["train", "--config-json", '{"epochs": 0}'], capsys, r"epochs")
    for other in (["--preset", SWAPOUT], ["--resume", str(tmp_path / "run")], ["--pack-dir", str(tmp_path)]):
        _refused(["train", "--config-json", "{}", *other], capsys, r"--config-json is a whole config")
    # a sweep file's numbers and the command line's text make one config: 0.5 is "0.5", 0 is 0.0
    assert TrainConfig.from_dict({"theta1": 0.5, "weight_decay": 0}) == \
        TrainConfig.from_dict({"theta1": "0.5", "weight_decay": 0.0})


@pytest.mark.parametrize("damage, message", [
    ({"config.json": "[1, 2]"}, r"no readable config\.json: .*config\.json: not a run's config: expected a JSON"),
    ({"results.json": "[1]"}, r"results\.json: not a run's results: expected a JSON object, got list"),
    ({"results.json": ""}, r"results\.json: not a run's results: not JSON"),
    ({"results.json": "{}"}, r"results\.json: not a run's results \(its splits and epochs_completed are missing\)"),
    ({"results.json": json.dumps({"epochs_completed": 1, "splits": {"test": {"images": 1}}})},
     r"results\.json, split 'test': not a split's figures"),
    ({"results.json": json.dumps({"epochs_completed": "x", "splits": {}})}, r"its splits and epochs_completed"),
    ({"eval-test.json": "[1]"}, r"eval-test\.json: not an evaluation's figures: expected a JSON object"),
    ({"eval-test.json": "{}"}, r"eval-test\.json: not a split's figures"),
])
def test_report_names_the_damaged_file_of_a_run(tmp_path, capsys, damage, message):
    run = Path(_fake_run(tmp_path / "run", 0, 10.0))
    for name, text in damage.items():
        (run / name).write_text(text)
    _refused(["report", str(run)], capsys, message)


def test_report_by_seed_names_a_config_without_its_seed(tmp_path, capsys):
    run = Path(_fake_run(tmp_path / "run", 0, 10.0))
    (run / "config.json").write_text(json.dumps({"config": {"epochs": 1}}))
    _refused(["report", "--by-seed", str(run)], capsys, r"config\.json: not a run's config \(its seed and epochs")


@pytest.mark.parametrize("storage, message", [
    ("sqlite://", "an in-memory SQLite database lives in this process alone"),
    ("sqlite:///{tmp}/missing/study.db", r"the folder .*missing of the database does not exist"),
    ("sqlite:///{tmp}/a-file/study.db", r"the folder .*a-file of the database is a file")])
def test_a_sqlite_storage_must_be_a_file_in_a_folder(tmp_path, capsys, storage, message):
    (tmp_path / "a-file").write_text("")
    _refused(["sweep", "--presets", SWAPOUT, "--out", str(tmp_path / "s"), "--storage",
              storage.format(tmp=tmp_path)], capsys, message)
    assert not (tmp_path / "s").exists()


def test_config_values_out_of_range_and_unknown_sweep_keys_are_refused_before_anything_is_written(tmp_path, capsys):
    for args, message in ((["--lr", "inf"], "lr must be a finite number >= 0, got inf"),
                          (["--momentum", "1.5"], r"momentum must be a number in \[0, 1\), got 1.5"),
                          (["--seed", str(2 ** 64)], r"seed must be below 2\*\*32")):
        _refused(["train", "--preset", SWAPOUT, "--out", str(tmp_path / "run"), *args], capsys, message)
    _refused(["train", "--config-json", str(tmp_path / "none.json"), "--out", str(tmp_path / "run")], capsys,
             "neither a JSON object nor an existing file")
    _refused(["sweep", "--presets", SWAPOUT, "--seeds", str(2 ** 64), "--out", str(tmp_path / "s")], capsys,
             r"run 1 \(short/cpu-20-w1-swapout\): seed must be below 2\*\*32")
    (tmp_path / "s.json").write_text(json.dumps({"runs": [{"preset": SWAPOUT}], "overrides": {"epochs": 1}}))
    _refused(["sweep", "--file", str(tmp_path / "s.json"), "--out", str(tmp_path / "s")], capsys,
             r"unknown: 'overrides' \(config fields for every run go in each run's \"overrides\"")
    assert not (tmp_path / "run").exists() and not (tmp_path / "s").exists()


def test_running_out_of_memory_is_one_line(capsys, monkeypatch):
    def allocate(args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 92160000000000 bytes")

    cli = importlib.import_module("swapout.cli.main")  # the module: swapout.cli.main is also its main function
    monkeypatch.setattr(cli, "_presets", allocate)
    _refused(["presets"], capsys, r"swapout presets: error: out of memory \(DefaultCPUAllocator: .*\); choose a")
    monkeypatch.setattr(cli, "_presets", lambda args: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # any other error is not dressed up as bad input
        main(["presets"])


@pytest.mark.parametrize("record", [{"runs": "x"}, {"runs": [1, 2]}, {"runs": []}, {"runs": [{"path": "a"}]}, [1]])
def test_a_damaged_pack_record_is_named(tmp_path, capsys, record):
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "pack.json").write_text(json.dumps(record))
    _refused(["train", "--pack-dir", str(tmp_path / "pack")], capsys, r"not a pack directory \(no readable pack\.json")


@pytest.mark.parametrize("option", [["--workers", "3"], ["--study", "s"], ["--grace", "100"]])
def test_options_of_a_shared_sweep_are_refused_without_its_storage(tmp_path, capsys, option):
    _refused(["sweep", "--presets", SWAPOUT, "--out", str(tmp_path / "s"), *option], capsys,
             f"{option[0]}: options of a sweep that workers share through --storage")
    assert not (tmp_path / "s").exists()


def test_a_resumed_run_goes_on_in_its_own_directory(tmp_path, capsys):
    _refused(["train", "--resume", str(tmp_path / "run"), "--out", str(tmp_path / "elsewhere")], capsys,
             r"--resume .*run goes on in that run's own directory: leave out --out")
    assert not (tmp_path / "elsewhere").exists()


def test_a_sweep_checks_its_data_folder_before_any_run_starts(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    for folder, what in (("a-file", "a file, not a folder"), ("missing", "no such folder")):
        _refused(["sweep", "--presets", SWAPOUT, "--out", str(tmp_path / "s"), "--data-dir", str(tmp_path / folder)],
                 capsys, f"--data-dir {tmp_path / folder}: {what}")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("args", [["eval", "run", "--seed", str(2 ** 32)], ["demo", "--seed", "-1"],
                                  ["tune", "--preset", SWAPOUT, "--sampler-seed", "-1"]])
def test_seeds_out_of_range_are_refused_by_their_option(capsys, args):
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    assert re.search(r"argument --(sampler-)?seed: expected an integer in \[0, 2\*\*32\)", capsys.readouterr().err)
