"""Every ``full`` configuration of lab 10 builds and takes a step on the CPU.

The course rule: no GPU user may be the first to meet a shape or dtype bug of a ``full`` run. The lab's
``full`` settings are read from its solution notebook (``labs.profile_settings``; never a copy of the
numbers); the energy networks are built at full width and one update of each (the full number of
Langevin steps, the full batch, the full replay buffer) runs through ``ebm.ebm_step``, the function
``ebm.train_ebm`` calls, on data of the real shape (random grey levels for MNIST). Section 6's models are
built at full size and take one step through the functions the lab trains them with: ``flows.train_flow``
for both flows (the digits' one on dequantized grey levels), ``vae.train`` for MADE and the VAE.
"""

from pathlib import Path

import torch

from unsuplab.labs import profile_settings
from unsuplab.models import ebm, flows, vae

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


def full_settings() -> dict:
    settings = profile_settings(SOLUTIONS / "10_energy_based_models.ipynb", "full")
    required = ["toy_hidden", "toy_chain", "toy_step_size", "toy_lr", "alpha", "image_width", "image_batch",
                "image_chain", "image_step_size", "image_noise_std", "image_grad_clip", "image_lr", "buffer_size",
                "flow_layers", "flow_hidden", "flow_lr", "made_hidden", "made_lr", "vae_hidden", "vae_lr",
                "logit_alpha", "digit_flow_layers", "digit_flow_hidden", "digit_flow_batch"]
    missing = [name for name in required if name not in settings]
    assert not missing, f"lab 10: no single literal value for {missing}: has the lab changed?"
    return settings


def one_update(energy, shape, batch, chain, lr, box, buffer_size=10_000, **langevin):
    optimizer = torch.optim.Adam(energy.parameters(), lr=lr, betas=(0.0, 0.999))
    buffer = ebm.ReplayBuffer(shape, size=buffer_size, box=box)
    x = torch.rand(batch, *shape) * (box[1] - box[0]) + box[0]
    before = [p.detach().clone() for p in energy.parameters()]
    parts = ebm.ebm_step(energy, optimizer, buffer, x, langevin_steps=chain, **langevin)
    assert all(torch.isfinite(v) for v in parts.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, energy.parameters()))
    return buffer


def test_full_10_toy_energy_step():
    s = full_settings()
    one_update(ebm.EnergyMLP(2, hidden=s["toy_hidden"]), (2,), 256, s["toy_chain"], s["toy_lr"], (-4.0, 4.0),
               step_size=s["toy_step_size"], alpha=s["alpha"])


def test_full_10_digit_energy_step():
    s = full_settings()
    buffer = one_update(ebm.EnergyCNN(s["image_width"]), (1, 28, 28), s["image_batch"], s["image_chain"],
                        s["image_lr"], (-1.0, 1.0), buffer_size=s["buffer_size"], step_size=s["image_step_size"],
                        noise_std=s["image_noise_std"], grad_clip=s["image_grad_clip"], alpha=s["alpha"])
    assert buffer.points.shape == (s["buffer_size"], 1, 28, 28)
    assert buffer.points.min() >= -1 and buffer.points.max() <= 1


def test_full_10_ring_flow_step():
    s = full_settings()
    flow = flows.RealNVP(2, n_layers=s["flow_layers"], hidden=s["flow_hidden"])
    history = flows.train_flow(flow, torch.randn(512, 2), steps=1, batch_size=256, lr=s["flow_lr"])
    assert len(history.steps["nll"]) == 1 and torch.isfinite(torch.tensor(history.steps["nll"])).all()


def test_full_10_digit_flow_step():
    s = full_settings()
    flow = flows.RealNVP(784, n_layers=s["digit_flow_layers"], hidden=s["digit_flow_hidden"], image_shape=(28, 28),
                         logit_alpha=s["logit_alpha"], actnorm=True)
    images = torch.randint(0, 256, (s["digit_flow_batch"], 1, 28, 28)).float() / 255
    before = [p.detach().clone() for p in flow.couplings[-1].parameters()]
    history = flows.train_flow(flow, images, steps=1, batch_size=s["digit_flow_batch"], lr=s["flow_lr"],
                               dequantize_data=True)
    assert torch.isfinite(torch.tensor(history.steps["nll"])).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, flow.couplings[-1].parameters()))
    assert torch.isfinite(flow.sample(2)).all()


def test_full_10_made_and_vae_steps():
    s = full_settings()
    images = torch.rand(128, 1, 28, 28)
    for model, lr in [(flows.MADE(784, tuple(s["made_hidden"]), direct=True), s["made_lr"]),
                      (vae.VAE(hidden=tuple(s["vae_hidden"]), z_dim=32), s["vae_lr"])]:
        before = [p.detach().clone() for p in model.parameters()]
        history = vae.train(model, images, epochs=1, max_steps=1, batch_size=128, lr=lr, progress_bar=False)
        assert all(torch.isfinite(torch.tensor(v)).all() for v in history.steps.values())
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
