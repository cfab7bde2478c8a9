"""Hostile paths given to the command-line tools: nothing is lost, nothing hangs, nothing
is read without end, and each refusal is exit 2 with one line naming the problem.

- Outputs (make_levels OUT, evaluate -o, render -o, plot -o): an existing target that is not
  a regular file (a FIFO, a folder) is refused and left as it was, never replaced; a place
  nothing can be written (under a file, under /proc) is refused before any work.
- Inputs (an experiment, a level file, a suite file): a device (/dev/zero), a FIFO or a
  folder is refused at once; an experiment file over 1 MiB, or YAML whose aliases expand
  past 100,000 values, is refused without parsing it.

FIFOs are safe stand-ins for device nodes (which only root may make): a tool that replaced
or read one would fail these tests the same way. Each FIFO is released when its test ends,
so a tool that blocked on one fails the test instead of hanging the run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.progress import deadline
from tests.scripts_loader import load_script
from tests.toy_family import toy_config
from ued.host.train import train

ROOT = Path(__file__).resolve().parents[2]
PROC = Path("/proc/self").exists()


def exit_code(main, argv) -> int:
    """``main(argv)``'s code, including argparse's ``SystemExit(2)``."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.fixture()
def paths(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    return {"fifo": fifo, "folder": folder, "a_file": a_file, "dir": tmp_path}


def untouched(paths):
    assert paths["fifo"].is_fifo()
    assert (paths["folder"] / "keep.txt").read_text() == "kept"
    assert paths["a_file"].read_text() == "x"


def refused(capsys, message):
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    return err


# Targets an output must refuse: (path template, message).
BAD_OUTPUTS = [
    ("{fifo}", "is a FIFO (named pipe); only a regular file is replaced"),
    ("{folder}", "is a folder; only a regular file is replaced"),
    ("{a_file}/out", "is under {a_file}, which is not a folder"),
]
if PROC:
    BAD_OUTPUTS.append(("/proc/ued-test/out", "/proc/ued-test/out: cannot write in /proc"))


@pytest.mark.parametrize(("out", "message"), BAD_OUTPUTS)
def test_make_levels_never_replaces_what_is_not_a_regular_file(paths, capsys, out, message):
    out = out.format(**paths)
    argv = ["maze", "random_walls", "2", out, "--env", "max_size=5", "--gen", "num_walls=2"]
    with deadline(60, [paths["fifo"]]):
        assert exit_code(load_script("make_levels").main, argv) == 2
    refused(capsys, message.format(**paths))
    untouched(paths)


def test_make_levels_writes_a_file_and_through_a_link(paths):
    target, link = paths["dir"] / "held_out.txt", paths["dir"] / "link.txt"
    target.write_text("old")
    link.symlink_to(target)
    argv = ["maze", "random_walls", "2", str(link), "--env", "max_size=5", "--gen", "num_walls=2"]
    assert load_script("make_levels").main(argv) == 0
    assert link.is_symlink() and target.read_text().count("; name:") == 2
    assert not list(paths["dir"].glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize(("out", "message"), BAD_OUTPUTS)
def test_evaluate_checks_its_output_before_loading_anything(paths, capsys, out, message):
    argv = [str(paths["dir"] / "no_run"), "-o", out.format(**paths)]
    with deadline(60, [paths["fifo"]]):
        assert exit_code(load_script("evaluate").main, argv) == 2
    refused(capsys, message.format(**paths))
    untouched(paths)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--episodes", str(10**12)], "--episodes must be in [1, 10000]"),
        (["--max-steps", str(10**12)], "--max-steps must be in [1, 100000]"),
        (["--seed", str(10**23)], "--seed must be in [0, 2147483647]"),
        (["--seed", "-1"], "--seed must be in [0, 2147483647]"),
        (["--batch-envs", str(10**9)], "--batch-envs must be in [1, 65536]"),
        (["--episodes", "1e12"], "invalid int value: '1e12'"),
    ],
)
def test_evaluate_bounds_its_numbers(paths, capsys, argv, message):
    assert exit_code(load_script("evaluate").main, [str(paths["dir"]), *argv]) == 2
    refused(capsys, message)


