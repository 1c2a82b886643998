"""unsuplab.train: the loop learns, guards against NaN, and resumes exactly after an interruption."""

import collections
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unsuplab import train, viz


def regression_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0]])
    y = x @ w.T + 0.01 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


class Net(nn.Module):
    """Small, with dropout, so that a resumed run must also replay the model's randomness."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))

    def forward(self, x):
        return self.body(x)


def mse(model, batch):
    x, y = batch
    loss = F.mse_loss(model(x), y)
    return loss, {"rmse": loss.detach().sqrt()}


def loader(seed=0):
    return DataLoader(regression_data(seed=seed), batch_size=32, shuffle=True)


def test_fit_learns_and_keeps_a_history():
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    history = train.fit(model, mse, loader(), epochs=30, lr=0.05, progress_bar=False,
                        eval_fn=lambda m: {"weight_error": (m.weight - torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0]])).abs().max()})
    assert len(history.steps["loss"]) == 30 * 8
    assert len(history.epochs["loss"]) == len(history.epochs["rmse"]) == len(history.epochs["weight_error"]) == 30
    assert history.epochs["loss"][-1] < 0.01 * history.epochs["loss"][0]
    assert history.last("weight_error") < 0.05
    assert history.seconds > 0
    assert not model.training  # handed back in eval mode
    fig = viz.plot_history(history, ["loss", "rmse"], logy=True)
    assert len(fig.axes[0].lines) == 2


def test_epoch_means_are_means_of_the_steps():
    torch.manual_seed(0)
    history = train.fit(nn.Linear(5, 1), mse, loader(), epochs=2, progress_bar=False)
    steps = history.steps["loss"]
    assert history.epochs["loss"][0] == pytest.approx(sum(steps[:8]) / 8)
    assert history.epochs["loss"][1] == pytest.approx(sum(steps[8:]) / 8)


def run_to_end(path, interrupt_at=None, checkpoint_every=3):
    torch.manual_seed(123)
    model = Net()
    calls = collections.Counter()

    def loss_fn(model, batch):
        calls["n"] += 1
        if interrupt_at is not None and calls["n"] == interrupt_at:
            raise KeyboardInterrupt  # a Colab disconnect, a Ctrl-C
        x, y = batch
        return F.mse_loss(model(x), y)

    history = train.fit(model, loss_fn, loader(), epochs=3, lr=0.01, checkpoint=path,
                        checkpoint_every=checkpoint_every, progress_bar=False, seed=7)
    return model, history


@pytest.mark.parametrize("interrupt_at", [5, 9, 17])  # inside epoch 1, at the start of epoch 2, in epoch 3
def test_an_interrupted_run_resumes_to_the_same_result(tmp_path, interrupt_at, capsys):
    reference, reference_history = run_to_end(tmp_path / "whole.pt")

    path = tmp_path / "interrupted.pt"
    with pytest.raises(KeyboardInterrupt):
        run_to_end(path, interrupt_at=interrupt_at)
    assert path.exists()
    assert "run the same cell again to resume" in capsys.readouterr().out
    # a fresh model, as after a restarted runtime: everything comes from the checkpoint
    resumed, resumed_history = run_to_end(path)
    assert "resumed from" in capsys.readouterr().out
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed_history.steps["loss"] == pytest.approx(reference_history.steps["loss"])
    assert resumed_history.epochs["loss"] == pytest.approx(reference_history.epochs["loss"])


class NetWithBatchNorm(Net):
    """Dropout and batch norm: a forward pass draws noise and moves the running statistics."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))


def run_interrupted_mid_step(path, make_model, interrupt_at=None):
    """Like run_to_end, but the interruption comes after the forward pass, when the dropout noise of the
    step has been drawn and batch norm has updated its running statistics: a Ctrl-C during a step."""
    torch.manual_seed(123)
    model = make_model()
    calls = collections.Counter()

    def loss_fn(model, batch):
        calls["n"] += 1
        x, y = batch
        loss = F.mse_loss(model(x), y)
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        return loss

    train.fit(model, loss_fn, loader(), epochs=3, lr=0.01, checkpoint=path, checkpoint_every=3,
              progress_bar=False, seed=7)
    return model


