"""`xlstm-viz` subcommands: a user's mistake is one line naming it (exit code 2), never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from xlstm_viz.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "xlstm_viz.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_serve_refuses_a_broken_checkpoint_before_it_listens(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    try:
        done = _cli("serve", "--model", str(tmp_path), "--port", "5833", timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("serve started a server on a broken checkpoint instead of refusing it")
    assert done.returncode == 2, done.stderr
    assert "config.json" in done.stderr and "not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr and "Launching server" not in done.stdout


def test_serve_refuses_a_port_outside_0_65535(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--port", "99999"])
    assert exit_.value.code == 2
    assert "invalid port 99999" in capsys.readouterr().err


def test_serve_names_the_address_it_cannot_listen_on(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 5834))
        busy.listen()
        assert main(["serve", "--address", "127.0.0.1", "--port", "5834"]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1:5834" in err and "in use" in err


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--lr", "-0.001"], "lr must be a finite number > 0, got -0.001"),
    (["--seed", "-1"], "seed must be an integer in [0, 2**64), got -1"),
])
def test_train_demo_refuses_bad_hyperparameters_before_training(tmp_path, capsys, args, message):
    assert main(["train-demo", "--out", str(tmp_path / "out"), "--steps", "1", "--quiet", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_train_demo_refuses_an_out_path_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "a_file"
    out.write_text("x")
    assert main(["train-demo", "--out", str(out), "--steps", "1", "--quiet"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_the_python_serve_refuses_a_missing_checkpoint_before_it_listens(tmp_path):
    from xlstm_viz.dashboard.app import serve

    with pytest.raises(FileNotFoundError, match="does not exist or is not a folder"):
        serve(model_path=tmp_path / "nothing", port=5838, threaded=True)
