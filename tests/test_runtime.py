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