@pytest.mark.parametrize("make_model", [Net, NetWithBatchNorm])
@pytest.mark.parametrize("interrupt_at", [5, 9, 12, 20])  # epoch 1, the first step of epoch 2, epochs 2 and 3
def test_an_interrupt_inside_a_step_resumes_bit_identically(tmp_path, make_model, interrupt_at):
    reference = run_interrupted_mid_step(tmp_path / "whole.pt", make_model)
    path = tmp_path / "interrupted.pt"
    with pytest.raises(KeyboardInterrupt):
        run_interrupted_mid_step(path, make_model, interrupt_at=interrupt_at)
    resumed = run_interrupted_mid_step(path, make_model)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


class SGDInterruptedDuringItsStep(torch.optim.SGD):
    """A Ctrl-C that arrives while the optimizer is updating the weights (step ``at``)."""

    def __init__(self, params, lr, at=None):
        super().__init__(params, lr=lr)
        self.at, self.calls = at, 0

    def step(self, closure=None):
        self.calls += 1
        loss = super().step(closure)
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)  # the weights are updated; the step is not yet counted
            for _ in range(100):  # Python checks for signals between bytecodes: the interrupt lands here
                pass
        return loss


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name == "nt", reason="needs POSIX signals")
def test_a_ctrl_c_during_the_update_is_held_until_the_step_is_counted(tmp_path):
    def run(path, at=None):
        torch.manual_seed(123)
        model = Net()
        opt = SGDInterruptedDuringItsStep(model.parameters(), lr=0.01, at=at)
        train.fit(model, mse, loader(), epochs=2, optimizer=opt, checkpoint=path, progress_bar=False, seed=7)
        return model

    reference = run(tmp_path / "whole.pt")
    # Python's own Ctrl-C handler, as in a terminal or a notebook: a job started in the background
    # (nohup, `&`) inherits SIGINT ignored, and the signal this test sends would then do nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "interrupted.pt", at=6)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert torch.load(tmp_path / "interrupted.pt", weights_only=True)["step"] == 6  # the update counted once
    resumed = run(tmp_path / "interrupted.pt")
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_finished_run_is_not_repeated(tmp_path, capsys):
    path = tmp_path / "done.pt"
    model, history = run_to_end(path)
    capsys.readouterr()
    again, again_history = run_to_end(path)
    out = capsys.readouterr().out
    assert "already finished (3 of 3 epochs, 24 steps)" in out and "resume=False" in out
    assert "epoch 4 of 3" not in out
    assert again_history.steps == history.steps
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_false_starts_afresh(tmp_path):
    path = tmp_path / "ck.pt"
    run_to_end(path)
    torch.manual_seed(0)
    history = train.fit(Net(), mse, loader(), epochs=1, checkpoint=path, resume=False, progress_bar=False)
    assert len(history.steps["loss"]) == 8


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    model = nn.Linear(5, 1)
    calls = collections.Counter()

    def exploding(model, batch):
        calls["n"] += 1
        x, y = batch
        loss = F.mse_loss(model(x), y)
        return loss * float("nan") if calls["n"] == 4 else loss

    path = tmp_path / "ck.pt"
    with pytest.raises(train.TrainingDiverged, match=r"nan at step 4 \(epoch 1\); the last finite loss was") as err:
        train.fit(model, exploding, loader(), epochs=2, checkpoint=path, checkpoint_every=2, progress_bar=False)
    assert "smaller learning rate" in str(err.value) and str(path) in str(err.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was not taken


def test_resuming_with_a_new_learning_rate_applies_it_and_says_so(tmp_path, capsys):
    path = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        run_to_end(path, interrupt_at=5)  # trained with lr=0.01
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=0.001, weight_decay=1e-4)
    train.fit(model, mse, loader(), epochs=3, optimizer=opt, checkpoint=path, progress_bar=False, seed=7)
    out = capsys.readouterr().out
    assert opt.param_groups[0]["lr"] == 0.001 and opt.param_groups[0]["weight_decay"] == 1e-4
    assert "lr=0.001 (the checkpoint had 0.01)" in out and "weight_decay=0.0001 (the checkpoint had 0)" in out


