import random

import numpy as np
import pytest
import torch

from unsuplab import runtime


@pytest.mark.parametrize("name", ["smoke", "cpu", "full", " CPU "])
def test_explicit_profile_wins_over_environment(monkeypatch, name):
    monkeypatch.setenv("UNSUPLAB_PROFILE", "smoke")
    assert runtime.resolve_profile(name) == name.strip().lower()


def test_auto_uses_environment_then_hardware(monkeypatch):
    monkeypatch.setenv("UNSUPLAB_PROFILE", "cpu")
    assert runtime.resolve_profile("auto") == "cpu"
    assert runtime.resolve_profile(None) == "cpu"
    monkeypatch.delenv("UNSUPLAB_PROFILE")
    expected = "full" if torch.cuda.is_available() else "cpu"
    assert runtime.resolve_profile("auto") == expected
    monkeypatch.setenv("UNSUPLAB_PROFILE", "auto")
    assert runtime.resolve_profile("auto") == expected


def test_bad_profiles_say_what_to_use(monkeypatch):
    with pytest.raises(ValueError, match="'smoke', 'cpu', 'full' or 'auto'"):
        runtime.resolve_profile("fast")
    monkeypatch.setenv("UNSUPLAB_PROFILE", "gpu")
    with pytest.raises(ValueError, match="UNSUPLAB_PROFILE='gpu'"):
        runtime.resolve_profile("auto")


def test_pick_and_setup(monkeypatch, capsys):
    rt = runtime.setup("smoke", seed=3, device="cpu")
    assert rt.profile == "smoke" and rt.device == torch.device("cpu") and rt.seed == 3
    assert rt.pick(smoke=1, cpu=2, full=3) == 1
    out = capsys.readouterr().out
    assert "profile=smoke" in out and "seed=3" in out and torch.__version__ in out
    assert "CPU" in rt.device_name


def test_seed_everything_makes_all_generators_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    runtime.seed_everything(5)
    first = draw()
    runtime.seed_everything(5)
    assert draw() == first
    runtime.seed_everything(6)
    assert draw() != first


def test_deterministic_switch():
    try:
        runtime.seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        runtime.seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.get_device().type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.get_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.get_device().type == "cuda"
    assert runtime.get_device("cpu").type == "cpu"


def test_the_full_profile_on_a_cpu_warns_with_an_estimate(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(runtime.SlowProfileWarning,
                      match=r"(?s)profile='full' on a CPU.*paper-scale.*hours.*profile='cpu'"):
        rt = runtime.setup("full", device="cpu", verbose=False)
    assert rt.profile == "full"  # a warning, not a refusal: it is the student's call
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runtime.setup("cpu", device="cpu", verbose=False)  # the profiles sized for a CPU stay quiet
        runtime.setup("smoke", device="cpu", verbose=False)


# --- where checkpoints go, and whether they survive a recycled Colab VM ---------------------------

import sys  # noqa: E402
import types  # noqa: E402


@pytest.fixture
def off_colab(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    for key in [k for k in __import__("os").environ if k.startswith("COLAB_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv(runtime.CHECKPOINTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runtime, "COLAB_DRIVE", tmp_path / "content" / "drive")
    return tmp_path


@pytest.fixture
def on_colab(off_colab, monkeypatch):
    """A fake Colab: the COLAB_ variable its VMs set, and a google.colab.drive whose mount() makes MyDrive."""
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
    mounts = []

    def mount(where):
        mounts.append(where)
        (runtime.COLAB_DRIVE / "MyDrive").mkdir(parents=True, exist_ok=True)

    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mount)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    return mounts


def test_checkpoints_default_to_a_local_folder(off_colab, capsys):
    folder = runtime.checkpoint_dir()
    assert folder == (off_colab / "checkpoints").resolve() and folder.is_dir()
    out = capsys.readouterr().out
    assert str(folder) in out and "this machine's disk" in out and "Colab" not in out


def test_checkpoints_follow_the_environment_variable_and_an_explicit_path(off_colab, monkeypatch, capsys):
    monkeypatch.setenv(runtime.CHECKPOINTS_ENV, str(off_colab / "elsewhere"))
    assert runtime.checkpoint_dir() == (off_colab / "elsewhere").resolve()
    assert runtime.checkpoint_dir("mine", verbose=False) == (off_colab / "mine").resolve()


@pytest.mark.parametrize("detect", ["env", "module"])
def test_on_colab_the_default_folder_is_said_not_to_survive_a_recycled_vm(off_colab, monkeypatch, capsys, detect):
    if detect == "env":
        monkeypatch.setenv("COLAB_GPU", "0")
    else:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    folder = runtime.checkpoint_dir()
    out = capsys.readouterr().out
    assert folder == (off_colab / "checkpoints").resolve()
    assert "does NOT survive a recycled" in out and "Google Drive" in out and "drive=True" in out


def test_on_colab_drive_is_mounted_when_asked_and_survives(on_colab, capsys):
    folder = runtime.checkpoint_dir(drive=True)
    assert on_colab == [str(runtime.COLAB_DRIVE)], "drive=True should mount Google Drive once"
    assert folder == (runtime.COLAB_DRIVE / "MyDrive" / "unsuplab" / "checkpoints").resolve() and folder.is_dir()
    assert "survives a recycled" in capsys.readouterr().out
    runtime.checkpoint_dir(drive=True, verbose=False)
    assert len(on_colab) == 1, "an already mounted Drive is not mounted again"


def test_on_colab_the_variable_may_point_into_a_mounted_drive(on_colab, monkeypatch, capsys):
    monkeypatch.setenv(runtime.CHECKPOINTS_ENV, str(runtime.COLAB_DRIVE / "MyDrive" / "unsuplab"))
    with pytest.raises(ValueError, match="mount"):   # Drive not mounted yet: refuse, rather than write to the VM
        runtime.checkpoint_dir()
    sys.modules["google.colab"].drive.mount(str(runtime.COLAB_DRIVE))
    folder = runtime.checkpoint_dir()
    assert folder == (runtime.COLAB_DRIVE / "MyDrive" / "unsuplab").resolve() and "survives a recycled" in capsys.readouterr().out


def test_drive_outside_colab_says_what_to_do(off_colab):
    with pytest.raises(ValueError, match="only on Colab"):
        runtime.checkpoint_dir(drive=True)
