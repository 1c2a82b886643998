"""Tests of unsuplab.bench: recording metrics, running a notebook with papermill, results tables.

Two papermill executions in all (a passing and a failing notebook): each starts a kernel."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbformat import v4

from unsuplab import bench

REPO = Path(__file__).resolve().parents[1]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _notebook(path, body):
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.cells = [
        v4.new_code_cell('profile = "auto"', metadata={"tags": ["parameters"]}),
        v4.new_code_cell(body),
    ]
    nbformat.write(nb, path)
    return path


# --------------------------------------------------------------------------- record

def test_record_converts_to_plain_python_and_prints_outside_ipython(capsys):
    out = bench.record(acc=torch.tensor(0.25), n=np.int64(3), ok=True, name="vae",
                       curve=torch.tensor([1.0, 0.5]), losses=[np.float32(0.5), 2])
    assert out == {"acc": 0.25, "n": 3, "ok": True, "name": "vae", "curve": [1.0, 0.5], "losses": [0.5, 2]}
    assert type(out["acc"]) is float and type(out["n"]) is int and type(out["losses"][0]) is float
    assert capsys.readouterr().out == ("recorded: acc = 0.25, n = 3, ok = True, name = vae, "
                                       "curve = [1, 0.5], losses = [0.5, 2]\n")


@pytest.mark.parametrize("value, words", [
    (float("nan"), "is nan"),
    (torch.tensor(float("inf")), "is inf"),
    ([1.0, math.nan], r"'x\[1\]' is nan"),
    ({"a": 1}, "has type dict"),
    (torch.zeros(2, 2), "must hold numbers only"),
    (["a", "b"], "must hold numbers only"),
])
def test_record_rejects_non_finite_and_unsupported_values(value, words):
    with pytest.raises(ValueError, match=words):
        bench.record(x=value)


def test_record_rejects_reserved_names_and_empty_calls():
    with pytest.raises(ValueError, match="reserved"):
        bench.record(_device="cuda")
    with pytest.raises(ValueError, match="at least one"):
        bench.record()


def test_collect_metrics_merges_bundles_in_order():
    def bundle(d):
        return v4.new_output("display_data", data={bench.METRICS_MIME: d, "text/plain": "recorded"})
    nb = v4.new_notebook()
    nb.cells = [v4.new_code_cell("", outputs=[bundle({"a": 1, "b": 2})]),
                v4.new_markdown_cell("text"),
                v4.new_code_cell("", outputs=[v4.new_output("stream", name="stdout", text="hi"),
                                              bundle({"a": 5, "c": 3.5})])]
    metrics = bench.collect_metrics(nb)
    assert metrics == {"a": 5, "b": 2, "c": 3.5}
    assert list(metrics) == ["a", "b", "c"]


# --------------------------------------------------------------------------- run (papermill)

@pytest.mark.notebook
def test_run_writes_results_with_metrics_and_runtime(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb").mkdir()
    _notebook(tmp_path / "nb" / "01_tiny.ipynb",
              "import os\n"
              "from unsuplab import bench\n"
              "assert os.environ['UNSUPLAB_PROGRESS'] == '0'\n"
              "from unsuplab.runtime import checkpoint_dir\n"
              "ckpt = checkpoint_dir(verbose=False)\n"
              "assert ckpt.name.startswith('unsuplab-bench-checkpoints-') and not any(ckpt.iterdir()), ckpt\n"
              "open(ckpt / 'left.pt', 'w').write('a checkpoint')\n"
              "open('cwd_marker.txt', 'w').write('here')\n"
              "bench.record(acc=0.5 if profile == 'smoke' else 0.9, n=3)\n"
              "bench.record(extra=epochs)")
    results = bench.run(Path("nb/01_tiny.ipynb"), profile="smoke", parameters={"epochs": 7})
    path = tmp_path / "results" / "01_tiny-smoke.json"
    text = path.read_text()
    on_disk = json.loads(text)
    assert on_disk == results
    assert text.endswith("}\n") and list(on_disk) == sorted(on_disk)
    assert on_disk["metrics"] == {"acc": 0.5, "n": 3, "extra": 7}
    assert list(results["metrics"]) == list(on_disk["metrics"]) == ["acc", "n", "extra"]  # recording order
    assert on_disk["lab"] == "01_tiny" and on_disk["profile"] == "smoke"
    assert on_disk["notebook"] == "nb/01_tiny.ipynb"
    assert on_disk["wall_seconds"] > 0
    assert on_disk["device"] in ("cpu", "cuda", "mps") and on_disk["torch"] == torch.__version__
    for key in ("device_name", "python", "platform", "unsuplab", "git_commit", "started"):
        assert isinstance(on_disk[key], str) and on_disk[key]
    assert isinstance(on_disk["git_dirty"], bool)
    # the load is recorded next to the time, so a time measured on a busy machine can be recognised
    assert on_disk["cpu_count"] >= 1
    for key in ("load_average_start", "load_average_end"):
        assert on_disk[key] is None or on_disk[key] >= 0
    assert (tmp_path / "nb" / "cwd_marker.txt").read_text() == "here"  # ran in the notebook's folder
    # a measured run never resumes: its checkpoints went to a fresh folder, removed after the run
    assert not (tmp_path / "nb" / "checkpoints").exists() and "UNSUPLAB_CHECKPOINTS" not in os.environ
    assert (tmp_path / "_build" / "bench" / "01_tiny-smoke.ipynb").exists()


@pytest.mark.notebook
def test_run_failing_notebook_writes_no_results_and_raises(tmp_path, capsys):
    nb = _notebook(tmp_path / "02_broken.ipynb", "raise RuntimeError('boom in the lab')")
    with pytest.raises(Exception, match="boom in the lab"):
        bench.run(nb, profile="smoke", results_dir=tmp_path / "results",
                  output_notebook=tmp_path / "out" / "broken.ipynb")
    assert not (tmp_path / "results" / "02_broken-smoke.json").exists()
    err = capsys.readouterr().err
    assert "failed in cell" in err and "boom in the lab" in err and "no results file" in err
    assert (tmp_path / "out" / "broken.ipynb").exists()


def test_run_rejects_auto_profile_and_missing_kernelspec(tmp_path):
    nb = _notebook(tmp_path / "03_x.ipynb", "pass")
    with pytest.raises(ValueError, match="'auto' is not allowed"):
        bench.run(nb, profile="auto")
    plain = v4.new_notebook()
    nbformat.write(plain, tmp_path / "04_y.ipynb")
    with pytest.raises(ValueError, match="no metadata.kernelspec"):
        bench.run(tmp_path / "04_y.ipynb", profile="smoke")


def _git(folder, *args):
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(folder), "PATH": "/usr/bin:/bin"})


def test_run_refuses_a_tree_with_uncommitted_changes(tmp_path):
    nb = _notebook(tmp_path / "05_dirty.ipynb", "pass")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "05_dirty.ipynb")
    _git(tmp_path, "commit", "-q", "-m", "lab")
    _notebook(nb, "print('edited after the commit')")
    with pytest.raises(RuntimeError, match="uncommitted changes.*--allow-dirty"):
        bench.run(nb, profile="smoke", results_dir=tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_run_refuses_a_profile_parameter_that_contradicts_the_profile(tmp_path, capsys):
    nb = _notebook(tmp_path / "06_p.ipynb", "pass")
    with pytest.raises(ValueError, match="profile = 'full' but the run is for profile 'smoke'"):
        bench.run(nb, profile="smoke", parameters={"profile": "full"})
    assert bench.main(["run", str(nb), "--profile", "smoke", "-p", "profile", "full"]) == 1
    assert "give it once, with --profile" in capsys.readouterr().err


def test_record_runtime_moves_to_top_level_keys(capsys):
    class FakeRuntime:
        device = torch.device("cpu")
        device_name = "CPU: test (2 cores)"
    info = bench.record_runtime(FakeRuntime())
    assert info == {"_device": "cpu", "_device_name": "CPU: test (2 cores)", "_torch": torch.__version__}
    assert "recorded runtime: device = cpu (CPU: test (2 cores))" in capsys.readouterr().out
    assert bench.RUNTIME_KEYS == {"_device": "device", "_device_name": "device_name", "_torch": "torch"}


# --------------------------------------------------------------------------- results files and tables

def _result(folder, lab, profile, wall, metrics, device_name="NVIDIA H100"):
    data = {"lab": lab, "profile": profile, "device": "cuda", "device_name": device_name, "torch": "2.11.0",
            "wall_seconds": wall, "metrics": metrics}
    (folder / f"{lab}-{profile}.json").write_text(json.dumps(data))


@pytest.fixture
def results_dir(tmp_path):
    _result(tmp_path, "02_vae", "cpu", 61.4, {"test_acc": 0.8734, "elbo": -97.12345}, "CPU: laptop")
    _result(tmp_path, "02_vae", "full", 3725.0, {"test_acc": 0.91234, "elbo": -85.5})
    _result(tmp_path, "01_pca", "smoke", 2.0, {"probe_accuracy": 0.5})
    _result(tmp_path, "01_pca", "full", 9.6, {"nmi": 0.456, "loss": 1.5, "epochs": 20, "acc_gain": 3.5})
    return tmp_path


def test_load_results_and_best_result_order(results_dir):
    order = [(r["lab"], r["profile"]) for r in bench.load_results(results_dir)]
    assert order == [("01_pca", "smoke"), ("01_pca", "full"), ("02_vae", "cpu"), ("02_vae", "full")]
    assert bench.best_result("02_vae", results_dir)["profile"] == "full"
    assert bench.best_result("02_vae", results_dir, prefer=("smoke", "cpu"))["profile"] == "cpu"
    assert bench.best_result("01_pca", results_dir, prefer=("cpu",)) is None
    assert bench.best_result("99_none", results_dir) is None


def test_load_results_names_a_broken_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        bench.load_results(tmp_path)


def test_results_table_formats_rows_and_omits_missing_profiles(results_dir):
    table = bench.results_table(results_dir, reference={"02_vae": "ELBO -85 (Kingma & Welling)"})
    assert table.splitlines() == [
        "| lab | profile | hardware | torch | wall time | metrics | reference |",
        "|---|---|---|---|---|---|---|",
        "| 01_pca | full | NVIDIA H100 | 2.11.0 | 00:10 | nmi = 0.456, loss = 1.5, epochs = 20, acc_gain = 3.5 |  |",
        "| 02_vae | full | NVIDIA H100 | 2.11.0 | 62:05 | test_acc = 91.2%, elbo = -85.5 | ELBO -85 (Kingma & Welling) |",
        "| 02_vae | cpu | CPU: laptop | 2.11.0 | 01:01 | test_acc = 87.3%, elbo = -97.12 | ELBO -85 (Kingma & Welling) |",
    ]
    smoke = bench.results_table(results_dir, profiles=("smoke",))
    assert "probe_accuracy = 50.0%" in smoke and "02_vae" not in smoke and "reference" not in smoke
    assert "No results" in bench.results_table(results_dir / "empty")
    assert bench.results_markdown(results_dir).data == bench.results_table(results_dir)


def test_metrics_table_puts_one_metric_per_row_and_the_load_next_to_the_time(results_dir):
    data = json.loads((results_dir / "02_vae-cpu.json").read_text())
    data.update(load_average_start=0.2, load_average_end=1.9, cpu_count=2, git_commit="abc1234", git_dirty=True)
    (results_dir / "02_vae-cpu.json").write_text(json.dumps(data))
    lines = bench.metrics_table("02_vae", results_dir).splitlines()
    assert lines[0] == "| | `cpu` profile | `full` profile |"
    assert "| _wall time_ | 01:01 | 62:05 |" in lines
    assert "| _load average (start → end)_ | 0.2 → 1.9 on 2 cores | not recorded |" in lines
    assert "| _commit_ | abc1234 (uncommitted changes) | ? |" in lines
    assert lines[-2:] == ["| `test_acc` | 87.3% | 91.2% |", "| `elbo` | -97.12 | -85.5 |"]
    assert "has not been measured yet" in bench.metrics_table("99_none", results_dir)


def test_format_metric():
    assert bench.format_metric("val_acc", 0.98765) == "98.8%"
    assert bench.format_metric("NMI", 1.0) == "1"  # NMI stays a number in [0, 1], as papers print it
    assert bench.format_metric("acc", 1.5) == "1.5"  # not a fraction: left as a number
    assert bench.format_metric("loss", 0.000123456) == "0.0001235"
    assert bench.format_metric("n", 7) == "7"
    assert bench.format_metric("fid", [12.3456, 3.0]) == "[12.35, 3]"


@pytest.mark.notebook
def test_cli_run_prints_results_and_parses_parameters(tmp_path):
    _notebook(tmp_path / "05_cli.ipynb", "from unsuplab import bench\nbench.record(test_acc=lr * 2, n=len(profile))")
    done = subprocess.run([sys.executable, "-m", "unsuplab.bench", "run", str(tmp_path / "05_cli.ipynb"),
                           "--profile", "cpu", "--results-dir", str(tmp_path / "res"),
                           "--output-notebook", str(tmp_path / "out.ipynb"), "-p", "lr", "0.25"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"results: {(tmp_path / 'res' / '05_cli-cpu.json').as_posix()}"
    assert re.match(r"wall time: \d\d:\d\d \([\d.]+ s\) on ", lines[1]), lines[1]
    assert lines[2:] == ["  test_acc = 50.0%", "  n = 3"]
    assert json.loads((tmp_path / "res" / "05_cli-cpu.json").read_text())["metrics"] == {"test_acc": 0.5, "n": 3}


def test_cli_run_missing_notebook_exits_1(tmp_path, capsys):
    assert bench.main(["run", str(tmp_path / "nope.ipynb"), "--profile", "smoke"]) == 1
    assert "no notebook at" in capsys.readouterr().err


def test_cli_table(results_dir):
    done = subprocess.run([sys.executable, "-m", "unsuplab.bench", "table", "--results-dir", str(results_dir)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == bench.results_table(results_dir)


def test_copy_outputs_into_keeps_the_source_clean(tmp_path):
    import copy

    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    src = new_notebook(cells=[new_markdown_cell("# t"), new_code_cell('profile = "auto"'), new_code_cell("print(1)")],
                       metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    src.cells[1].metadata["tags"] = ["parameters"]
    for i, cell in enumerate(src.cells):
        cell.id = f"c{i}"
    path = tmp_path / "01_demo.ipynb"
    nbformat.write(src, path)
    executed = copy.deepcopy(src)
    injected = new_code_cell('profile = "smoke"')
    injected.metadata["tags"] = ["injected-parameters"]
    executed.cells.insert(2, injected)
    executed.cells[3].outputs = [new_output("stream", name="stdout", text="1\n")]
    executed.cells[3].execution_count = 3
    executed.cells[3].metadata["papermill"] = {"duration": 0.1}
    bench.copy_outputs_into(path, executed, {"profile": "smoke", "device_name": "CPU", "torch": "2",
                                             "started": "now", "wall_seconds": 1.0})
    back = nbformat.read(path, as_version=4)
    assert [c.source for c in back.cells] == [c.source for c in src.cells]
    assert back.cells[2].outputs[0]["text"] == "1\n" and back.cells[2].execution_count == 3
    assert "papermill" not in back.cells[2].metadata
    assert back.metadata["unsuplab"]["outputs_from"]["profile"] == "smoke"
    executed.cells[3].source = "print(2)"
    with pytest.raises(ValueError, match="changed while it ran"):
        bench.copy_outputs_into(path, executed)


def test_lab_times_table_reads_the_results_files(tmp_path):
    (tmp_path / "01_pca-cpu.json").write_text(json.dumps(
        {"lab": "01_pca", "profile": "cpu", "device_name": "CPU: laptop", "wall_seconds": 75.4, "metrics": {}}))
    table = bench.lab_times(["01_pca", "02_vae"], tmp_path)
    assert table.splitlines() == [
        "| lab | `cpu` profile | `full` profile |",
        "|---|---|---|",
        "| 01_pca | 01:15 on CPU: laptop | not measured yet |",
        "| 02_vae | not measured yet | not measured yet |",
    ]