def test_resuming_a_scheduled_run_with_a_new_learning_rate_says_the_old_one_is_kept(tmp_path, capsys):
    def run(lr, epochs):
        torch.manual_seed(0)
        model = nn.Linear(5, 1)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        train.fit(model, mse, loader(), epochs=epochs, optimizer=opt, scheduler=sched, checkpoint=tmp_path / "ck.pt",
                  progress_bar=False)
        return opt

    run(0.1, 1)
    opt = run(0.5, 3)
    out = capsys.readouterr().out
    assert "kept the checkpoint's" in out and "lr" in out and "resume=False" in out
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)  # the schedule went on from 0.1


class SGDThatBlowsUp(torch.optim.SGD):
    """Its update at step ``at`` makes the weights infinite although that step's loss was finite."""

    def __init__(self, params, lr, at):
        super().__init__(params, lr=lr)
        self.at, self.calls = at, 0

    def step(self, closure=None):
        self.calls += 1
        super().step(closure)
        if self.calls == self.at:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))


def test_divergence_keeps_the_last_finite_checkpoint_and_points_to_it(tmp_path):
    path = tmp_path / "ck.pt"
    model = Net()
    opt = SGDThatBlowsUp(model.parameters(), lr=0.01, at=8)  # the last step of epoch 1: a checkpoint is due
    with pytest.raises(train.TrainingDiverged) as err:
        train.fit(model, mse, loader(), epochs=2, optimizer=opt, checkpoint=path, checkpoint_every=3,
                  progress_bar=False)
    message = str(err.value)
    assert str(path) in message and "saved at step 6" in message and "keep it to resume" not in message
    state = train.load_checkpoint(path)
    assert state["step"] == 6
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_a_loss_that_explodes_stops_training_although_it_is_finite():
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    with pytest.raises(train.TrainingDiverged,
                       match=r"(?s)the loss is .*e\+\d\d at step \d+ .*10,000 times the largest of the first") as err:
        train.fit(model, mse, loader(), epochs=5, lr=1e6, progress_bar=False)  # Adam at lr 1e6: losses near 1e26
    assert "divergence_factor=None" in str(err.value)
    history = train.fit(nn.Linear(5, 1), mse, loader(), epochs=1, lr=1e6, progress_bar=False,
                        divergence_factor=None)  # the guard can be switched off
    assert len(history.steps["loss"]) == 8


def test_a_folder_given_as_checkpoint_is_named_as_such(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a checkpoint file: give a file path.*model.pt"):
        train.fit(nn.Linear(5, 1), mse, loader(), epochs=1, checkpoint=tmp_path, progress_bar=False)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        train.load_checkpoint(tmp_path)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        train.save_checkpoint(tmp_path, step=1)


def test_check_finite_accepts_numbers_and_rejects_inf():
    train.check_finite(torch.tensor(1.5), step=1)
    with pytest.raises(train.TrainingDiverged, match="inf at step 3"):
        train.check_finite(float("inf"), step=3, what="generator loss")


def test_loss_must_be_a_scalar():
    with pytest.raises(TypeError, match=r"shape \(32, 1\): reduce it with .mean\(\)"):
        train.fit(nn.Linear(5, 1), lambda m, b: (m(b[0]) - b[1]) ** 2, loader(), epochs=1, progress_bar=False)


def test_empty_data_is_reported():
    empty = DataLoader(TensorDataset(torch.zeros(0, 5), torch.zeros(0, 1)), batch_size=4)
    with pytest.raises(ValueError, match="yielded no batches"):
        train.fit(nn.Linear(5, 1), mse, empty, epochs=1, progress_bar=False)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="epochs must be a whole number >= 1, got 0"):
        train.fit(nn.Linear(5, 1), mse, loader(), epochs=0)
    with pytest.raises(ValueError, match="max_steps"):
        train.fit(nn.Linear(5, 1), mse, loader(), epochs=1, max_steps=0)


