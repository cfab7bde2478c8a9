"""Hostile inputs to the command-line tools: each ends with a message and the documented
exit code (2 bad input, 1 a failed measurement, 4 interrupted with a checkpoint, 130
interrupted before training), never a traceback, and never loses a run's results.

Two real training processes contend for one run folder, and real SIGINTs arrive at several
moments of a run's start; the rest runs the scripts' ``main`` in this process.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.progress import deadline
from tests.scripts.test_cli import ROOT, STEPS, metric_rows, train_command
from tests.scripts_loader import load_script
from tests.toy_family import TOY_BASE, toy_config
from ued.host.checkpoint import Checkpointer
from ued.host.train import train

# Two walled maze levels: to the control family, where "#" starts a comment, only comments.
MAZE = "#####\n#>.G#\n#####\n\n#####\n#G.<#\n#####\n"
LONG = (f"run.total_env_steps={10_000 * STEPS}",)


@pytest.fixture()
def files(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("ppo:\n  lr: [1, 2\nrun: {}\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    maze = tmp_path / "maze.txt"
    maze.write_text(MAZE)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"  # valid YAML, but no person writes 2 MiB of experiment
    big.write_text("run:\n  seed: 1\n" + "# padding\n" * (2 * 2**20 // 10))
    bomb = tmp_path / "bomb.yaml"  # 9 lines that stand for 9^8 values
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    bomb.write_text("\n".join(lines) + "\nrun: {seed: *a7}\n")
    deep = tmp_path / "deep.yaml"
    deep.write_text("run: {seed: " + "[" * 20_000 + "]" * 20_000 + "}\n")
    return {"bad_yaml": bad_yaml, "binary": binary, "a_file": a_file, "maze": maze,
            "dir": tmp_path, "fifo": fifo, "big": big, "bomb": bomb, "deep": deep}  # fmt: skip


EXPERIMENT = str(ROOT / "experiments" / "maze_dr.yaml")
TRAIN_CASES = [
    (["ppo.num_envs", "8"], "the command line is [EXPERIMENT.yaml] [section.key=value"),
    (["{bad_yaml}"], "bad.yaml: line 3, column 4: invalid YAML"),
    (["{dir}"], "is a folder, not an experiment file"),
    (["{binary}"], "binary.yaml is not a text file"),
    ([EXPERIMENT, "ppo.lr=[1,"], "override 'ppo.lr=[1,': the value is not valid YAML"),
    (
        [EXPERIMENT, "network.mlp_sizes=[-4,0]"],
        "network.mlp_sizes=(-4, 0); must be a list of at most 64 integers > 0",
    ),
    (
        [EXPERIMENT, f"network.mlp_sizes=[{','.join(['8'] * 20_000)}]"],
        "network.mlp_sizes=(8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, ...); must be a list of at most 64",
    ),
    (["/dev/zero"], "/dev/zero is a device, not an experiment file"),
    (["{fifo}"], "fifo.yaml is a FIFO (named pipe), not an experiment file"),
    (["{big}"], "big.yaml: 2 MiB is over the 1 MiB limit for an experiment file"),
    (["{bomb}"], "bomb.yaml: the YAML stands for over 100000 values once its aliases"),
    (["{deep}"], "deep.yaml: the YAML is nested too deeply"),
    (
        [EXPERIMENT, f"run.seed={10**23}"],
        "run.seed=100000000000000000000000; must be an integer in [0, 2147483647]",
    ),
    ([EXPERIMENT, "run.seed=-1"], "run.seed=-1; must be an integer in [0, 2147483647]"),
    ([EXPERIMENT, "ppo.lr=" + "[" * 20_000], "override ppo.lr: the value is nested too deeply"),
    ([EXPERIMENT, "ppo.lr=-0.1"], "ppo.lr=-0.1; must be a number > 0"),
    ([EXPERIMENT, "ppo.max_grad_norm=-1"], "ppo.max_grad_norm=-1.0; must be a number > 0"),
    ([EXPERIMENT, "ppo.clip_eps=-0.2"], "ppo.clip_eps=-0.2; must be a number > 0"),
    ([EXPERIMENT, "run.checkpoint_every=-1"], "run.checkpoint_every=-1; must be an integer >= 0"),
    ([EXPERIMENT, "eval.interval=-5"], "eval.interval=-5; must be an integer >= 0"),
    ([EXPERIMENT, "ppo.lr=.nan"], "ppo.lr=nan; must be a number > 0"),
    ([EXPERIMENT, "ppo.lr=.inf"], "ppo.lr=inf; must be a number > 0"),
    ([EXPERIMENT, "run.dir={a_file}"], "a_file is a file; choose a folder"),
    ([EXPERIMENT, "run.dir={a_file}/run"], "which is a file; choose a folder"),
    ([EXPERIMENT, "env.options.max_size=1000"], "max_size must be in [2, 128], got 1000"),
    ([EXPERIMENT, "env.options.view_size=99"], "view_size must be in [1, 27], got 99"),
]


@pytest.mark.parametrize(("argv", "message"), TRAIN_CASES)
def test_train_refuses_with_a_message(files, capsys, argv, message):
    # No persistent compile cache: this process's JAX settings stay as the suite set them.
    argv = [a.format(**files) for a in argv] + ["run.compile_cache="] * (len(argv) > 1)
    start = time.monotonic()
    with deadline(120, [files["fifo"]]):
        assert load_script("train").main(argv) == 2
    assert time.monotonic() - start < 60  # refused before anything is built or read at length
    err = capsys.readouterr().err
    assert message.format(**files) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert files["a_file"].read_text() == "x" and files["fifo"].is_fifo()


def _exit_code(main, argv) -> int:
    """``main(argv)``'s code, including argparse's ``SystemExit(2)``."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize(
    ("script", "argv", "code", "message"),
    [
        ("render", ["{maze}", "-o", "{dir}/x.png", "--fps", "0"], 2, "--fps must be in (0, 100]"),
        ("render", ["{maze}", "-o", "{dir}/x.png", "--ncols", "0"], 2, "--ncols must be >= 1"),
        ("render", ["{maze}", "-o", "{dir}/x.png", "--family", "cartpole"], 2,
         "level 1 (starting on line 1): no name=value pairs, only comments: not a cartpole"),
        ("render", ["{dir}", "-o", "{dir}/x.png"], 2, "is a folder, not a level file"),
        ("render", ["{binary}", "-o", "{dir}/x.png"], 2, "not a text file"),
        ("render", ["{maze}", "-o", "{dir}/x.png", "--max-levels", "1"], 2, "more than 1 levels"),
        ("evaluate", ["{dir}", "--episodes", "0"], 2, "--episodes must be >= 1"),
        ("evaluate", ["{dir}", "--batch-envs", "-1"], 2, "--batch-envs must be >= 1"),
        ("benchmark", ["--num-envs", "abc"], 2, "--num-envs 'abc': 'abc' is not an integer"),
        ("benchmark", ["--num-envs", "0"], 2, "every entry must be >= 1"),
        ("benchmark", ["--curricula", "magic"], 2, "unknown curriculum 'magic'"),
        ("benchmark", ["--updates", "0"], 2, "--updates"),
        ("benchmark", ["--env-envs", "x"], 2, "--env-envs 'x'"),
    ],
)  # fmt: skip
def test_tools_refuse_with_a_message(files, capsys, script, argv, code, message):
    argv = [a.format(**files) for a in argv]
    assert _exit_code(load_script(script).main, argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (files["dir"] / "x.png").exists()


def test_benchmark_failed_measurement_exits_nonzero_with_its_message(tmp_path, capsys):
    argv = ["--curricula", "dr", "--env-envs", "none", "--timeout", "0.01"]
    assert load_script("benchmark").main([*argv, "--output", str(tmp_path / "b.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "error: this {'curriculum': 'dr'" in err and "timed out after 0s" in err
    records = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    (train,) = [r for r in records if r["kind"] == "train"]
    assert train["result"] == {"error": "timed out after 0s"}


@pytest.mark.parametrize(
    ("config", "metrics", "message"),
    [
        ("run: {seed: [1\n", '{"env_steps": 1}\n', "config.yaml: not a readable config"),
        ("- a list\n", '{"env_steps": 1}\n', "config.yaml: not a config"),
        ("run: {seed: 1}\n", '{"env_steps": 1}\n{"env_st', "metrics.jsonl: line 2 is not JSON"),
    ],
)
def test_plot_broken_run_files(tmp_path, capsys, config, metrics, message):
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "metrics.jsonl").write_text(metrics)
    assert load_script("plot").main([str(tmp_path), "-o", str(tmp_path / "p")]) == 2
    assert message in capsys.readouterr().err


# --- level files: bounded reading -------------------------------------------------------------


def counting_maze():
    """The maze family, counting the levels it parses."""
    import dataclasses

    from envs.core import get_family

    maze = get_family("maze")
    calls = []

    def level_from_text(env, text):
        calls.append(1)
        return maze.level_from_text(env, text)

    # Level by level (no batched fast path), so that every level parsed is counted.
    return dataclasses.replace(maze, level_from_text=level_from_text, levels_from_rows=None), calls


def test_level_file_caps_stop_before_reading_everything(tmp_path):
    from envs.core import MAX_FILE_BYTES
    from envs.maze import Maze

    counting, calls = counting_maze()
    env = Maze(max_size=5)
    path = tmp_path / "many.txt"
    path.write_text(">G\n\n" * 50)
    levels = counting.read_levels(env, path, max_levels=50)
    assert levels.wall_map.shape == (50, 5, 5) and len(calls) == 50
    calls.clear()
    with pytest.raises(ValueError, match="many.txt: more than 10 levels"):
        counting.read_levels(env, path, max_levels=10)
    assert len(calls) == 10  # stopped at the limit, not after parsing the whole file
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    calls.clear()
    with pytest.raises(ValueError, match="MiB limit for a level file"):
        counting.read_levels(env, huge)
    assert not calls


def test_a_maze_file_is_not_a_control_level(tmp_path):
    from envs.core import get_family

    family = get_family("cartpole")
    path = tmp_path / "maze.txt"
    path.write_text(MAZE)
    with pytest.raises(ValueError, match="level 1 .*not a cartpole level"):
        family.read_levels(family.make_env(), path)
    path.write_text("gravity=20\n\n# a comment\nforce_mag=5\n")  # comments still work
    levels = family.read_levels(family.make_env(), path)
    assert levels.gravity[0] == 20.0 and levels.force_mag[1] == 5.0


# --- a damaged checkpoint: one line ------------------------------------------------------------


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("damaged") / "run"
    cfg = toy_config(
        eval={"levels": "none"},
        ppo={"epochs": 1},
        run={"total_env_steps": 2 * 32, "chunk_updates": 1, "checkpoint_every": 1,
             "dir": str(run_dir)},
    )  # fmt: skip
    train(cfg, verbose=False)
    return run_dir


def _overwrite_half(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = b"\x5a" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))


DAMAGE = {  # how the newest checkpoint (step 2) is damaged
    "data": lambda step: [_overwrite_half(p) for p in (step / "state" / "d").iterdir()],
    "data_gone": lambda step: shutil.rmtree(step / "state" / "d"),
    "state_gone": lambda step: shutil.rmtree(step / "state"),
    "metadata": lambda step: (step / "meta" / "metadata").write_text("{not json"),
    "emptied": lambda step: [p.write_bytes(b"") for p in step.rglob("*") if p.is_file()],
    "manifest": lambda step: [p.write_bytes(b"\0" * 10) for p in step.rglob("manifest.ocdbt")],
}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_is_one_warning_not_tracebacks(two_checkpoints, tmp_path, capfd,
                                                          damage):  # fmt: skip
    run_dir = tmp_path / "run"
    shutil.copytree(two_checkpoints, run_dir)
    DAMAGE[damage](run_dir / "checkpoints" / "2")
    capfd.readouterr()
    warns = pytest.warns(RuntimeWarning, match="skipping damaged checkpoint")
    with warns as caught, Checkpointer(run_dir / "checkpoints") as ckpt:
        assert ckpt.load_latest().step == 1
    out, err = capfd.readouterr()
    assert "Event loop is closed" not in err and "Traceback" not in err, err
    (warning,) = [w for w in caught if "damaged" in str(w.message)]
    message = str(warning.message)
    assert "\n" not in message and "tensorstore_spec" not in message and len(message) < 600
    assert (run_dir / "checkpoints_corrupt" / "2").is_dir()  # set aside, not deleted


# --- real processes: the lock and signals ------------------------------------------------------


# The real train.py on the toy family (it compiles in seconds): the launcher registers the
# family, then runs the script as ``python scripts/train.py TOY.yaml ...`` would.
LAUNCH = (
    "import runpy, sys; import tests.toy_family; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def toy_command(run_dir, *extra):
    experiment = run_dir.parent / "toy.yaml"
    config = {**TOY_BASE, "eval": {"levels": "none"}, "ppo": {"num_envs": 4, "num_steps": 8}}
    config["run"] = {**TOY_BASE["run"], "chunk_updates": 1, "total_env_steps": 10**7}
    experiment.write_text(yaml.safe_dump(config))
    script = str(ROOT / "scripts" / "train.py")
    return [sys.executable, "-c", LAUNCH, script, str(experiment), f"run.dir={run_dir}", *extra]


def _start(command):
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(predicate, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {what} within {timeout}s")


def _left_untouched(run_dir):
    """Nothing of a run was written: no config, metrics, summary or checkpoint, no lock."""
    if not run_dir.exists():
        return True
    names = {p.name for p in run_dir.iterdir()}
    empty_ckpt = not (run_dir / "checkpoints").exists() or not any(
        (run_dir / "checkpoints").iterdir()
    )
    return names <= {"checkpoints"} and empty_ckpt


def test_second_process_is_refused_and_the_first_keeps_its_run(tmp_path):
    run_dir = tmp_path / "run"
    first = _start(toy_command(run_dir))
    try:
        _wait_for(lambda: (run_dir / "metrics.jsonl").exists()
                  and (run_dir / "metrics.jsonl").read_text().strip(),
                  first, 240, "a metrics line")  # fmt: skip
        second = subprocess.run(
            toy_command(run_dir), cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2, second.stderr
        assert f"is in use by another training process (pid {first.pid} on" in second.stderr
        assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 4, err
    rows = [r["updates"] for r in metric_rows(run_dir) if "sps" in r]
    assert rows == list(range(1, rows[-1] + 1))  # the first process's rows, all of them
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir()) == [rows[-1]]
    assert not (run_dir / ".lock").exists()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc")
@pytest.mark.parametrize("moment", ["imports", "build"])
def test_sigint_before_training_exits_130_writing_nothing(tmp_path, moment):
    run_dir = tmp_path / "run"
    # Before the imports are done the script itself runs (no launcher); then the toy run.
    command = train_command(run_dir, *LONG) if moment == "imports" else toy_command(run_dir)
    proc = _start(command)
    try:
        if moment == "imports":  # once main() has begun importing jax (a slow machine may
            # take over a second to start the interpreter, whose own start is not ours)
            maps = Path(f"/proc/{proc.pid}/maps")
            _wait_for(lambda: "jaxlib" in maps.read_text(), proc, 60, "importing jax")
        else:
            line = proc.stdout.readline()  # printed once the folder is locked, before building
            assert line.startswith("[ued] building dr on toy_corridor"), line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "nothing written" in err
    assert _left_untouched(run_dir), sorted(p.name for p in run_dir.iterdir())