def test_evaluate_help_answers_before_importing_jax():
    code = (
        "import sys, runpy; sys.argv = ['evaluate.py', '--help']\n"
        "try:\n    runpy.run_path(sys.argv[0] if False else 'scripts/evaluate.py', "
        "run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('JAX', 'jax' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert "usage: evaluate.py" in out.stdout and "JAX False" in out.stdout, out


def test_scripts_share_the_level_file_limit():
    from envs.core import MAX_FILE_LEVELS

    for name in ("evaluate", "make_levels"):
        assert load_script(name).MAX_FILE_LEVELS == MAX_FILE_LEVELS


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("toy") / "run"
    cfg = toy_config(
        eval={"levels": "none"},
        ppo={"epochs": 1},
        run={"total_env_steps": 32, "chunk_updates": 1, "dir": str(run_dir)},
    )
    train(cfg, verbose=False)
    return run_dir


@pytest.mark.parametrize("level_file", ["/dev/zero", "{fifo}", "{folder}"])
def test_evaluate_refuses_a_level_file_that_is_not_a_file(toy_run, paths, capsys, level_file):
    level_file = level_file.format(**paths)
    if not Path(level_file).exists():
        pytest.skip(f"no {level_file}")
    argv = [str(toy_run), "--levels", level_file, "--no-named", "-o", str(paths["dir"] / "e.json")]
    with deadline(60, [paths["fifo"]]):
        assert exit_code(load_script("evaluate").main, argv) == 2
    kind = {"zero": "is a device", "fifo": "is a FIFO", "folder": "is a folder"}
    refused(capsys, f"{level_file} {kind[Path(level_file).name]}")
    untouched(paths)
    assert not (paths["dir"] / "e.json").exists()


@pytest.mark.parametrize(("out", "message"), BAD_OUTPUTS[:2])
def test_render_never_replaces_what_is_not_a_regular_file(paths, capsys, out, message):
    levels = paths["dir"] / "maze.txt"
    levels.write_text(">G\n")
    argv = [str(levels), "-o", out.format(**paths)]
    with deadline(60, [paths["fifo"]]):
        assert exit_code(load_script("render").main, argv) == 2
    refused(capsys, message)
    untouched(paths)


def test_render_refuses_a_device_as_level_file(paths, capsys):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with deadline(60):
        argv = ["/dev/zero", "-o", str(paths["dir"] / "x.png")]
        assert exit_code(load_script("render").main, argv) == 2
    refused(capsys, "/dev/zero is a device, not a level file")


def test_plot_never_replaces_what_is_not_a_regular_file(toy_run, paths, capsys):
    out = paths["dir"] / "plots"
    out.mkdir()
    os.mkfifo(out / "solve_rate.png")
    with deadline(120, [out / "solve_rate.png"]):
        assert load_script("plot").main([str(toy_run), "-o", str(out)]) == 2
    refused(capsys, "solve_rate.png is a FIFO")
    assert (out / "solve_rate.png").is_fifo() and not (out / "mean_return.png").exists()
    assert load_script("plot").main([str(toy_run), "-o", str(paths["a_file"])]) == 2
    refused(capsys, "is not a folder; name a folder")
    untouched(paths)


@pytest.mark.parametrize(
    "row",
    ['[1, 2]', '"text"', '{"env_steps": "abc", "mean_return": 1}', '{"env_steps": 1, "seed": [1]}',
     '{"env_steps": 1, "mean_return": {"a": 1}}', '{"env_steps": 1, "mean_return": "x"}'],
)  # fmt: skip
def test_plot_on_broken_metric_rows_is_a_message_or_a_plot(tmp_path, capsys, row):
    (tmp_path / "config.yaml").write_text("run: {seed: 1}\n")
    (tmp_path / "metrics.jsonl").write_text('{"env_steps": 0, "mean_return": 0.1}\n' + row + "\n")
    code = load_script("plot").main([str(tmp_path), "-o", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert "metrics.jsonl: line 2 is not a JSON object" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a: [1, 2\n", "line 2, column 1: invalid YAML"),
        (bytes(range(256)) * 4, "is not a text file (not UTF-8)"),
        ("{fifo}", "is a FIFO (named pipe), not a suite file"),
        ("{folder}", "is a folder, not a suite file"),
        ("/dev/zero", "/dev/zero is a device, not a suite file"),
    ],
    ids=["yaml_error", "binary", "fifo", "folder", "device"],
)
def test_suite_refuses_a_bad_suite_file_in_one_line(paths, capsys, content, message):
    if isinstance(content, str) and content.startswith(("{", "/")):
        path = content.format(**paths)
    else:
        path = paths["dir"] / "suite.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with deadline(60, [paths["fifo"]]):
        assert load_script("suite").main([str(path), "--dry-run"]) == 2
    err = refused(capsys, message)
    assert len(err.strip().splitlines()) == 1


def test_suite_refuses_an_output_folder_that_is_a_file(paths, capsys):
    suite = ROOT / "experiments" / "suites" / "cartpole_small.yaml"
    out = str(paths["a_file"])
    assert load_script("suite").main([str(suite), "--out", out, "--dry-run"]) == 2
    refused(capsys, "--out=")
    untouched(paths)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--timeout", "nan"], "--timeout must be a number of seconds > 0, got nan"),
        (["--timeout", "inf"], "--timeout must be a number of seconds > 0, got inf"),
        (["--curricula", "dr", "--output", "{folder}"], "--output {folder}: Is a directory"),
        (["--curricula", "dr", "--output", "{fifo}"], "--output {fifo}: a FIFO nobody reads"),
        (["--curricula", "dr", "--output", "{a_file}/x"], "--output {a_file}/x: Not a directory"),
    ],
)
def test_benchmark_refuses_before_measuring(paths, capsys, argv, message):
    argv = [a.format(**paths) for a in argv] + ["--env-envs", "none"]
    with deadline(120, [paths["fifo"]]):
        assert exit_code(load_script("benchmark").main, argv) == 2
    refused(capsys, message.format(**paths))
    untouched(paths)