def test_max_steps_and_clipping():
    history = train.fit(nn.Linear(5, 1), mse, loader(), epochs=10, max_steps=5, clip_grad_norm=0.5,
                        progress_bar=False)
    assert len(history.steps["loss"]) == 5
    assert len(history.steps["grad_norm"]) == 5 and history.steps["grad_norm"][0] > 0.5  # norm before clipping


def test_scheduler_steps_once_per_epoch():
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train.fit(model, mse, loader(), epochs=3, optimizer=opt, scheduler=sched, progress_bar=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)


def test_a_per_step_schedule_warms_up_then_decays_and_resumes_mid_epoch(tmp_path):
    def run(path=None, interrupt_at=None):
        torch.manual_seed(0)
        model = nn.Linear(5, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = train.warmup_schedule(opt, warmup=4, total=24, decay="linear")   # 8 batches x 3 epochs
        calls = collections.Counter()

        def loss_fn(model, batch):
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise KeyboardInterrupt
            return mse(model, batch)[0], {"lr": opt.param_groups[0]["lr"]}

        history = train.fit(model, loss_fn, loader(), epochs=3, optimizer=opt, scheduler=sched,
                            schedule_per="step", checkpoint=path, progress_bar=False)
        return model, history, opt

    model, history, opt = run()
    lrs = history.steps["lr"]                      # the rate each step was taken with
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4:] == pytest.approx([0.1 * (24 - s) / 20 for s in range(4, 24)])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "s.pt", interrupt_at=12)                   # stopped inside the second epoch...
    resumed, second, _ = run(tmp_path / "s.pt")                   # ...and resumed: the same schedule
    assert second.steps["lr"] == pytest.approx(lrs)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="schedule_per"):
        train.fit(nn.Linear(5, 1), mse, loader(), epochs=1, schedule_per="batch")


def test_fit_builds_the_warmup_schedule_for_its_own_optimizer_and_resumes_it(tmp_path):
    def run(path=None, interrupt_at=None, **schedule):
        torch.manual_seed(0)
        model, calls = nn.Linear(5, 1), collections.Counter()

        def loss_fn(model, batch):
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise KeyboardInterrupt
            return mse(model, batch)[0]

        return train.fit(model, loss_fn, loader(), epochs=3, max_steps=20, lr=0.1, checkpoint=path,
                         progress_bar=False, **schedule), model

    _, model = run(warmup=4, decay="cosine")
    # the same run with the schedule built by hand gives the same weights, step for step
    torch.manual_seed(0)
    by_hand = nn.Linear(5, 1)
    opt = torch.optim.Adam(by_hand.parameters(), lr=0.1)
    train.fit(by_hand, mse, loader(), epochs=3, max_steps=20, optimizer=opt, progress_bar=False,
              scheduler=train.warmup_schedule(opt, 4, 20, decay="cosine"), schedule_per="step")
    for a, b in zip(model.state_dict().values(), by_hand.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)       # decayed to zero after the 20 steps (not 24)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "w.pt", interrupt_at=11, warmup=4, decay="cosine")
    _, resumed = run(tmp_path / "w.pt", warmup=4, decay="cosine")  # the built schedule resumes with the run
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not both"):
        train.fit(nn.Linear(5, 1), mse, loader(), epochs=1, warmup=2, progress_bar=False,
                  scheduler=torch.optim.lr_scheduler.StepLR(torch.optim.SGD(nn.Linear(5, 1).parameters(), lr=0.1), 1))
    with pytest.raises(ValueError, match="number of steps"):
        train.fit(nn.Linear(5, 1), mse, iter(list(loader())), epochs=1, decay="cosine", progress_bar=False)


@pytest.mark.parametrize("decay, last", [("cosine", 0.0), ("constant", 1.0)])
def test_warmup_schedule_shapes(decay, last):
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=1.0)
    sched = train.warmup_schedule(opt, warmup=2, total=10, decay=decay)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert opt.param_groups[0]["lr"] == pytest.approx(last)
    if decay == "cosine":
        assert lrs[6] == pytest.approx(0.5 * (1 - math.cos(math.pi * 4 / 8)))
    with pytest.raises(ValueError, match="decay"):
        train.warmup_schedule(opt, 1, 2, decay="step")


