"""Mixed precision: one place (unsuplab.train) picks it for every card, and every trainer obeys it.

No GPU runs these tests: the device's compute capability is monkeypatched. A T4 (7.5) must get float16
with a real GradScaler even though ``torch.cuda.is_bf16_supported()`` says True there (it emulates
bfloat16: slow matmuls, no cuDNN convolutions); an A100 (8.0) and an H100 (9.0) get bfloat16 with no
scaler; a CPU gets no autocast. The trainers are then run on the CPU with a stand-in scaler that does
what GradScaler does (multiply the loss, divide the gradients back before clipping and stepping), to
show that each of them takes the scaler's path, in the right order, to the same weights.
"""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unsuplab import train
from unsuplab.models import bert as B
from unsuplab.models import ssl
from unsuplab.models import unmt

CUDA = torch.device("cuda")
CARDS = {"T4": ((7, 5), torch.float16), "A100": ((8, 0), torch.bfloat16), "H100": ((9, 0), torch.bfloat16)}


def pretend_cuda(monkeypatch, capability):
    """A CUDA machine whose card has ``capability``, and which claims bfloat16 support (as a T4 does)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)


# ------------------------------------------------------------------------------- the choice per card

@pytest.mark.parametrize("card", sorted(CARDS))
def test_each_card_gets_its_precision_and_only_float16_gets_a_scaler(monkeypatch, card):
    capability, dtype = CARDS[card]
    pretend_cuda(monkeypatch, capability)
    assert train.amp_dtype(CUDA) is dtype
    assert train.amp_dtype("cuda:0") is dtype  # a string works too
    context = train.autocast(CUDA)
    assert isinstance(context, torch.autocast) and context.fast_dtype is dtype and context.device == "cuda"
    scaler = train.grad_scaler(CUDA)
    if dtype is torch.float16:
        assert isinstance(scaler, (torch.amp.GradScaler, torch.cuda.amp.GradScaler)) and scaler.is_enabled()
    else:
        assert isinstance(scaler, train.NoScaler) and not scaler.is_enabled()
    # asked for full precision (fit(..., amp=False)), no card autocasts or scales
    assert not isinstance(train.autocast(CUDA, enabled=False), torch.autocast)
    assert isinstance(train.grad_scaler(CUDA, enabled=False), train.NoScaler)


def test_a_t4_is_not_trusted_with_bfloat16_even_when_torch_says_it_supports_it(monkeypatch):
    pretend_cuda(monkeypatch, (7, 5))
    assert torch.cuda.is_bf16_supported()  # what the old rule read, and why it chose bfloat16 on a T4
    assert train.amp_dtype(CUDA) is torch.float16


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta"])
def test_no_autocast_off_cuda(monkeypatch, device):
    pretend_cuda(monkeypatch, (9, 0))  # even on a machine that has a GPU, a CPU tensor stays float32
    assert train.amp_dtype(device) is None
    assert isinstance(train.grad_scaler(device), train.NoScaler)
    with train.autocast(device):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype is torch.float32


def test_the_no_op_scaler_has_gradscalers_interface_and_changes_nothing():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = train.NoScaler()
    loss = model(torch.ones(1, 2)).sum()
    assert scaler.scale(loss) is loss
    loss.backward()
    grad = model.weight.grad.clone()
    scaler.unscale_(optimizer)
    assert torch.equal(model.weight.grad, grad)
    before = model.weight.detach().clone()
    scaler.step(optimizer)
    scaler.update()
    assert torch.allclose(model.weight, before - 0.1 * grad)
    assert scaler.get_scale() == 1.0 and scaler.state_dict() == {}
    scaler.load_state_dict({})


# ------------------------------------------------------------------------------- every trainer obeys it

class ScalingStandIn(train.NoScaler):
    """GradScaler's arithmetic on the CPU: ``scale`` multiplies the loss by 2**10, ``unscale_`` divides
    the gradients back (once per step, as GradScaler insists), ``step`` unscales first if needed. A
    trainer that skips any of it, or clips before unscaling, ends with different weights."""

    factor = 2.0 ** 10

    def __init__(self):
        self.calls, self._unscaled = [], False

    def scale(self, loss):
        self.calls.append("scale")
        return loss * self.factor

    def unscale_(self, optimizer):
        self.calls.append("unscale_")
        assert not self._unscaled, "unscale_ called twice in one step"
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.div_(self.factor)
        self._unscaled = True

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("step")
        if not self._unscaled:
            self.unscale_(optimizer)
            self.calls.pop()  # an implicit unscale is part of the step
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None):
        self.calls.append("update")
        self._unscaled = False


def run_with(monkeypatch, modules, scaler, run):
    """``run()`` with every ``grad_scaler`` of ``modules`` returning ``scaler``, clipping logged in its calls."""
    for module in modules:
        monkeypatch.setattr(module, "grad_scaler", lambda device, enabled=True: scaler)
    clip = nn.utils.clip_grad_norm_

    def logged_clip(*args, **kwargs):
        if isinstance(scaler, ScalingStandIn):
            scaler.calls.append("clip")
        return clip(*args, **kwargs)

    monkeypatch.setattr(nn.utils, "clip_grad_norm_", logged_clip)
    torch.manual_seed(0)
    return run()


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_scaled_path(monkeypatch, modules, make, train_it, steps, clips):
    """Train a fresh ``make()`` with the no-op scaler and again with the stand-in: same weights, and the
    stand-in saw scale, (unscale_, clip,) step, update at every step."""
    plain = run_with(monkeypatch, modules, train.NoScaler(), lambda: train_it(make()))
    stand_in = ScalingStandIn()
    scaled = run_with(monkeypatch, modules, stand_in, lambda: train_it(make()))
    one = ["scale", "unscale_", "clip", "step", "update"] if clips else ["scale", "step", "update"]
    assert stand_in.calls == one * steps
    for a, b in zip(weights(plain), weights(scaled)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def tiny_fit(model):
    g = torch.Generator().manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g)), batch_size=8)
    train.fit(model, lambda m, b: F.mse_loss(m(b[0]), b[1]), data, epochs=1, lr=0.1, clip_grad_norm=1.0,
              progress_bar=False)
    return model


def test_fit_trains_one_step_on_the_cpu_with_the_no_op_scaler():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    before = weights(model)
    g = torch.Generator().manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)), batch_size=8)
    history = train.fit(model, lambda m, b: F.mse_loss(m(b[0]), b[1]), data, epochs=1, lr=0.1, progress_bar=False)
    assert len(history.steps["loss"]) == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(model)))


def test_fit_goes_through_the_scaler(monkeypatch):
    assert_scaled_path(monkeypatch, [train], lambda: nn.Linear(3, 1), tiny_fit, steps=2, clips=True)


def test_train_simclr_goes_through_the_scaler(monkeypatch):
    x = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def train_it(model):
        ssl.train_simclr(model, x, epochs=1, batch_size=8, lr=0.1, progress_bar=False)
        return model

    assert_scaled_path(monkeypatch, [ssl], lambda: ssl.SimCLR(ssl.convnet(4), hidden=8, out=4), train_it,
                       steps=2, clips=False)


def bert_corpus():
    vocab = list(B.SPECIAL_TOKENS) + ["."] + [f"w{i}" for i in range(6)]
    tok = B.WordTokenizer(vocab)
    return tok, B.PairCorpus.from_documents(tok, [[" ".join([f"w{d}"] * 4) + " ."] * 4 for d in range(6)])


def bert_config(vocab_size):
    return B.BertConfig(vocab_size=vocab_size, max_len=16, d_model=8, n_layers=1, n_heads=2, d_ff=16, dropout=0.0)


def test_bert_pretrain_goes_through_the_scaler(monkeypatch):
    tok, corpus = bert_corpus()

    def train_it(model):
        B.pretrain(model, corpus, steps=2, batch_size=4, seq_len=12, lr=1e-3, progress_bar=False)
        return model

    # pretrain trains with unsuplab.train.fit: its scaler is the one to watch
    assert_scaled_path(monkeypatch, [train], lambda: B.BertForPretraining(bert_config(len(tok))), train_it,
                       steps=2, clips=True)


def test_bert_finetune_goes_through_the_scaler(monkeypatch):
    ids = torch.randint(B.N_SPECIAL, 12, (8, 6), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = B.CLS_ID
    labels = ids[:, 1] % 2

    def train_it(model):
        B.finetune(model, ids, labels, epochs=1, batch_size=4, lr=1e-3)
        return model

    assert_scaled_path(monkeypatch, [train], lambda: B.BertClassifier(bert_config(12), 2), train_it, steps=2,
                       clips=True)


def test_translation_training_goes_through_the_scaler(monkeypatch):
    v = unmt.MTVocab.build({"en": [["a", "cat", "."], ["a", "dog", "."]],
                            "fr": [["un", "chat", "."], ["un", "chien", "."]]}, min_count=1)
    parallel = {"en": [v.encode(["a", "cat", "."], "en"), v.encode(["a", "dog", "."], "en")],
                "fr": [v.encode(["un", "chat", "."], "fr"), v.encode(["un", "chien", "."], "fr")]}

    def train_it(model):
        unmt.train_supervised(model, parallel, steps=2, batch_size=2, warmup=1, progress_bar=False)
        return model

    make = lambda: unmt.Seq2Seq(v, d_model=8, nhead=2, layers=1, ff=16, dropout=0.0)
    assert_scaled_path(monkeypatch, [unmt], make, train_it, steps=2, clips=True)


def test_no_module_decides_precision_by_itself():
    """Only unsuplab/train.py may pick an autocast dtype or build a GradScaler; elsewhere autocast is
    only ever switched off (``torch.autocast(..., enabled=False)`` for a float32 island)."""
    root = Path(train.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path == Path(train.__file__):
            continue
        text = path.read_text()
        for match in re.finditer(r"torch\.autocast\(([^)]*)\)|GradScaler|is_bf16_supported|amp_dtype\(", text):
            if match.group(1) is not None and "enabled=False" in match.group(1):
                continue
            offenders.append(f"{path.relative_to(root)}: {match.group(0)}")
    assert offenders == []