@pytest.mark.parametrize(
    "config",
    ["run: 5\n", "env: [1, 2]\n", "run: {seed: [1]}\n", "~\n", "run: {seed: {a: 1}}\n",
     "a: " + "[" * 5000 + "]" * 5000 + "\n", b"\xff\xfe\x00binary", "fifo", "folder"],
    ids=["run_5", "env_list", "seed_list", "null", "seed_map", "deep", "binary", "fifo", "folder"],
)  # fmt: skip
def test_plot_on_a_broken_config_beside_a_good_run_is_a_message_or_a_plot(tmp_path, capsys,
                                                                          config):  # fmt: skip
    runs = []
    for name, text in (("good", "run: {seed: 1}\n"), ("broken", config)):
        run = tmp_path / name
        run.mkdir()
        path = run / "config.yaml"
        if text == "fifo":
            os.mkfifo(path)
        elif text == "folder":
            path.mkdir()
        else:
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
        (run / "metrics.jsonl").write_text('{"env_steps": 1, "mean_return": 0.5}\n')
        runs.append(str(run))
    fifos = [tmp_path / "broken" / "config.yaml"] if config == "fifo" else []
    with deadline(120, fifos):
        code = load_script("plot").main([*runs, "-o", str(tmp_path / "plots")])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert "config.yaml" in err and len(err.strip().splitlines()) == 1, err


def test_make_levels_bounds_its_seed(paths, capsys):
    argv = ["maze", "random_walls", "2", str(paths["dir"] / "x.txt"), "--seed", str(10**23)]
    assert exit_code(load_script("make_levels").main, argv) == 2
    refused(capsys, "--seed must be in [0, 2147483647]")
    assert not (paths["dir"] / "x.txt").exists()


def test_suite_refuses_a_results_folder_that_is_a_file_before_training(paths, capsys):
    suite = ROOT / "experiments" / "suites" / "cartpole_small.yaml"
    argv = [str(suite), "--out", str(paths["dir"] / "runs"), "--results", str(paths["a_file"])]
    assert load_script("suite").main(argv) == 2
    refused(capsys, f"--results={paths['a_file']} is a file")
    assert not (paths["dir"] / "runs").exists()
    untouched(paths)


def test_suite_reports_and_readme_tables_never_replace_a_fifo(paths, capsys):
    from ued.files.safe_io import FileRefused
    from ued.suite.report import write_report

    results_dir = paths["dir"] / "results"
    results_dir.mkdir()
    os.mkfifo(results_dir / "table.md")
    results = ROOT / "docs" / "results" / "maze_cpu_smoke" / "results.json"
    with deadline(60, [results_dir / "table.md"]), pytest.raises(FileRefused, match="FIFO"):
        write_report(json.loads(results.read_text()), results_dir)
    assert (results_dir / "table.md").is_fifo()
    argv = [str(results), "--readme", str(paths["fifo"])]
    with deadline(60, [paths["fifo"]]):
        assert exit_code(load_script("results_table").main, argv) == 2
    refused(capsys, "FIFO")
    untouched(paths)
