"""Every ``full`` configuration of labs 10 and 10b builds and takes a step on the CPU.

The course rule: no GPU user may be the first to meet a shape or dtype bug of a ``full`` run. The lab's
``full`` settings are read from its solution notebook (``labs.profile_settings``; never a copy of the
numbers); the energy networks are built at full width and one update of each (the full number of
Langevin steps, the full batch, the full replay buffer) runs through ``ebm.ebm_step``, the function
``ebm.train_ebm`` calls, on data of the real shape (random grey levels for MNIST). Section 6's models are
built at full size and take one step through the functions the lab trains them with: ``flows.train_flow``
for both flows (the digits' one on dequantized grey levels), ``vae.train`` for MADE and the VAE.
Lab 10b's networks (the MNIST CNN and autoencoder, the ResNet-18 trunks of SimCLR and of the from-scratch
baseline) take one or two steps each through the functions the lab trains with, the ResNet-18 at 16 images a
step, and label propagation and self-training run with the full settings on a small random graph.
"""

import math
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


# ------------------------------------------------------------------------------------------------
# Lab 10b, learning with few labels: every network it trains at its full size, one or two steps each,
# through the functions the lab trains with (the ResNet-18 at REDUCED_BATCH images, as lab 7's test does)
# ------------------------------------------------------------------------------------------------

REDUCED_BATCH = 16


def few_labels_settings() -> dict:
    settings = profile_settings(SOLUTIONS / "10_few_labels.ipynb", "full")
    required = ["label_draws", "n_pool", "n_graph", "cnn_width", "scratch_steps", "scratch_batch", "max_shift",
                "pca_dim", "ae_hidden", "ae_code", "ae_epochs", "n_neighbours", "propagation_steps", "pseudo_threshold",
                "pseudo_per_class", "pseudo_rounds", "arch", "width", "simclr_batch", "simclr_epochs", "simclr_budget",
                "simclr_lr", "temperature", "cifar_scratch_steps", "cifar_scratch_lr"]
    missing = [name for name in required if name not in settings]
    assert not missing, f"lab 10b: no single literal value for {missing}: has the lab changed?"
    return settings


def test_full_10b_mnist_networks_step():
    from unsuplab.models import autoencoder as ae
    from unsuplab.models import semi_supervised as semi
    from unsuplab.models.mnist_classifier import MNISTClassifier

    s = few_labels_settings()
    assert max(s["label_draws"]) // 10 < s["n_graph"] // 10, "every draw must fit in the graph's images"
    torch.manual_seed(0)
    x, y = torch.rand(s["scratch_batch"], 1, 28, 28), torch.arange(s["scratch_batch"]) % 10
    cnn = MNISTClassifier(s["cnn_width"])
    before = [p.detach().clone() for p in cnn.parameters()]
    history = semi.train_from_scratch(cnn, x, y, steps=2, batch_size=s["scratch_batch"],
                                      augment=lambda b: semi.random_shift(b, s["max_shift"]), progress_bar=False)
    assert len(history.steps["loss"]) == 2 and all(map(torch.isfinite, map(torch.tensor, history.steps["loss"])))
    assert any(not torch.equal(a, b) for a, b in zip(before, cnn.parameters()))
    assert cnn.body[:7](x).shape == (len(x), 2 * s["cnn_width"] * 7 * 7)         # the random network's features
    autoencoder = ae.Autoencoder(784, tuple(s["ae_hidden"]), s["ae_code"])
    history = ae.train_autoencoder(autoencoder, x, epochs=1, batch_size=128, max_steps=1, progress_bar=False)
    assert ae.encode_batched(autoencoder, x).shape == (len(x), s["ae_code"])


def test_full_10b_propagation_and_self_training_run():
    from unsuplab.models import semi_supervised as semi

    s = few_labels_settings()
    torch.manual_seed(0)
    features, labels = torch.randn(500, s["pca_dim"]), torch.arange(500) % 10
    P = semi.transition_matrix(semi.knn_graph(features, s["n_neighbours"]))
    labelled = torch.arange(20)
    F = semi.propagate_labels(P, labelled, labels[labelled], 10, steps=2)
    assert F.shape == (500, 10) and torch.isfinite(semi.class_mass_normalize(F[20:])).all()
    accuracy = semi.self_train(features[:20], labels[:20], features[20:400], features[400:], labels[400:],
                               threshold=s["pseudo_threshold"], per_class=s["pseudo_per_class"], rounds=1)
    assert 0 <= accuracy <= 1


def test_full_10b_cifar_trunks_step():
    from unsuplab.models import semi_supervised as semi
    from unsuplab.models import ssl

    s = few_labels_settings()
    assert s["arch"] == "resnet18", "lab 10b's full profile trains a ResNet-18 on CIFAR-10; this test checks that trunk"
    torch.manual_seed(0)
    x, y = torch.rand(2 * REDUCED_BATCH, 3, 32, 32), torch.arange(2 * REDUCED_BATCH) % 10
    simclr = ssl.to_channels_last(ssl.SimCLR(ssl.make_backbone(s["arch"], s["width"]), hidden=512), "cpu")
    history = ssl.train_simclr(simclr, x, epochs=s["simclr_epochs"], batch_size=REDUCED_BATCH, lr=s["simclr_lr"],
                               temperature=s["temperature"], time_budget=s["simclr_budget"], max_steps=2,
                               progress_bar=False)
    assert all(math.isfinite(v) for v in history.steps["loss"])
    assert ssl.extract_features(simclr, x[:4]).shape == (4, 512)
    scratch = ssl.to_channels_last(ssl.Classifier(ssl.make_backbone(s["arch"], s["width"]), 10), "cpu")
    history = semi.train_from_scratch(scratch, x[:REDUCED_BATCH], y[:REDUCED_BATCH], steps=1, batch_size=128,
                                      lr=s["cifar_scratch_lr"], augment=ssl.random_crop_flip, progress_bar=False)
    assert len(history.steps["loss"]) == 1 and semi.predict(scratch, x[:4]).shape == (4,)