def test_tensor_batches_cover_each_example_once_or_follow_the_weights():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = train.TensorBatches(x, batch_size=4)
    assert len(batches) == 3 and [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(list(batches)).flatten().tolist()) == list(map(float, range(10)))
    pairs = list(train.TensorBatches(x, y, batch_size=4, shuffle=False))
    assert [b[1].tolist() for b in pairs] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all((xb.flatten() == yb.float()).all() for xb, yb in train.TensorBatches(x, y, batch_size=3))
    dropped = train.TensorBatches(y, batch_size=3, drop_last=True)            # image numbers, as chapter 7
    assert len(dropped) == 3 and len(torch.cat(list(dropped)).unique()) == 9
    weighted = torch.cat(list(train.TensorBatches(y, batch_size=5, drop_last=True,
                                                  weights=torch.tensor([0.0] * 9 + [1.0]))))
    assert (weighted == 9).all()
    torch.manual_seed(0)
    drawn = torch.cat(list(train.TensorBatches(torch.full((6, 2), 0.5), batch_size=4, transform=torch.bernoulli)))
    assert set(drawn.unique().tolist()) <= {0.0, 1.0} and drawn.shape == (6, 2)
    torch.manual_seed(3)                                  # the order is the global generator's randperm
    order = torch.cat(list(train.TensorBatches(y, batch_size=4)))
    torch.manual_seed(3)
    assert order.tolist() == torch.randperm(10).tolist()
    for bad, match in [(dict(batch_size=0), "batch_size"), (dict(batch_size=11, drop_last=True), "smaller batch")]:
        with pytest.raises(ValueError, match=match):
            train.TensorBatches(x, **bad)
    with pytest.raises(ValueError, match="one row per example"):
        train.TensorBatches(x, y[:5], batch_size=2)
    with pytest.raises(ValueError, match="empty"):
        train.TensorBatches(x[:0], batch_size=2)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "ck.pt"
    train.fit(nn.Linear(5, 1), mse, loader(), epochs=1, checkpoint=path, progress_bar=False)
    with pytest.raises(RuntimeError, match="(?s)does not fit this model .*delete it to start afresh"):
        train.fit(Net(), mse, loader(), epochs=2, checkpoint=path, progress_bar=False)


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / "ck.pt"
    train.save_checkpoint(path, model=nn.Linear(5, 1), step=3)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(RuntimeError, match="cannot be read .*truncated: delete it"):
        train.load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        train.load_checkpoint(tmp_path / "missing.pt")


def test_save_and_load_checkpoint_round_trip(tmp_path):
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    opt = torch.optim.Adam(a.parameters())
    train.save_checkpoint(tmp_path / "x" / "ck.pt", model=a, optimizer=opt, step=12)
    assert not (tmp_path / "x" / "ck.pt.tmp").exists()
    state = train.load_checkpoint(tmp_path / "x" / "ck.pt", model=b)
    assert state["step"] == 12
    torch.testing.assert_close(a.weight, b.weight)
    with pytest.raises(KeyError, match="has no 'scheduler'"):
        train.load_checkpoint(tmp_path / "x" / "ck.pt", scheduler=opt)


def test_a_history_keeps_its_info_through_a_checkpoint_and_reads_one_written_before_info(tmp_path):
    history = train.History()
    history.log_epoch({"loss": 0.5, "round": 1})
    history.info.update(best_round=1, sizes=[[3, 2, 0]])   # not curves: a selected round, cluster sizes
    history.seconds = 2.5
    train.save_checkpoint(tmp_path / "ck.pt", history=history)
    restored = train.History()
    train.load_checkpoint(tmp_path / "ck.pt", history=restored)
    assert restored == history and restored.info == {"best_round": 1, "sizes": [[3, 2, 0]]}
    again = train.History()
    again.load_state_dict(history.state_dict())
    again.info["sizes"][0][0] = 99                         # a copy: the history it came from is unchanged
    assert history.info["sizes"] == [[3, 2, 0]]
    older = train.History()
    older.load_state_dict({"steps": {"loss": [1.0]}, "epochs": {"loss": [1.0]}, "seconds": 1.0})  # no "info"
    assert older.info == {} and older.steps == {"loss": [1.0]}


