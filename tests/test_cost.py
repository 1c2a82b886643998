"""The cost model (issue 17): counted work, machines' rates, the estimate a lab prints, and auto's choice."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unsuplab as ul
from unsuplab import cost, runtime, workloads


def mlp_step(n):
    torch.manual_seed(0)
    net, x, y = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), torch.rand(n, 784), torch.arange(n) % 10
    return workloads.optimiser_step(net, lambda: F.cross_entropy(net(x), y))


def test_counting_a_step_at_two_small_batches_gives_its_cost_at_the_real_batch():
    step = mlp_step(64)
    step()                                  # Adam's first step makes its state: counted steps come after
    direct = cost.count(step)
    extrapolated = cost.count_at(mlp_step, 64)
    # forward 2*B*(784*256 + 256*10), backward twice that except the input's gradient
    assert direct.flops == pytest.approx(2 * 64 * (784 * 256 + 256 * 10) * 3 - 2 * 64 * 784 * 256, rel=0.01)
    assert extrapolated.flops == pytest.approx(direct.flops, rel=1e-9)
    assert extrapolated.bytes == pytest.approx(direct.bytes, rel=0.01)
    assert extrapolated.ops == direct.ops > 10


def test_views_are_not_counted_as_operations():
    x = torch.randn(8, 8)
    assert cost.count(lambda: x.reshape(64)[:10].t()).ops == 0
    assert cost.count(lambda: x.t().reshape(64)).ops == 1           # a copy: the transpose is not contiguous
    assert cost.count(lambda: x + 1).ops == 1


def test_seconds_add_compute_memory_and_launches():
    hw = cost.Hardware("toy", fp32=1e9, mixed=4e9, efficiency=0.5, bandwidth=1e9, overhead=1e-3)
    work = cost.Work(flops=1e9, bytes=2e9, ops=100)
    assert hw.seconds(work) == pytest.approx(2 + 2 + 0.1)
    assert hw.seconds(cost.Work(), work) == pytest.approx(0.5 + 2 + 0.1)      # tensor cores for mixed work


@pytest.mark.parametrize("name, key", [("Tesla T4", "T4"), ("NVIDIA A100-SXM4-40GB", "A100"),
                                       ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H100")])
def test_known_cards_are_recognised_by_name(name, key):
    assert cost.gpu_hardware(name) == cost.GPUS[key]


def test_an_unknown_card_is_estimated_from_its_multiprocessors():
    hw = cost.gpu_hardware("Some GPU", multiprocessors=40, major=8)
    assert hw.fp32 == pytest.approx(40 * 128 * 2 * 1.5e9) and hw.mixed == pytest.approx(8 * hw.fp32)


def test_this_cpu_is_measured_once_per_lab_start():
    hw = cost.measure_cpu(0.05)
    assert 1e8 < hw.fp32 < 1e14 and 1e8 < hw.bandwidth < 1e13 and 1e-8 < hw.overhead < 1e-2
    # auto on a GPU prices the host, then the lab's announcement does again: one measurement serves both
    assert cost.measure_cpu(0.05) is hw


FAKE_TABLE = {"07_self_supervised": {
    "cpu": {"settings": "x", "phases": [dict(name="a", steps=1, mixed=True, flops=1e15, bytes=1e11, ops=1e5)]},
    "full": {"settings": "y", "phases": [dict(name="a", steps=1, mixed=True, flops=2e17, bytes=1e13, ops=1e6)]},
}}


HOST = cost.measure_cpu(0.05)


@pytest.fixture
def on_a_gpu(monkeypatch):
    """Pretend to be on CUDA card ``name`` (the rates are the cost model's only contact with it)."""
    def use(name):
        monkeypatch.delenv(runtime.PROFILE_ENV, raising=False)                 # CI sets it to smoke
        monkeypatch.setattr(cost, "measure_cpu", lambda seconds=0.3: HOST)     # measured before CUDA is faked
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(cost, "this_machine", lambda device: cost.gpu_hardware(name))
        monkeypatch.setattr(cost, "load_table", lambda path=cost.TABLE: FAKE_TABLE)
    return use


def test_auto_runs_the_cpu_profile_on_a_t4_where_full_would_take_too_long(on_a_gpu):
    on_a_gpu("Tesla T4")
    t4 = cost.estimate_seconds("07_self_supervised", "full", cost.GPUS["T4"], FAKE_TABLE)
    assert t4 > cost.AUTO_LIMIT_MINUTES * 60
    profile, why = cost.choose_auto_profile("07_self_supervised", torch.device("cuda"), FAKE_TABLE)
    assert profile == "cpu" and "T4" in why and "profile='full'" in why
    assert runtime.resolve_profile("auto", lab="07_self_supervised") == "cpu"
    assert runtime.resolve_profile("full", lab="07_self_supervised") == "full"     # asked for: kept


def test_auto_runs_full_on_an_h100(on_a_gpu):
    on_a_gpu("NVIDIA H100 80GB HBM3")
    assert runtime.resolve_profile("auto", lab="07_self_supervised") == "full"
    assert runtime.resolve_profile("auto") == "full"          # no lab named: any CUDA card


def test_auto_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(runtime.PROFILE_ENV, raising=False)
    assert runtime.resolve_profile("auto", lab="07_self_supervised") == "cpu"
    assert cost.choose_auto_profile("07_self_supervised", torch.device("cpu"))[0] == "cpu"


def test_a_lab_prints_its_estimate_but_not_for_smoke(monkeypatch, capsys):
    monkeypatch.setattr(cost, "measure_cpu", lambda seconds=0.3: cost.Hardware("this CPU", 1e12, 1e12, 1.0, 1e10, 1e-5))
    line = cost.announce("07_self_supervised", "cpu", "cpu", FAKE_TABLE)
    assert line.startswith("estimated time: about ") and "minutes on this CPU" in line
    assert cost.announce("07_self_supervised", "smoke", "cpu", FAKE_TABLE) is None
    assert cost.announce("no_such_lab", "cpu", "cpu", FAKE_TABLE) is None
    monkeypatch.setattr(cost, "load_table", lambda path=cost.TABLE: FAKE_TABLE)
    ul.setup("cpu", seed=0, device="cpu", lab="07_self_supervised")
    assert "estimated time: about" in capsys.readouterr().out


@pytest.mark.parametrize("seconds, words", [(12, "about 10 seconds"), (400, "about 7 minutes"),
                                            (3 * 3600, "about 3.0 hours")])
def test_estimates_read_as_words(seconds, words):
    assert cost.describe(seconds) == words


def test_the_table_has_every_lab_and_profile_counted_from_the_current_settings():
    table = json.loads(cost.TABLE.read_text())
    stale = [(lab, profile) for lab in workloads.LABS for profile in ("smoke", "cpu", "full")
             if table.get(lab, {}).get(profile, {}).get("settings")
             != cost.settings_digest(cost.lab_settings(lab, profile))]
    assert not stale, (f"unsuplab/cost_table.json is stale for {stale}: a lab's settings changed; run "
                       "`python -m unsuplab.cost --write --labs <lab>` and commit the table")


def test_counting_a_lab_again_reproduces_its_table_entry():
    torch.manual_seed(0)
    table = json.loads(cost.TABLE.read_text())
    entry = cost.count_lab("01_baselines", "smoke", cost.lab_settings("01_baselines", "smoke"))
    for row, stored in zip(entry["phases"], table["01_baselines"]["smoke"]["phases"], strict=True):
        assert row["name"] == stored["name"] and row["flops"] == pytest.approx(stored["flops"], rel=1e-6)


def test_every_lab_has_a_workload_and_an_unknown_one_is_refused():
    assert set(workloads.WORKLOADS) == set(workloads.LABS)
    with pytest.raises(ValueError, match="expected one of 01_baselines"):
        workloads.phases("11_nothing", {})