class WritesAFile:
    """A crafted pickle: loading it with plain pickle runs code (here: it writes a file)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return exec, (f"open({self.target!r}, 'w').write('ran foreign code')",)


def crafted_checkpoint(path, target):
    torch.save({"model": nn.Linear(5, 1).state_dict(), "step": 0, "payload": WritesAFile(target)}, path)
    return path


def test_a_crafted_pickle_checkpoint_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned.txt"
    path = crafted_checkpoint(tmp_path / "shared.pt", target)
    with pytest.raises(train.UnsafeCheckpointError,
                       match=r"(?s)shared.pt is not a safe checkpoint.*exec.*run code.*Delete it"):
        train.load_checkpoint(path, model=nn.Linear(5, 1))
    with pytest.raises(train.UnsafeCheckpointError):  # fit resumes through the same door
        train.fit(nn.Linear(5, 1), mse, loader(), epochs=1, checkpoint=path, progress_bar=False)
    assert not target.exists()


def test_checkpoints_hold_only_tensors_and_plain_values(tmp_path):
    import numpy as np

    path = tmp_path / "ck.pt"
    train.fit(Net(), mse, loader(), epochs=1, checkpoint=path, progress_bar=False)
    state = torch.load(path, weights_only=True)  # what load_checkpoint does: no pickled objects
    assert {"model", "optimizer", "history", "rng", "epoch", "step"} <= set(state)
    with pytest.raises(TypeError, match=r"'extra'.*ndarray.*tensor"):
        train.save_checkpoint(tmp_path / "bad.pt", extra={"table": np.zeros(3)})
    assert not (tmp_path / "bad.pt").exists()


def test_to_device_walks_nested_batches():
    Pair = collections.namedtuple("Pair", "x y")
    batch = {"a": [torch.ones(2), (torch.zeros(1), 3)], "b": Pair(torch.ones(1), "text")}
    moved = train.to_device(batch, "cpu")
    assert isinstance(moved["b"], Pair) and moved["b"].y == "text"
    assert moved["a"][1][1] == 3 and torch.equal(moved["a"][0], torch.ones(2))


def test_amp_is_off_on_the_cpu():
    assert train.amp_dtype(torch.device("cpu")) is None


def test_progress_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("UNSUPLAB_PROGRESS", "0")
    assert train.progress(range(3)).disable


def test_progress_accepts_disable_when_the_environment_turns_bars_off(monkeypatch):
    # fit() passes disable=...; with UNSUPLAB_PROGRESS=0 (as in `make test`) that must not clash
    monkeypatch.setenv("UNSUPLAB_PROGRESS", "0")
    assert train.progress(range(3), disable=False).disable
    monkeypatch.setenv("UNSUPLAB_PROGRESS", "1")
    assert train.progress(range(3), disable=True).disable
    assert not train.progress(range(3), disable=False).disable


def test_progress_off_by_env_and_by_caller_at_once(monkeypatch):
    # fit() passes disable=...; with UNSUPLAB_PROGRESS=0 as well, tqdm must not get `disable` twice
    monkeypatch.setenv("UNSUPLAB_PROGRESS", "0")
    assert train.progress(total=3, disable=False).disable
    assert train.progress(total=3, disable=True).disable
    monkeypatch.setenv("UNSUPLAB_PROGRESS", "1")
    assert train.progress(total=3, disable=True).disable


def test_eval_mode_restores_the_mode_it_found_even_after_an_error():
    from unsuplab.train import eval_mode

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    with eval_mode(net):
        assert not net.training and not net[1].training
    assert net.training and net[1].training
    with pytest.raises(ValueError), eval_mode(net):
        raise ValueError("inside the block")
    assert net.training                                    # restored on the way out of the error
    net.eval()
    with eval_mode(net):
        pass
    assert not net.training                                # an eval-mode model stays in eval mode
