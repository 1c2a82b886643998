"""What each lab computes, as the cost model counts it (:mod:`unsuplab.cost`).

One function per lab, in the course's order, turns the lab's settings (read from its solution by
``unsuplab.labs.profile_settings``) into its :class:`~unsuplab.cost.Phase` list: the loops that take
its time, each with the real models at the profile's sizes and its planned number of steps. A phase's
``make(n)`` returns a function that does one step at batch (or size) ``n``; the cost model runs it at
two small sizes and extrapolates to the real one. Data loading, scikit-learn and plotting are not
phases: the results page shows how much of each lab's measured time that leaves out.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .cost import Phase, optimiser_step
from .train import backward_and_step, grad_scaler

__all__ = ["LABS", "phases", "evaluation", "SOLUTIONS", "baselines", "sparse_coding", "rbm_dbn", "autoencoders",
           "vae", "gan", "self_supervised", "pretext_tasks", "word2vec", "bert", "translation", "energy_based_models",
           "few_labels", "WORKLOADS"]

LABS = ("01_baselines", "02_sparse_coding", "03_rbm_dbn", "04_autoencoders", "05_vae", "06_gan",
        "07_self_supervised", "07_pretext_tasks", "08_word2vec", "08_bert", "09_unsupervised_translation",
        "10_energy_based_models", "10_few_labels")


def phases(lab: str, s: dict) -> list[Phase]:
    """The phases of ``lab`` under the settings ``s``."""
    try:
        build = WORKLOADS[lab]
    except KeyError:
        raise ValueError(f"no workload for lab {lab!r}: expected one of {', '.join(LABS)}") from None
    return [p for p in build(s) if p.steps > 0]


# ------------------------------------------------------------------------------------------------
# Steps shared by several labs
# ------------------------------------------------------------------------------------------------

def evaluation(name: str, n_train: int, n_test: int, dim: int, *, probe: bool = True, repeats: int = 1,
               probe_iters: int = 200, k: int = 5) -> list[Phase]:
    """The book's evaluation of frozen features (:func:`unsuplab.metrics.evaluate_features`): a k-NN
    over all training features for each test one, and a linear probe's ``probe_iters`` L-BFGS
    iterations over the training features (each about 1.25 evaluations of the loss and its gradient,
    counting the line search)."""
    from . import metrics

    def knn(n):
        x, y = torch.randn(n, dim), torch.arange(n) % 10
        x_test, y_test = torch.randn(n_test, dim), torch.arange(n_test) % 10
        return lambda: metrics.knn_accuracy(x, y, x_test, y_test, k=min(k, n))

    def probe_eval(n):
        linear, x, y = nn.Linear(dim, 10), torch.randn(n, dim), torch.arange(n) % 10
        return lambda: F.cross_entropy(linear(x), y).backward()

    out = [Phase(f"{name}: k-NN", repeats, n_train, knn, small=(64, 128))]
    if probe:
        out.append(Phase(f"{name}: linear probe", repeats * probe_iters * 1.25, n_train, probe_eval,
                         small=(64, 128)))
    return out


def _chunks(total: int, chunk: int) -> tuple[int, int]:
    """A pass over ``total`` rows ``chunk`` at a time as (steps, size): the number of chunks and their
    mean size, so that work linear in the rows is exact and every chunk's operations are counted."""
    steps = max(1, math.ceil(total / chunk))
    return steps, math.ceil(total / steps)


SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


def _call(lab: str, s: dict, callee: str) -> dict:
    """The literal keyword arguments of the lab's calls of ``callee`` under the profile of ``s``."""
    from .labs import call_settings
    return call_settings(SOLUTIONS / f"{lab}.ipynb", s["profile"], callee)


def _batched(name: str, times: float, total: int, make, batch: int, mixed: bool = False,
             small: tuple[int, int] = (2, 4)) -> Phase:
    """``times`` passes over ``total`` items taken ``batch`` at a time: one step per batch."""
    batches = math.ceil(total / batch)
    return Phase(name, times * batches, math.ceil(total / batches), make, mixed, small)


# ------------------------------------------------------------------------------------------------
# Chapter 1: PCA and K-means
# ------------------------------------------------------------------------------------------------

def baselines(s: dict) -> list[Phase]:
    from .models.baselines import PCA, KMeans

    n, n_test = s["n_train"], s["n_test"]

    def pca(n_rows):
        x = torch.rand(n_rows, 784)
        return lambda: PCA().fit(x)

    def kmeans(k, iters):
        def make(n_rows):
            x = torch.rand(n_rows, 784)
            return lambda: KMeans(k, n_init=1, max_iter=iters, tol=0.0, seed=0).fit(x)
        return make

    n_init = 3 if s["n_train"] > 2_000 else 1
    return [
        Phase("PCA of the training digits (several fits)", 4, n, pca, small=(1_000, 2_000)),
        Phase("K-means, k = 10", n_init, n, kmeans(10, 100), small=(200, 400)),
        Phase(f"K-means, k = {s['n_centroids']} (features)", 1, n, kmeans(s["n_centroids"], 30),
              small=(s["n_centroids"] + 50, s["n_centroids"] + 250)),
        *evaluation("pixels, PCA and K-means features", n, n_test, 784, repeats=4),
    ]


# ------------------------------------------------------------------------------------------------
# Chapter 2: sparse coding
# ------------------------------------------------------------------------------------------------

def sparse_coding(s: dict) -> list[Phase]:
    """Lab 2. Left out: the orientation coherence, the Gaussian-blur and local-mean baselines
    (scikit-image), cutting images into patches and folding them back, plotting."""
    from . import labs
    from .models import sparse_coding as sc

    m, K, B, p = s["patch_size"] ** 2, s["n_atoms"], s["batch_size"], s["patch_size"]
    digits_epochs = labs.call_settings(Path(__file__).resolve().parents[1] / "solutions" / "02_sparse_coding.ipynb",
                                       s["profile"], "SparseCoding")["n_epochs"]
    n_demo = {"smoke": 200, "cpu": 500, "full": 1_000}[s["profile"]]    # x_demo = x_val[:rt.pick(...)]

    def atoms(dim, k):
        return sc.normalize_atoms(torch.randn(dim, k))

    def ista_demo(n):   # one ISTA step, and the objective traced after it and after a FISTA step
        x, D = torch.randn(n, m) * 0.1, atoms(m, K)
        z, L = torch.zeros(n, K), sc.lipschitz_constant(D)

        def step():
            sc.objective(x, D, sc.ista_step(x, D, z, s["lam"], L), s["lam"]).item()
            sc.objective(x, D, z, s["lam"]).item()
        return step

    def fit_codes(dim, k, lam):     # one batch of SparseCoding.fit: FISTA codes, objective, A and B
        def make(b):
            x, D = torch.rand(b, dim), atoms(dim, k)
            A, Bs = torch.eye(k), torch.zeros(dim, k)

            def step():
                z = sc.fista(x, D, lam, s["code_iter"])
                float(sc.objective(x, D, z, lam))
                return 0.9 * A + z.T @ z / b, 0.9 * Bs + x.T @ z / b
            return step
        return make

    def sweep(dim, k):              # its dictionary step: one BCD sweep (A = I: every atom in use)
        D, A, Bs = atoms(dim, k), torch.eye(k), torch.randn(dim, k)
        return lambda _: lambda: sc.dictionary_step_bcd(D, A, Bs)

    def codes(dim, k, n_iter, masked=False, rebuild=False):   # FISTA codes of n rows (and D z + mean)
        def make(n):
            x, D = torch.randn(n, dim) * 0.1, atoms(dim, k)
            mask = (torch.rand(n, dim) >= s["missing_fraction"]).float() if masked else None

            def run():
                z = sc.fista(x, D, s["lam"], n_iter, mask=mask)
                if rebuild:
                    return z @ D.T + x.mean(1, keepdim=True)
            return run
        return make

    def image_phase(name, masked, n_lams):      # n_lams calls on the validation crop, one on the test crop
        grid = lambda side: ((side - p) // s["stride"] + 1) ** 2      # noqa: E731 (patches in a crop)
        calls = [_chunks(grid(s["val_crop"]), 16_384)] * n_lams + [_chunks(grid(s["crop"]), 16_384)]
        steps = sum(c for c, _ in calls)
        size = math.ceil(sum(c * n for c, n in calls) / steps)
        return Phase(name, steps, size, codes(m, K, s["image_iter"], masked, rebuild=True))

    n_mnist = s["n_train_mnist"] + s["n_test_mnist"]
    fits = math.ceil(s["n_epochs"] * s["n_patches"] / B)                   # SparseCoding.fit's n_steps
    digit_fits = math.ceil(digits_epochs * s["n_train_mnist"] / B)
    return [
        Phase("demo: 300 ISTA steps, the objective after each ISTA and FISTA step", 300, n_demo, ista_demo),
        Phase("demo: FISTA, 300 then 1000 steps", 13, n_demo, codes(m, K, 100)),
        Phase("dictionary learning on patches: codes", fits, B, fit_codes(m, K, s["lam"])),
        Phase("dictionary learning on patches: BCD sweeps", fits, 1, sweep(m, K), small=(1, 1)),
        Phase("held-out codes (300 FISTA steps)", 1, s["n_val"], codes(m, K, 300)),
        Phase("the lambda grid (200 FISTA steps each)", len(s["lam_grid"]), s["n_val"], codes(m, K, 200)),
        image_phase("denoising: validation crop per lambda, then the test crop", False, len(s["factors"])),
        image_phase("inpainting: validation crop per lambda, then the test crop", True, len(s["inpaint_lams"])),
        Phase("dictionary learning on MNIST: codes", digit_fits, B, fit_codes(784, s["mnist_atoms"], s["mnist_lam"])),
        Phase("dictionary learning on MNIST: BCD sweeps", digit_fits, 1, sweep(784, s["mnist_atoms"]), small=(1, 1)),
        Phase("codes of the training and test digits (100 FISTA steps)", 2, math.ceil(n_mnist / 2),
              codes(784, s["mnist_atoms"], 100)),
        *evaluation("raw pixels", s["n_train_mnist"], s["n_test_mnist"], 784, k=s["knn_k"]),
        *evaluation("sparse codes", s["n_train_mnist"], s["n_test_mnist"], s["mnist_atoms"], k=s["knn_k"]),
    ]


# ------------------------------------------------------------------------------------------------
# Chapter 3: RBMs, AIS and the deep belief network
# ------------------------------------------------------------------------------------------------

def rbm_dbn(s: dict) -> list[Phase]:
    from .models.rbm import DBN, RBM, ais_log_z, average_log_prob, cd_gradient, relu_mlp, sigmoid_mlp, train_rbm

    B, H, n = s["batch_size"], s["n_hidden"], s["n_train"]
    batches = n // B

    def cd_step(b):
        rbm, v0 = RBM(784, H), torch.bernoulli(torch.full((b, 784), 0.3))

        def step():
            with torch.no_grad():
                dW, db, dc = cd_gradient(rbm, v0, rbm.gibbs(v0, 1))
                rbm.W += 0.05 * dW
        return step

    def pcd_step(hidden):
        def make(b):
            rbm, x = RBM(784, hidden), torch.bernoulli(torch.full((b, 784), 0.3))
            return lambda: train_rbm(rbm, x, epochs=1, batch_size=b, persistent=True, progress_bar=False)
        return make

    def ais(hidden):
        def make(n_betas):
            rbm = RBM(784, hidden)
            return lambda: ais_log_z(rbm, n_chains=s["ais_chains"], n_repeats=s["ais_repeats"], n_betas=n_betas)
        return make

    def log_prob(n_rows):
        rbm, x = RBM(784, H), torch.bernoulli(torch.full((n_rows, 784), 0.3))
        return lambda: average_log_prob(rbm, x, 0.0)

    def gibbs(k):
        rbm, v = RBM(784, H), torch.bernoulli(torch.full((16, 784), 0.5))
        return lambda: rbm.gibbs(v, k)

    def digits_step(b):
        rbm, x = RBM(64, 100), torch.rand(b, 64)
        return lambda: train_rbm(rbm, x, epochs=1, batch_size=b, persistent=True, momentum=0.0, weight_decay=0.0,
                                 lr_decay=False, init_visible_bias=False, progress_bar=False)

    sizes, dbn_n, fb = tuple(s["dbn_sizes"]), s["dbn_n_train"], s["finetune_batch"]

    def pretrain(b):
        dbn, x = DBN(sizes), torch.rand(b, 784)
        return lambda: dbn.pretrain(x, epochs=1, batch_size=b, progress_bar=False)

    def finetune(build):
        def make(b):
            net, x, y = build(), torch.rand(b, 784), torch.arange(b) % 10
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
            return optimiser_step(net, lambda: F.cross_entropy(net(x), y), opt)
        return make

    def test_error(b):
        net, x = sigmoid_mlp(sizes, 10), torch.rand(b, 784)
        return lambda: net(x).argmax(1)

    digits_batches = (s["n_digits_train"] or 5_750) // 10
    return [
        Phase("CD-1 (your loop)", s["cd_epochs"] * batches, B, cd_step),
        Phase("PCD-1", s["pcd_epochs"] * batches, B, pcd_step(H)),
        Phase("the small RBM (one epoch)", batches, B, pcd_step(s["n_hidden_exact"])),
        Phase("AIS: small RBM, CD-1 and PCD-1 models", 3, s["n_betas"], ais(H), small=(20, 40)),
        Phase("AIS: the curve over K", 1, sum(s["ks"]), ais(H), small=(20, 40)),
        Phase("log p(v): test and train, both models", 4, s["n_test"], log_prob, small=(500, 1_000)),
        Phase("long Gibbs chains, both models", 2 * s["n_gibbs"], 1, lambda _: gibbs(1), small=(1, 1)),
        Phase("DBN pretraining (all layers)", s["pretrain_epochs"] * (dbn_n // B), B, pretrain),
        Phase("fine-tuning: DBN and its sigmoid twin", 2 * s["finetune_epochs"] * (dbn_n // fb), fb,
              finetune(lambda: sigmoid_mlp(sizes, 10)), mixed=True),
        Phase("the ReLU network, Adam", s["finetune_epochs"] * (dbn_n // fb), fb,
              finetune(lambda: relu_mlp(sizes, 10)), mixed=True),
        Phase("test error after each epoch", 3 * s["finetune_epochs"], 10_000, test_error, small=(500, 1_000)),
        Phase("RBM on scikit-learn's digits", s["digits_epochs"] * digits_batches, 10,
              digits_step),
    ]


# ------------------------------------------------------------------------------------------------
# Chapter 4: autoencoders
# ------------------------------------------------------------------------------------------------

def autoencoders(s: dict) -> list[Phase]:
    """Lab 4. Left out: the layer-wise codes passed between layer pairs (one forward pass of one layer),
    the 2-D grid and Gaussian samples, AUROC, t-SNE (scikit-learn), plotting; DEC's K-means assume 100
    Lloyd steps per start. The anomaly runs assume
    each digit is a tenth of the pool (the lab trains on the pool without it)."""
    from .models.autoencoder import Autoencoder, ConvAutoencoder, _LayerPair, autoencoder_loss
    from .models.baselines import PCA, KMeans
    from .models.dec import DEC, target_distribution

    n, B, hidden, k = s["n_train"], s["batch_size"], tuple(s["hidden"]), s["k_main"]
    batches = math.ceil(n / B)
    shallow = lambda: Autoencoder(784, (), s["shallow_units"], code_activation="sigmoid")   # noqa: E731
    deep = lambda code=k: Autoencoder(784, hidden, code)                                       # noqa: E731

    def train(build, loss="se", **kw):      # one Adam step of train_autoencoder (unsuplab.train.fit)
        def make(b):
            model, x = build(), torch.rand(b, 1, 28, 28)
            return optimiser_step(model, lambda: autoencoder_loss(model, x, loss=loss, **kw)[0])
        return make

    def pair(l):                            # one step of train_layerwise on layer pair l (squared error)
        def make(b):
            model = _LayerPair(deep(), l)
            h = torch.rand(b, model.enc.in_features)
            return optimiser_step(model, lambda: autoencoder_loss(model, h, loss="se")[0])
        return make

    def forward(build):                     # a test-set pass: reconstruction errors or codes
        def make(b):
            model, x = build().eval(), torch.rand(b, 1, 28, 28)

            def run():
                with torch.no_grad():
                    return model(x)
            return run
        return make

    def pca(n_rows):
        x = torch.rand(n_rows, 784)
        return lambda: PCA(k).fit(x)

    def kmeans(dim):
        def make(n_rows):
            x = torch.rand(n_rows, dim)
            return lambda: KMeans(10, n_init=1, max_iter=100, tol=0.0, seed=0).fit(x)
        return make

    def dec_step(b):                        # one SGD step of train_dec on the KL loss, eq. (4.12)
        model, x = DEC(deep(s["dec_code_size"]), torch.rand(10, s["dec_code_size"])), torch.rand(b, 1, 28, 28)
        target = target_distribution(model(x).detach())
        return optimiser_step(model, lambda: F.kl_div(model(x).log(), target, reduction="batchmean"),
                              torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))

    def dec_assign(n_rows):
        model, x = DEC(deep(s["dec_code_size"]), torch.rand(10, s["dec_code_size"])), torch.rand(n_rows, 1, 28, 28)
        return lambda: model.assign(x)

    budget, n_pairs = s["epochs"] * batches, len(hidden) + 1
    share = budget // (n_pairs + 1)
    digits = s.get("anomaly_digits", range(10))          # list(range(10)) is not a literal: absent from s
    n_pool = s["n_anomaly_train"] - s["n_anomaly_train"] // 10
    test_chunks, test_chunk = _chunks(s["n_test"], 2048)
    # passes over the test set (codes counted as whole passes): errors per code size, test_losses, the
    # conv and MLP errors, the schemes, the 2-D and k-D codes (and the training codes), the anomaly scores
    n_deep_passes = len(s["code_sizes"]) + 2 + 2 + 3 + 2 + 2 * n / s["n_test"] + len(digits)
    n_shallow_passes = 3 * 3 + 6 * 3 + 6      # sparse: codes, errors twice; denoising: 3 inputs, always-on
    corruptions = [("mask", nu) for nu in s["mask_levels"]] + [("gaussian", g) for g in s["gauss_levels"]]
    return [
        Phase("PCA of the training digits", 1, n, pca, small=(1_000, 2_000)),
        Phase(f"deep autoencoder, k = {k}, cross-entropy", s["epochs"] * batches, B,
              train(deep, "bce"), mixed=True),
        Phase("linear autoencoder, k = 16", s["epochs"] * batches, B,
              train(lambda: Autoencoder(784, (), s["k_linear"], activation=None, output="linear")), mixed=True),
        *[Phase(f"deep autoencoder, k = {c}", s["epochs"] * batches, B, train(lambda c=c: deep(c)), mixed=True)
          for c in s["code_sizes"]],
        Phase("sparse: no penalty", s["epochs_shallow"] * batches, B, train(shallow, "bce"), mixed=True),
        Phase("sparse: L1", s["epochs_shallow"] * batches, B,
              train(shallow, "bce", sparsity=("l1", s["l1_weight"])), mixed=True),
        Phase("sparse: KL", s["epochs_shallow"] * batches, B,
              train(shallow, "bce", sparsity=("kl", s["kl_weight"], s["rho"])), mixed=True),
        *[Phase(f"denoising: {kind} {level}", s["epochs_shallow"] * batches, B,
                train(shallow, "bce", corruption=(kind, level)), mixed=True) for kind, level in corruptions],
        Phase("convolutional autoencoder", s["epochs_conv"] * batches, B,
              train(lambda: ConvAutoencoder(k, s["conv_channels"]), "bce"), mixed=True),
        *[Phase(f"layer pair {l + 1}: stacked and stacked + fine-tuned", budget // n_pairs + share, B, pair(l),
                mixed=True) for l in range(n_pairs)],
        Phase("fine-tuning the stacked autoencoder", budget - n_pairs * share, B, train(deep), mixed=True),
        Phase("test-set passes and codes of the deep autoencoders", n_deep_passes * test_chunks, test_chunk,
              forward(deep)),
        Phase("test-set passes of the single-layer autoencoders", n_shallow_passes * test_chunks, test_chunk,
              forward(shallow)),
        *evaluation("2-D codes: PCA and autoencoder", n, s["n_test"], 2, probe=False, repeats=2, k=s["knn_k"]),
        *evaluation(f"k = {k} codes: autoencoder and PCA", n, s["n_test"], k, repeats=2, k=s["knn_k"]),
        *[Phase("anomaly: deep autoencoder without one digit", len(digits) * s["epochs_anomaly"]
                * math.ceil(n_pool / B), B, train(deep), mixed=True),
          Phase("anomaly: PCA without one digit", len(digits), n_pool, pca, small=(1_000, 2_000))],
        *[Phase(f"K-means, k = 10, on {name} (3 starts)", 3, n, kmeans(dim), small=(200, 400))
          for name, dim in (("pixels", 784), ("PCA codes", s["dec_code_size"]), ("autoencoder codes", s["dec_code_size"]))],
        Phase("DEC: steps (at most; it stops when the clusters settle)", s["dec_steps"], 256, dec_step, small=(8, 16)),
        Phase("DEC: target updates and test assignments", math.ceil(s["dec_steps"] / s["dec_interval"]), n + s["n_test"],
              dec_assign, small=(256, 512)),
    ]


# ------------------------------------------------------------------------------------------------
# Chapter 5: variational autoencoders
# ------------------------------------------------------------------------------------------------

def vae(s: dict) -> list[Phase]:
    """Lab 5. vae.train runs in float32 (amp=False), so no phase is mixed. Left out: the sprites' test
    codes and MIG, samples, interpolations and traversals (a few dozen images), plotting."""
    from .models.vae import VAE, VQVAE, evaluate, log_importance_weights

    B = s["batch_size"]
    mnist = lambda: VAE(hidden=tuple(s["hidden"]), z_dim=s["z_dim"])          # noqa: E731

    def train(build, shape=(1, 28, 28), binarize=True):   # one Adam step of vae.train (binarised afresh)
        def make(b):
            model, x = build(), torch.rand(b, *shape)
            return optimiser_step(model, lambda: model.loss(torch.bernoulli(x) if binarize else x.round())[0])
        return make

    def test(build):                        # evaluate(): model.loss without gradients, 1000 images at a time
        def make(b):
            model, x = build(), torch.bernoulli(torch.rand(b, 1, 28, 28))
            return lambda: evaluate(model, x, batch_size=b)
        return make

    def importance(k):                      # log_importance_weights of 100 digits, one chunk of k <= 250 samples
        model, x = mnist().eval(), torch.bernoulli(torch.rand(min(100, s["n_iw_test"]), 1, 28, 28))
        return lambda: log_importance_weights(model, x, k)

    size = s["sprite_size"]
    sprite = lambda beta: lambda: VAE(image_shape=(1, size, size), hidden=tuple(s["sprite_hidden"]),   # noqa: E731
                                      z_dim=s["sprite_z_dim"], beta=beta)
    vq = lambda restart: lambda: VQVAE(channels=s["vq_channels"], code_dim=s["code_dim"],              # noqa: E731
                                       n_codes=s["n_codes"], commitment=s["commitment"], restart_after=restart)
    val_chunks, chunk = _chunks(min(2_000, s["n_test"]), 1_000)
    test_chunks, _ = _chunks(s["n_test"], 1_000)
    iw_batches = math.ceil(s["n_iw_test"] / 100)
    return [
        Phase("VAE on MNIST", s["epochs"] * math.ceil(s["n_train"] / B), B, train(mnist)),
        Phase("VAE: validation -ELBO each epoch, test -ELBO", s["epochs"] * val_chunks + test_chunks, chunk,
              test(mnist), small=(50, 100)),
        Phase("importance-weighted log p(x)", iw_batches * math.ceil(s["n_iw_samples"] / 250),
              min(250, s["n_iw_samples"]), importance),
        *[Phase(f"beta-VAE on sprites, beta = {beta:g}", s["sprite_epochs"] * math.ceil(s["n_sprites"] / B), B,
                train(sprite(beta), (1, size, size), binarize=False)) for beta in s["betas"]],
        *[Phase(f"VQ-VAE, restart_after = {r}", s["vq_epochs"] * math.ceil(s["vq_n_train"] / B), B,
                train(vq(r))) for r in (None, s["vq_restart_after"])],
        Phase("VQ-VAE: test reconstruction and codes, both runs", 2 * 2 * test_chunks, chunk,
              test(vq(s["vq_restart_after"])), small=(50, 100)),
    ]


# ------------------------------------------------------------------------------------------------
# Chapter 6: generative adversarial networks
# ------------------------------------------------------------------------------------------------

def gan(s: dict) -> list[Phase]:
    """Lab 6, as a fresh run (the lab resumes its GANs, the feature net and the VAE from checkpoints
    when they exist). No GAN loop autocasts; the feature net (unsuplab.train.fit) does. Left out: D's
    verdicts on the toy's grid (8 snapshots), the conditional GAN's 10 x 10 grid, InfoGAN's and CycleGAN's
    test-set samples, the Fréchet distances themselves (64 features), plotting."""
    from .models import gan as g
    from .models.mnist_classifier import MNISTClassifier, classify
    from .models.vae import VAE

    B, z_dim = s["batch_size"], s["z_dim"]

    def adam(*models, lr=1e-3):
        return torch.optim.Adam([q for model in models for q in model.parameters()], lr=lr, betas=(s["beta1"], 0.999))

    def toy_step(b):
        G, D = g.MLPGenerator(z_dim=2, hidden=64), g.MLPDiscriminator(hidden=64)
        x, z, opt_G, opt_D = torch.randn(b, 2), torch.randn(b, 2), adam(G), adam(D)
        return lambda: g.gan_step(G, D, opt_G, opt_D, x, z)

    def toy_look(b):
        G, z = g.MLPGenerator(z_dim=2, hidden=64), torch.randn(b, 2)

        def run():
            with torch.no_grad():
                return g.mode_coverage(G(z))
        return run

    def head_start(b):                      # D alone against a fixed G
        G, D = g.MLPGenerator(z_dim=2, hidden=64), g.MLPDiscriminator(hidden=64)
        x, z = torch.randn(b, 2), torch.randn(b, 2)

        def loss():
            with torch.no_grad():
                fake = G(z)
            return g.discriminator_loss(D(x), D(fake))
        return optimiser_step(D, loss, adam(D))

    def classifier_step(b):
        net, x, y = MNISTClassifier(s["classifier_width"]), torch.rand(b, 1, 28, 28), torch.arange(b) % 10
        return optimiser_step(net, lambda: torch.nn.functional.cross_entropy(net(x), y))

    def classify_real(b):
        net, x = MNISTClassifier(s["classifier_width"]).eval(), torch.rand(b, 1, 28, 28)
        return lambda: classify(net, x)

    def samples(b):                         # G's samples through the feature net (gan.generate, classify)
        G, net = g.DCGANGenerator(z_dim, s["width"]), MNISTClassifier(s["classifier_width"]).eval()
        z = torch.randn(b, z_dim)
        return lambda: classify(net, g.generate(G, z))

    def dcgan_step(b):
        G, D = g.DCGANGenerator(z_dim, s["width"]), g.DCGANDiscriminator(s["width"])
        x, z, opt_G, opt_D = torch.rand(b, 1, 28, 28) * 2 - 1, torch.randn(b, z_dim), adam(G), adam(D)
        return lambda: g.gan_step(G, D, opt_G, opt_D, x, z)

    def vae_step(b):
        model, x = VAE(hidden=tuple(s["vae_hidden"]), z_dim=s["vae_z_dim"]), torch.rand(b, 1, 28, 28)
        return optimiser_step(model, lambda: model.loss(torch.bernoulli(x))[0])

    def cgan_step(b):                       # the conditional GAN: G reads [z, onehot(y)], D projects y
        G, D = g.DCGANGenerator(z_dim + 10, s["cgan_width"]), g.ProjectionDiscriminator(s["cgan_width"], 10)
        x, y, noise, opt_G, opt_D = (torch.rand(b, 1, 28, 28) * 2 - 1, torch.arange(b) % 10, torch.randn(b, z_dim),
                                     adam(G), adam(D))
        return lambda: g.conditional_gan_step(G, D, opt_G, opt_D, x, y, noise)

    def cgan_samples(b):                    # its samples of asked digits through the feature net
        G, net = g.DCGANGenerator(z_dim + 10, s["cgan_width"]), MNISTClassifier(s["classifier_width"]).eval()
        z = g.generator_input(torch.randn(b, z_dim), torch.arange(b) % 10, 10)
        return lambda: classify(net, g.generate(G, z))

    def info_step(b):
        G = g.DCGANGenerator(s["info_noise_dim"] + s["info_codes"], s["info_width"], hidden=s["info_hidden"])
        D = g.DCGANDiscriminator(s["info_width"], n_codes=s["info_codes"], hidden=s["info_hidden"])
        x, noise, codes, opt_G, opt_D = (torch.rand(b, 1, 28, 28) * 2 - 1, torch.randn(b, s["info_noise_dim"]),
                                         torch.arange(b) % s["info_codes"], adam(G), adam(D))
        return lambda: g.infogan_step(G, D, opt_G, opt_D, x, noise, codes, s["lambda_info"])

    def cycle_step(b):
        G_ab, G_ba = (g.Translator(s["cycle_width"], s["cycle_blocks"]) for _ in range(2))
        D_a, D_b = (g.PatchDiscriminator(s["cycle_width"]) for _ in range(2))
        a, b_ = torch.rand(b, 1, 28, 28) * 2 - 1, torch.rand(b, 1, 28, 28) * 2 - 1
        opt_G, opt_D = adam(G_ab, G_ba), adam(D_a, D_b)
        return lambda: g.cyclegan_step(G_ab, G_ba, D_a, D_b, opt_G, opt_D, a, b_, s["lambda_cyc"])

    toy_every = max(1, s["toy_steps"] // 40)
    eval_every = max(1, s["dcgan_steps"] // s["n_looks"])
    looks = math.ceil(s["dcgan_steps"] / eval_every)                      # step % eval_every == 0, or the last
    look_chunks, look_chunk = _chunks(s["n_look"], 1_000)
    eval_chunks, eval_chunk = _chunks(s["n_eval"], 1_000)
    return [
        Phase("ring toy: alternating steps", s["toy_steps"], 128, toy_step),
        Phase("ring toy: looks at G's samples", s["toy_steps"] // toy_every + 1, 1_000, toy_look, small=(100, 200)),
        Phase("ring toy: D's head start", 300, 128, head_start),
        Phase("feature net", s["classifier_epochs"] * math.ceil(s["n_classifier"] / 128), 128, classifier_step,
              mixed=True),
        Phase("feature net on real training and test digits", 2 * eval_chunks, eval_chunk, classify_real,
              small=(50, 100)),
        Phase("DCGAN", s["dcgan_steps"], B, dcgan_step),
        Phase("DCGAN samples: looks, final distance, arithmetic", (looks + 3) * look_chunks + eval_chunks,
              math.ceil(((looks + 3) * s["n_look"] + s["n_eval"]) / ((looks + 3) * look_chunks + eval_chunks)),
              samples, small=(50, 100)),
        Phase("chapter 5's VAE", s["vae_epochs"] * math.ceil(s["n_train"] / 128), 128, vae_step),
        Phase("conditional GAN", s["cgan_steps"], B, cgan_step),
        Phase("conditional GAN samples of asked digits", eval_chunks, eval_chunk, cgan_samples, small=(50, 100)),
        Phase("InfoGAN", s["info_steps"], B, info_step),
        Phase("CycleGAN", s["cycle_steps"], s["cycle_batch"], cycle_step),
    ]


# ------------------------------------------------------------------------------------------------
# Chapter 7: pretext tasks, NPID, SimCLR, DeepCluster, on one trunk
# ------------------------------------------------------------------------------------------------

def self_supervised(s: dict) -> list[Phase]:
    """Lab 7. Left out: the pretext accuracies on 1,000 test images, the colour-bin counts, NMI, plots.
    SimCLR's planned steps are counted, and its time budget (full: 570 s) caps its estimate."""
    from .models import ssl

    n, n_test, B, k = s["n_train"], s["n_test"], s["batch_size"], s["dc_k"]
    hidden = _call("07_self_supervised", s, "SimCLR")["hidden"]
    trunk = lambda: ssl.make_backbone(s["arch"], s["width"])        # noqa: E731
    dim = trunk().feature_dim
    bank = ssl.MemoryBank(n, momentum=s["memory_momentum"])

    def train(build, loss, sgd=False):     # the lab's train() (ul.train.fit, Adam), or train_simclr's SGD
        built = functools.cache(lambda: ssl.to_channels_last(build(), "cpu"))     # one model for both counted sizes

        def make(b):
            model, x = built(), torch.rand(b, 3, 32, 32)
            opt = (torch.optim.SGD(model.parameters(), lr=s["simclr_lr"], momentum=0.9, nesterov=True,
                                   weight_decay=5e-4) if sgd else torch.optim.Adam(model.parameters(), lr=s["lr"]))
            return optimiser_step(model, lambda: loss(model, x), opt)
        return make

    def rotation(m, x):
        x_rot, r = ssl.rotate_batch(ssl.random_crop_flip(x))
        return F.cross_entropy(m(x_rot), r)

    def position(m, x):
        pairs = ssl.patch_pairs(x, s["grid_patch"], s["gap"], s["jitter"], grid=2)
        first, second, where = pairs
        return F.cross_entropy(m(ssl.recolour_patches(first), ssl.recolour_patches(second)), where)

    def colour(m, x):
        images = ssl.random_crop_flip(x)
        logits = m(images)
        return ssl.colorization_loss(logits, m.targets(images, logits.shape[-2:]), torch.ones(m.n_bins))

    def instance(m, x):
        index = torch.arange(len(x))
        v = m(ssl.simclr_augment(x))
        loss = ssl.npid_loss(v, index, bank, s["npid_temperature"])
        bank.update(index, v)
        return loss

    def simclr(m, x):
        z1, z2 = m(torch.cat([ssl.simclr_augment(x), ssl.simclr_augment(x)])).float().chunk(2)
        return ssl.nt_xent(z1, z2, s["temperature"])

    def classes(c, augment):
        return lambda m, x: F.cross_entropy(m(augment(x)), torch.arange(len(x)) % c)

    def features(build):
        def make(b):
            model, x = ssl.to_channels_last(build(), "cpu"), torch.rand(b, 3, 32, 32)
            return lambda: ssl.extract_features(model, x)
        return make

    def bank_start(b):
        model, x = ssl.InstanceNet(trunk()), torch.rand(b, 3, 32, 32)

        def step():
            with torch.no_grad():
                return model(x)                # MemoryBank.start_from: training mode, float32
        return step

    def clustering(n_clusters, whiten=True):       # whiten=False: the guards-down pair
        def make(rows):
            f = torch.randn(rows, dim)
            return lambda: ssl.kmeans_pseudo_labels(ssl.deepcluster_codes(f, whiten), n_clusters,
                                                    iters=s["dc_kmeans_iters"], generator=torch.Generator().manual_seed(0))
        return make

    def predictions(b):
        model, x = ssl.to_channels_last(ssl.Classifier(trunk(), k), "cpu").eval(), torch.rand(b, 3, 32, 32)

        def step():
            with torch.no_grad():
                return model(x).argmax(1)
        return step

    simclr_steps = min(s["simclr_steps"] or math.inf, s["simclr_epochs"] * (n // B))
    rounds = 2 * s["dc_rounds"]                  # with and without the fixes
    guard_k, guard_rounds = s["guard_k"], 2 * s["guard_rounds"]   # the guards-down pair, with and without
    classifier = lambda c: lambda: ssl.Classifier(trunk(), c)      # noqa: E731
    return [
        Phase("RotNet", s["steps"], B // 4, train(classifier(4), rotation), mixed=True),
        Phase("relative position", s["steps"], B, train(lambda: ssl.RelativePositionNet(trunk()), position),
              mixed=True),
        Phase("colorization", s["steps"], B, train(lambda: ssl.Colorizer(trunk(), grid=s["colour_grid"]), colour),
              mixed=True),
        _batched("NPID: the memory bank's start", 1, n, bank_start, 1024),
        Phase("instance discrimination (NPID)", s["npid_steps"], B, train(lambda: ssl.InstanceNet(trunk()), instance),
              mixed=True),
        Phase("SimCLR", simclr_steps, B, train(lambda: ssl.SimCLR(trunk(), hidden=hidden), simclr, sgd=True),
              mixed=True, budget=s["simclr_budget"]),
        _batched("DeepCluster rounds and the trap: features", rounds + 1, n, features(classifier(k)), 1024, mixed=True),
        Phase("DeepCluster rounds and the trap: PCA + K-means", rounds + 1, n, clustering(k), small=(1_000, 2_000)),
        Phase("DeepCluster steps", rounds * s["dc_steps"], B, train(classifier(k), classes(k, ssl.simclr_augment)),
              mixed=True),
        Phase("the trap: two samplings", 2 * s["trap_steps"], B, train(classifier(k), classes(k, ssl.random_crop_flip)),
              mixed=True),
        _batched("the trap: predictions", 2, n, predictions, 1024),
        _batched("DeepCluster, guards down: features", guard_rounds, n, features(classifier(guard_k)), 1024,
                 mixed=True),
        Phase("DeepCluster, guards down: K-means", guard_rounds, n, clustering(guard_k, whiten=False),
              small=(1_000, 2_000)),
        Phase("DeepCluster, guards down: steps", guard_rounds * s["guard_steps"], B,
              train(classifier(guard_k), classes(guard_k, ssl.simclr_augment)), mixed=True),
        Phase("supervised", s["steps"], B, train(classifier(10), classes(10, ssl.random_crop_flip)), mixed=True),
        _batched("frozen features of 11 networks", 11, n + n_test, features(classifier(10)), 1024, mixed=True),
        *evaluation("raw pixels", n, n_test, 3 * 32 * 32, probe_iters=s["probe_iters"], k=s["knn_k"]),
        *evaluation("11 networks", n, n_test, dim, repeats=11, probe_iters=s["probe_iters"], k=s["knn_k"]),
    ]


def pretext_tasks(s: dict) -> list[Phase]:
    """Lab 7b. The 3 x 3 jigsaw with its evaluations along the way, the 2 x 2 jigsaw, the context encoder
    (its discriminator's step and the painter's), Exemplar-CNN, noise as targets (the Hungarian step on
    the CPU), the supervised bound. Left out: choosing the permutations, the pretext accuracies on 1,000
    test images, plots."""
    from .models import ssl

    n, n_test, B = s["n_train"], s["n_test"], s["batch_size"]
    trunk = lambda: ssl.make_backbone(s["arch"], s["width"])        # noqa: E731
    dim = trunk().feature_dim
    permutations = ssl.all_permutations(9)[:s["n_permutations"]]
    orders = ssl.all_permutations(4)

    def train(build, loss):                # the lab's train(): ul.train.fit with Adam
        built = functools.cache(lambda: ssl.to_channels_last(build(), "cpu"))

        def make(b):
            model, x = built(), torch.rand(b, 3, 32, 32)
            return optimiser_step(model, lambda: loss(model, x), torch.optim.Adam(model.parameters(), lr=s["lr"]))
        return make

    def jigsaw(perms, tile, gap, grid):
        def loss(m, x):
            puzzles, j = ssl.jigsaw_batch(ssl.random_crop_flip(x), perms, tile, gap, s["tile_jitter"], grid=grid)
            return F.cross_entropy(m(puzzles), j)
        return loss

    def context_step(b):                   # one step of train_context_encoder: D's step inside G's loss
        model = ssl.to_channels_last(ssl.ContextEncoder(trunk(), centre=s["centre"]), "cpu")
        disc = ssl.to_channels_last(ssl.CentreDiscriminator(), "cpu")
        x, d_opt = torch.rand(b, 3, 32, 32), torch.optim.Adam(disc.parameters())
        return optimiser_step(model, lambda: ssl.context_encoder_loss(model, ssl.random_crop_flip(x), s["centre"], disc,
                                                                      d_opt, s["lambda_adv"])[0])

    def exemplar(m, x):
        return ssl.exemplar_loss(m, x, torch.arange(len(x)))

    def nat_step(b):
        model = ssl.to_channels_last(ssl.NoiseAsTargets(trunk()), "cpu")
        state, x = ssl.NatState(b, dim, "cpu"), torch.rand(b, 3, 32, 32)
        return optimiser_step(model, lambda: ssl.nat_loss(model, x, torch.arange(b), state)[0],
                              torch.optim.Adam(model.parameters()))

    def supervised(m, x):
        return F.cross_entropy(m(ssl.random_crop_flip(x)), torch.arange(len(x)) % 10)

    def features(b):
        model, x = ssl.to_channels_last(ssl.Classifier(trunk(), 10), "cpu"), torch.rand(b, 3, 32, 32)
        return lambda: ssl.extract_features(model, x)

    jigsaw_steps = s["jigsaw_epochs"] * (n // B)
    networks = len(s["jigsaw_evals"]) + 5          # the jigsaw's evaluations, 2 x 2, context, exemplar, NAT, supervised
    return [
        Phase("jigsaw 3 x 3", jigsaw_steps, B, train(lambda: ssl.JigsawNet(trunk(), 9, len(permutations)),
                                                   jigsaw(permutations, s["tile"], s["tile_gap"], 3)), mixed=True),
        Phase("jigsaw 2 x 2", s["big_jigsaw_steps"], B, train(lambda: ssl.JigsawNet(trunk(), 4, len(orders)),
                                                            jigsaw(orders, s["big_tile"], 2, 2)), mixed=True),
        Phase("context encoder", s["ce_steps"], B, context_step, mixed=True),
        Phase("Exemplar-CNN", s["exemplar_steps"], B,
              train(lambda: ssl.ExemplarCNN(trunk(), s["n_exemplars"]), exemplar), mixed=True),
        Phase("noise as targets", s["nat_steps"], B, nat_step, mixed=True),
        Phase("supervised", s["supervised_steps"], B, train(lambda: ssl.Classifier(trunk(), 10), supervised), mixed=True),
        _batched(f"frozen features of {networks} networks", networks, n + n_test, features, 1024, mixed=True),
        *evaluation("raw pixels", n, n_test, 3 * 32 * 32, probe_iters=s["probe_iters"], k=s["knn_k"]),
        *evaluation(f"{networks} networks", n, n_test, dim, repeats=networks, probe_iters=s["probe_iters"], k=s["knn_k"]),
    ]


# ------------------------------------------------------------------------------------------------
# Chapter 8: word2vec, BERT
# ------------------------------------------------------------------------------------------------

def _unit(n: int, d: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d), dim=1)


def _sgns(vocab: int, dim: int, batch: int, negatives: int = 5, lr: float = 0.025):
    """``make(b)`` of one SGD step of word2vec (``SkipGram.sgd_step``) on ``b`` pairs, with the
    ``batch // 16`` noise words shared by the real batch (train_word2vec's ``"auto"``). The matrices
    hold only as many rows as one ``index_add_`` touches (at most ``b`` + the noise words, fewer than
    ``vocab``): the counter charges an in-place operation with its whole output tensor, and the step
    reads and writes only the rows of its batch."""
    from .models import word2vec as w2v

    shared = max(negatives, batch // 16)

    def make(b):
        rows = min(vocab, b + shared)
        model = w2v.SkipGram(rows, dim)
        cdf = w2v.noise_distribution(torch.arange(rows, 0, -1)).double().cumsum(0).float()
        centers, contexts = torch.randint(rows, (b,)), torch.randint(rows, (b,))
        return lambda: model.sgd_step(centers, contexts, w2v.sample_noise(cdf, (shared,)), lr, negatives / shared)
    return make


def _w2v_variant(vocab: int, dim: int, batch: int, window: int, architecture: str, objective: str,
                 negatives: int = 5):
    """``make(b)`` of one SGD step of a word2vec variant (``SkipGram``/``CBOW.sgd_step``) on ``b`` examples.

    Negative sampling shares ``batch // 16`` noise words, as :func:`_sgns`; the hierarchical softmax has
    the Huffman tree of Zipf counts over as many words as a step touches at most, ``min(vocab, 8 batch)``
    (the counter charges an in-place operation with its whole output tensor), and its targets are drawn
    from the square roots of the counts, as subsampling flattens them. CBOW's windows are drawn as
    training draws them (``context_windows``)."""
    from .models import word2vec as w2v

    rows = min(vocab, 8 * batch)
    counts = (1e6 / torch.arange(1, rows + 1)).round().long()           # Zipf's law
    tree = w2v.HuffmanTree.from_counts(counts) if objective == "hierarchical_softmax" else None
    shared = max(negatives, batch // 16)

    def make(b):
        model = w2v.ARCHITECTURES[architecture](rows, dim, tree=tree)
        targets = torch.multinomial(counts.double().sqrt(), b, replacement=True)
        inputs = (w2v.context_windows(torch.randint(rows, (b,)), window) if architecture == "cbow"
                  else torch.randint(rows, (b,)))
        cdf = w2v.noise_distribution(counts).double().cumsum(0).float()
        noise = lambda: None if tree is not None else w2v.sample_noise(cdf, (shared,))     # noqa: E731
        return lambda: model.sgd_step(inputs, targets, noise(), 0.025, negatives / shared)
    return make


def word2vec(s: dict) -> list[Phase]:
    """Lab 8a: skip-gram's SGD steps on enwiki-17M (text8, which a GPU with a network reads, is as long)
    and the analogy questions; then section 11's four variants, one pass each over ``variants_words``
    words, with their analogy questions. Left out: reading and counting the corpus, subsampling and
    pairing each chunk (a few vectorised operations per 100,000 words), the Huffman trees, the lab's
    self-checks, the similarity sets, the plots."""
    from .wordvectors import WordVectors, analogy_accuracy

    whole = s["max_words"] is None
    # Measured on enwiki-17M (results/08_word2vec-cpu.json) and its first 100,000 words (smoke): words,
    # vocabulary at min_count 5, share of the words in it and kept by subsampling at t = 1e-4, analogy
    # questions whose four words are among the 30,000 most frequent (19,544 x coverage).
    words = s["max_words"] or 16_970_402
    vocab, kept, questions = (71_411, 0.97 * 0.59, 11_920) if whole else (2_762, 0.84 * 0.46, 1_000)
    pairs = s["epochs"] * words * kept * (s["window"] + 1)    # a kept word has 2 E[b_t] = window + 1 contexts
    B = s["batch_size"]

    def analogies(size):
        def make(q):
            wv = WordVectors([f"w{i}" for i in range(size)], torch.randn(size, s["dim"]))
            rows = torch.randint(min(30_000, size), (q, 4)).tolist()
            asked = {"questions": [tuple(f"w{i}" for i in row) for row in rows]}
            return lambda: analogy_accuracy(wv, asked, restrict_vocab=30_000)
        return make

    # Section 11's four variants, one pass each over the first n words at t = 1e-3. Measured on enwiki-17M:
    # vocabulary, share of the words in it and kept by subsampling, analogy questions covered.
    n = s["variants_words"] or 16_970_402
    measured = {16_970_402: (71_411, 0.97 * 0.77, 11_920), 2_000_000: (22_097, 0.72, 8_628), 100_000: (2_762, 0.60, 1_000)}
    if n not in measured:
        raise ValueError(f"lab 8a's variants_words = {n:,} has no measured vocabulary in workloads.word2vec: count "
                         "it (Vocabulary.from_tokens of the first n words, min_count 5) and add it to `measured`.")
    v_vocab, v_kept, v_questions = measured[n]
    variants = [
        Phase(f"{architecture} + {objective.replace('_', ' ')}, one pass",
              n * v_kept * (s["window"] + 1 if architecture == "skipgram" else 1) / B, B,
              _w2v_variant(v_vocab, s["dim"], B, s["window"], architecture, objective, s["negatives"]))
        for architecture in ("skipgram", "cbow") for objective in ("negative_sampling", "hierarchical_softmax")]
    return [
        Phase("SGNS steps", pairs / B, B, _sgns(vocab, s["dim"], B, s["negatives"], s["lr"])),
        _batched("analogy questions", 1, questions, analogies(vocab), 1024, small=(64, 128)),
        *variants,
        _batched("the variants' analogy questions", 4, v_questions, analogies(v_vocab), 1024, small=(64, 128)),
    ]


def bert(s: dict) -> list[Phase]:
    """Lab 8b: pretraining with its held-out evaluations, and the few-label curve (fine-tuning runs,
    their test predictions, the frozen features). Left out: tokenizing the corpus, TF-IDF + scikit-learn,
    the linear probes on a few hundred features, fill-mask and attention maps."""
    from .models import bert as B

    T, V, cpu = s["seq_len"], s["vocab_size"], torch.device("cpu")
    cfg = B.BertConfig(vocab_size=V, max_len=T, d_model=s["d_model"], n_layers=s["n_layers"], n_heads=s["n_heads"],
                       d_ff=4 * s["d_model"], dropout=s["dropout"])
    # documents of 1,000 tokens, sentences of 20: pairs that fill seq_len, as the lab's mostly do
    ids = torch.randint(B.N_SPECIAL, V, (100_000,))
    starts = torch.arange(0, len(ids), 20)
    doc = starts // 1_000 * 1_000
    corpus = B.PairCorpus(ids, starts, doc, (doc + 1_000).clamp(max=len(ids)))
    classes = 6
    paragraphs = 1_236 if s["max_chars"] is None else 223   # of those classes in the held-out enwiki-17M articles
    eval_batch = _call("08_bert", s, "make_eval_batches")["batch_size"]
    ft = _call("08_bert", s, "finetune")
    pool = _call("08_bert", s, "BertClassifier").get("pool", "cls")

    def pretrain(b):
        model, scaler = B.BertForPretraining(cfg), grad_scaler(cpu)
        opt = B._adamw(model, s["lr"], 0.01, cpu)

        def step():
            batch = corpus.sample_pairs(b, T)
            batch["input_ids"], batch["labels"] = B.mask_tokens(batch["input_ids"], V, s["mask_prob"])
            loss, _ = model.loss(batch)
            backward_and_step(loss, opt, scaler, model.parameters(), 1.0)
        return step

    def heldout(b):
        model = B.BertForPretraining(cfg)
        batches = B.make_eval_batches(corpus, V, n_batches=1, batch_size=b, seq_len=T, mask_prob=s["mask_prob"])
        return lambda: B.evaluate_mlm(model, batches)

    def finetune(b):
        clf, scaler = B.BertClassifier(cfg, classes, pool=pool), grad_scaler(cpu)
        opt = B._adamw(clf, ft.get("lr", 1e-3), 0.01, cpu)
        x, y = torch.randint(B.N_SPECIAL, V, (b, T)), torch.arange(b) % classes

        def step():
            backward_and_step(F.cross_entropy(clf(x).float(), y), opt, scaler, clf.parameters(), 1.0)
        return step

    def predict(b):
        clf, x = B.BertClassifier(cfg, classes, pool=pool), torch.randint(B.N_SPECIAL, V, (b, T))
        return lambda: B.predict(clf, x)

    def features(b):
        encoder, x = B.BertEncoder(cfg), torch.randint(B.N_SPECIAL, V, (b, T))
        return lambda: B.sentence_features(encoder, x)

    every = max(s["steps"] // 5, 1)
    evaluations = len(range(every, s["steps"] + 1, every)) + (s["steps"] % every != 0) + 1    # + the final one
    draws = sum(s["label_draws"].values())
    runs = 2 * len(s["finetune_lrs"])          # pretrained and random starts, at each learning rate
    phases = [Phase("pretraining", s["steps"], s["batch_size"], pretrain, mixed=True),
              Phase("held-out MLM evaluations", evaluations * s["n_eval_batches"], eval_batch, heldout, mixed=True)]
    for labels, n_draws in s["label_draws"].items():
        per_epoch = math.ceil(classes * labels / ft["batch_size"])
        phases.append(Phase(f"fine-tuning, {labels} labels per class",
                            n_draws * runs * s["finetune_epochs"] * per_epoch,
                            math.ceil(classes * labels / per_epoch), finetune, mixed=True))
    return phases + [
        _batched("test predictions of the fine-tuned", draws * runs, classes * s["n_test_per_class"], predict, 256,
                 mixed=True),
        _batched("frozen features of the paragraphs", draws * 2, paragraphs, features, 256, mixed=True),
    ]


# ------------------------------------------------------------------------------------------------
# Chapter 9: word translation, then unsupervised translation
# ------------------------------------------------------------------------------------------------

def translation(s: dict) -> list[Phase]:
    """Lab 9. Part 1: word2vec on each corpus, the adversarial game, refinement, similarity seeds,
    self-learning and every CSLS search (precisions, criteria), per space (novels, captions). Part 2:
    back-translation rounds (greedy decoding of both corpora, training steps, BLEU and round-trip BLEU
    of each round), the supervised model and its BLEU. Left out: reading the corpora, Procrustes' d x d
    SVDs, the eigenvalues of the isomorphism measure, word-by-word translation and sacreBLEU (Python),
    and the game's restarts, which run only when it never clicks (full: up to 2 more games). Part 1
    runs on the CPU whatever the device: word2vec is given none and the vectors stay there."""
    from .models import unmt
    from .models import word_translation as wt

    k, lang, everywhere, more = s["k_csls"], s["lang"], s["game_everywhere"], s["more_pairs"]
    game, refine, learn = s["game"], s["refine"], s["learn"]
    # Measured: the vocabulary of n words of ELTeC novels at min_count 10 (1,027 at 100,000 words, 12,024
    # at 3M, 15,640 at 5M); a Multi30k half has about 180,000 words and 2,200 of them at min_count 5; the
    # share of the words kept (in the vocabulary, then subsampled at word2vec's default t = 1e-3).
    novels, captions, caption_words = round(1_027 * (s["n_words"] / 1e5) ** 0.7), 2_200, 180_000
    kept_novels, kept_captions = 0.97 * 0.73, 0.95 * 0.61

    def csls(n_src, d, queries):
        """make(m): translate ``queries`` of ``n_src`` mapped words among ``m`` targets by CSLS (9.6)."""
        def make(m):
            WX, Y = _unit(n_src, d), _unit(m, d)
            return lambda: wt.translate(WX, Y, torch.arange(min(queries, n_src)), method="csls", k=k, topn=5)
        return make

    def induce(n_src, d):
        def make(m):
            WX, Y = _unit(n_src, d), _unit(m, d)
            return lambda: wt.induce_dictionary(WX, Y, max_rank=n_src, k=k)
        return make

    def learning(r, d):
        def make(m):
            X, Y, seed = _unit(r, d), _unit(m, d), torch.arange(min(m, 100)).repeat(2, 1).T
            return lambda: wt.self_learning(X, Y, seed, iterations=1, max_rank=r, k=k)
        return make

    def signatures(n, d):                        # counted once at n words: its work grows as n^2
        X = _unit(n, d)
        return lambda _: lambda: wt.similarity_signatures(X, n)

    def game_step(d):
        def make(b):
            X, Y = _unit(game["most_frequent"], d), _unit(game["most_frequent"], d)
            W, dis = torch.nn.Parameter(torch.eye(d)), wt.Discriminator(d, game["hidden"])
            opt_w, opt_d = torch.optim.SGD([W], lr=game["lr"]), torch.optim.SGD(dis.parameters(), lr=game["lr"])
            g = torch.Generator().manual_seed(0)

            def step():
                for _ in range(5):
                    wt.discriminator_step(dis, opt_d, W, *wt._sample_words(X, Y, b, len(X), len(Y), g))
                wt.mapping_step(dis, opt_w, W, *wt._sample_words(X, Y, b, len(X), len(Y), g))
            return step
        return make

    def space(name, V, d, pairs, hidden):
        """The phases of one kind of vector space: ``pairs`` curve steps between two of them, and
        (``hidden``) the experiments on the hidden rotation and the supervised en-lang baseline."""
        r_ref, r_learn, n_sig = min(refine["max_rank"], V), min(learn["max_rank"], V), min(s["n_signature"], V)
        n_0 = min(n_sig, 1_000)
        games = hidden + everywhere * pairs
        evals = math.ceil(game["steps"] / game["eval_every"])    # every eval_every steps, and at the last
        refinements = 2 * hidden + everywhere * pairs
        maps = 3 * hidden + (3 + everywhere) * pairs             # supervised, similarity, identical (, adversarial)
        precisions = maps + 7 * hidden                           # + supervised nn/CSLS, 4 of the rotation, robust
        full_searches = 2                                        # hidden: hubs, nn and CSLS; captions: the dictionary
        criteria = games * evals + refinements * (refine["iterations"] + 1) + hidden   # + the unaligned one
        small = (32, 64)
        return [
            Phase(f"{name}: adversarial game", games * game["steps"], game["batch_size"], game_step(d)),
            Phase(f"{name}: criterion (9.7) of the game and refinement", criteria, V, csls(V, d, 1_000), small=small),
            Phase(f"{name}: refinement, induced dictionaries", refinements * refine["iterations"], r_ref,
                  induce(r_ref, d), small=small),
            Phase(f"{name}: similarity signatures", 2 * (hidden + pairs) * (n_sig / n_0) ** 2, n_0,
                  signatures(n_0, d), small=(n_0, n_0)),
            Phase(f"{name}: similarity seeds", hidden + pairs, n_sig, induce(n_sig, n_sig), small=small),
            Phase(f"{name}: self-learning", (hidden + 2 * pairs) * learn["iterations"], r_learn, learning(r_learn, d),
                  small=small),
            Phase(f"{name}: P@1 of every map", precisions, V, csls(V, d, min(1_500, V)), small=small),
            Phase(f"{name}: every word translated", full_searches, V, csls(V, d, V), small=small),
            Phase(f"{name}: criterion of every map", maps, r_learn, csls(r_learn, d, 1_000), small=small),
        ]

    novel_pairs = 2 + 2 * more                   # en-en halves, en-lang (, en-Wikipedia, en-other)
    w2v_n, w2v_c = s["w2v_novels"], s["w2v_captions"]
    part1 = [
        Phase("word2vec, novels", (3 + 2 * more) * w2v_n["epochs"] * s["n_words"] * kept_novels * 6 / 1024, 1024,
              _sgns(novels, w2v_n["dim"], 1024)),
        Phase("word2vec, captions", 2 * w2v_c["epochs"] * caption_words * kept_captions * 6 / 1024, 1024,
              _sgns(captions, w2v_c["dim"], 1024)),
        *space("novels", novels, w2v_n["dim"], novel_pairs, True),
        *space("captions", captions, w2v_c["dim"], 1, False),
    ]

    # Part 2: Multi30k's halves hold 3,160 English and 3,337 French words at min_count 3 (German: similar);
    # sentences average 13.5 tokens; a batch of random ones is padded to about 24.
    vocab = unmt.MTVocab(("en", lang), {"en": [f"e{i}" for i in range(3_160)], lang: [f"x{i}" for i in range(3_337)]})
    other = {"en": lang, lang: "en"}

    def sentences(b, language, T=24):
        lo, hi = vocab.lang_range(language)
        return torch.randint(lo, hi, (b, T)), torch.randint(T // 4, T + 1, (b,))

    stored = SimpleNamespace(generate=lambda y, y_len, language: (sentences(len(y), language, y.shape[1])[0], y_len))

    def trainer(loss):
        @functools.cache                         # one model for both counted sizes
        def built():
            model = unmt.Seq2Seq(vocab, **s["model_size"])
            return (model, *unmt._optimizer(model, s["lr"], 50))

        def make(b):
            (model, opt, sched), scaler = built(), grad_scaler("cpu")
            batches = {language: sentences(b, language) for language in other}

            def step():
                backward_and_step(loss(model, batches), opt, scaler, model.parameters(), 1.0)
                sched.step()
            return step
        return make

    def unsupervised(model, batches):            # the four terms of (9.11), back-translations looked up
        p, shuffle = s["p_drop"], s["k_shuffle"]
        return sum([unmt.denoising_loss(model, *batches[l], l, p, shuffle) for l in other]
                   + [unmt.back_translation_loss(model, stored, *batches[l], l, other[l], p, shuffle) for l in other])

    def supervised(model, batches):
        return sum(model(*batches[a], *batches[b], b) for a, b in other.items())

    translator = functools.cache(lambda: unmt.Seq2Seq(vocab, **s["model_size"]).eval())

    def decode(b):       # translate_ids: greedy, batches of similar lengths; a trained model stops near
                         # the source's length (14 + <eos>), where an untrained one would run to max_len
        model, src = translator(), sentences(b, "en", 14)[0]
        return lambda: model.generate(src, torch.full((b,), 14), lang, max_len=16)

    iterations, steps, n_test = s["iterations"], s["steps"], s["n_test"]
    sup_steps = s.get("supervised_steps") or (steps if s["profile"] == "cpu" else iterations * steps)
    n_val = {"smoke": 5, "cpu": 100, "full": 1_000}[s["profile"]]        # val_en, a slice in the lab
    # both corpora after rounds 1.. (back-translations), the test sentences after each round and for the
    # supervised model, round trips of val_en, the examples: each in both directions, 256 at a time
    decoded = [(iterations - 1, s["n_mono"]), (iterations + 1, n_test), (iterations, n_val), (1, min(100, n_test))]
    batches = sum(2 * times * math.ceil(n / 256) for times, n in decoded)
    sentences_decoded = sum(2 * times * n for times, n in decoded)
    part2 = [
        Phase("greedy decoding: back-translations, BLEU, round trips", batches, math.ceil(sentences_decoded / batches),
              decode, mixed=True),
        Phase("back-translation steps", iterations * steps, s["batch_size"], trainer(unsupervised), mixed=True),
        Phase("supervised steps", sup_steps, 2 * s["batch_size"], trainer(supervised), mixed=True),
    ]
    for phase in part1:
        phase.on_cpu = True
    return [p for p in part1 + part2 if p.steps > 0]


# ------------------------------------------------------------------------------------------------
# Chapter 10: energy-based models
# ------------------------------------------------------------------------------------------------

def energy_based_models(s: dict) -> list[Phase]:
    """Lab 10, as a fresh run. Each update of an EBM is ``chain`` Langevin steps (a forward pass and
    the gradient with respect to the input, the energy's weights frozen) and one Adam step on the
    contrastive loss of the data and the samples; the short-run sampler of section 5 is ``2 * chain``
    Langevin steps on the evaluation images. A Langevin step is counted as a backward pass into the
    input (``torch.autograd.grad``, which the library calls, is not supported under PyTorch's FLOP
    counter; the arithmetic is the same). Section 6: the ring's flow and the digits' flow (Adam steps of
    ``flows.train_flow``), MADE and the VAE (``vae.train``, the same epochs), MADE's exact test
    log-likelihood, the VAE's importance-weighted bound (chunks of at most 250 samples for 100 digits, as
    in lab 5), MADE's 36 samples (784 passes), the Gaussian's covariance and the flow's test pass. Left
    out: the step-size demonstration of section 1 (tiny), the grid's log Z and the flow's density on it,
    the Fréchet distances, MADE's Jacobian of one digit, the independent pixels, plotting."""
    from .models import ebm, flows
    from .models.mnist_classifier import MNISTClassifier
    from .models.vae import VAE, log_importance_weights

    def langevin_step(make_energy, shape):
        def make(b):
            energy, x = make_energy().requires_grad_(False), torch.rand(b, *shape).requires_grad_(True)

            def step():
                energy(x).sum().backward()              # dE/dx into x.grad
                x.grad = None
            return step
        return make

    def update(make_energy, shape):
        def make(b):
            energy, x_data, x_model = make_energy(), torch.rand(b, *shape), torch.rand(b, *shape)
            optimizer = torch.optim.Adam(energy.parameters(), lr=1e-4, betas=(0.0, 0.999))
            return optimiser_step(energy, lambda: ebm.contrastive_loss(energy, x_data, x_model, s["alpha"])[0],
                                  optimizer)
        return make

    def classifier_step(b):
        net, x, y = MNISTClassifier(s["classifier_width"]), torch.rand(b, 1, 28, 28), torch.arange(b) % 10
        return optimiser_step(net, lambda: F.cross_entropy(net(x), y))

    def flow_step(build, shape, dequantize=False):     # one Adam step of flows.train_flow
        def make(b):
            flow, x = build(), torch.rand(b, *shape)
            return optimiser_step(flow, lambda: -flow.log_prob(flows.dequantize(x) if dequantize else x).mean())
        return make

    def binary_step(build):                            # one Adam step of vae.train (binarised afresh)
        def make(b):
            model, x = build(), torch.rand(b, 1, 28, 28)
            return optimiser_step(model, lambda: model.loss(torch.bernoulli(x))[0])
        return make

    def no_grad(build, run):                           # a pass without gradients over b examples
        def make(b):
            model = build().eval()
            x = torch.bernoulli(torch.rand(b, 1, 28, 28))
            return lambda: torch.no_grad()(run)(model, x)
        return make

    def importance(k):                                 # log_importance_weights of 100 digits, one chunk of k samples
        model, x = binary_vae().eval(), torch.bernoulli(torch.rand(min(100, s["n_iw_test"]), 1, 28, 28))
        return lambda: log_importance_weights(model, x, k)

    def covariance(n):                                 # the Gaussian on the logits: torch.cov of n digits
        z = torch.randn(784, n)
        return lambda: torch.cov(z)

    toy = lambda: ebm.EnergyMLP(2, hidden=s["toy_hidden"])                      # noqa: E731
    digits = lambda: ebm.EnergyCNN(s["image_width"])                            # noqa: E731
    ring_flow = lambda: flows.RealNVP(2, n_layers=s["flow_layers"], hidden=s["flow_hidden"])   # noqa: E731
    digit_flow = lambda: flows.RealNVP(784, n_layers=s["digit_flow_layers"], hidden=s["digit_flow_hidden"],  # noqa: E731
                                       image_shape=(28, 28), logit_alpha=s["logit_alpha"], actnorm=True)
    made = lambda: flows.MADE(784, tuple(s["made_hidden"]), direct=True)       # noqa: E731
    binary_vae = lambda: VAE(hidden=tuple(s["vae_hidden"]), z_dim=32)          # noqa: E731
    epoch_steps = s["likelihood_epochs"] * math.ceil(s["n_train"] / 128)
    test_chunks, chunk = _chunks(s["n_test_binary"], 1_000)
    flow_test_chunks, flow_chunk = _chunks(s["n_eval"], 500)
    iw_batches = math.ceil(s["n_iw_test"] / 100)
    return [
        Phase("toy EBM: Langevin steps", s["toy_steps"] * s["toy_chain"], 256, langevin_step(toy, (2,)),
              small=(8, 16)),
        Phase("toy EBM: updates", s["toy_steps"], 256, update(toy, (2,)), small=(8, 16)),
        Phase("digit EBM: Langevin steps", s["image_steps"] * s["image_chain"], s["image_batch"],
              langevin_step(digits, (1, 28, 28)), small=(2, 4)),
        Phase("digit EBM: updates", s["image_steps"], s["image_batch"], update(digits, (1, 28, 28)), small=(2, 4)),
        _batched("feature net", s["classifier_epochs"], s["n_classifier"], classifier_step, 128, small=(8, 16)),
        Phase("short-run samples from noise", 2 * s["image_chain"], s["n_eval"], langevin_step(digits, (1, 28, 28)),
              small=(2, 4)),
        Phase("ring flow", s["flow_steps"], 256, flow_step(ring_flow, (2,)), small=(8, 16)),
        Phase("MADE on binary digits", epoch_steps, 128, binary_step(made), small=(2, 4)),
        Phase("VAE on binary digits", epoch_steps, 128, binary_step(binary_vae), small=(2, 4)),
        Phase("MADE: exact test log-likelihood", test_chunks, chunk,
              no_grad(made, lambda m, x: m.log_prob(x)), small=(50, 100)),
        Phase("VAE: importance-weighted bound", iw_batches * math.ceil(s["iw_samples"] / 250),
              min(250, s["iw_samples"]), importance),
        Phase("MADE: 36 samples, pixel by pixel", 784, 36, no_grad(made, lambda m, x: m(x)), small=(2, 4)),
        Phase("Gaussian on the logits: covariance", 1, s["n_train"], covariance, small=(100, 200)),
        Phase("digit flow", s["digit_flow_steps"], s["digit_flow_batch"], flow_step(digit_flow, (1, 28, 28), True),
              small=(2, 4)),
        Phase("digit flow: test log-likelihood", flow_test_chunks, flow_chunk,
              no_grad(digit_flow, lambda f, x: f.log_prob(x.flatten(1) * 0.99)), small=(2, 4)),
    ]

def few_labels(s: dict) -> list[Phase]:
    """Lab 10b. The loops on MNIST (the from-scratch CNN of each draw, PCA, the autoencoder, the random
    network's features, the linear probes, the k-NN graph, label propagation, self-training) and on CIFAR-10
    (the random and SimCLR trunks' features, SimCLR, the probes, the graph, propagation, the from-scratch
    trunk). The k-NN graph costs N x N: one step is a block of query rows against all N rows, linear in the
    block. Left out: loading the data, drawing the labels, class mass normalisation, plotting."""
    from .models import autoencoder as ae
    from .models import semi_supervised as semi
    from .models import ssl
    from .models.baselines import PCA
    from .models.mnist_classifier import MNISTClassifier

    draws = s["label_draws"]
    mnist_rows, cifar_rows = s["n_graph"] + s["n_test"], s["cifar_pool"] + s["cifar_test"]
    trunk = lambda: ssl.make_backbone(s["arch"], s["width"])                        # noqa: E731
    dim = trunk().feature_dim

    def scratch_step(build, shape, lr):                 # one AdamW step of train_from_scratch
        def make(b):
            net, x, y = build(), torch.rand(b, *shape), torch.arange(b) % 10
            opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
            augment = semi.random_shift if shape[0] == 1 else ssl.random_crop_flip
            return optimiser_step(net, lambda: F.cross_entropy(net(augment(x)), y), opt)
        return make

    def predictions(build, shape):                      # semi.predict on test images
        def make(b):
            net, x = build().eval(), torch.rand(b, *shape)
            return lambda: semi.predict(net, x, batch_size=b)
        return make

    def probe(dim_):                                    # one L-BFGS evaluation of the probe's loss on b rows
        def make(b):
            linear, x, y = nn.Linear(dim_, 10), torch.randn(b, dim_), torch.arange(b) % 10
            return lambda: F.cross_entropy(linear(x), y).backward()
        return make

    def knn_block(rows, dim_):                          # knn_graph: b query rows against all the rows
        x = torch.randn(rows, dim_)
        sq = x.pow(2).sum(1)

        def make(b):
            q = x[:b]
            return lambda: torch.addmm(sq[None, :], q, x.T, alpha=-2.0).topk(s["n_neighbours"], dim=1, largest=False)
        return make

    def propagation(n):                                 # one step of eq. (10.6) on a graph of n nodes
        P = semi.transition_matrix(semi.knn_graph(torch.randn(n, 8), s["n_neighbours"]))
        scores, labelled = torch.rand(n, 10), torch.arange(10)
        return lambda: semi.propagation_step(P, scores, labelled, torch.eye(10))

    def pca(n):
        x = torch.rand(n, 784)
        return lambda: PCA(s["pca_dim"]).fit(x)

    def autoencoder_step(b):
        model, x = ae.Autoencoder(784, tuple(s["ae_hidden"]), s["ae_code"]), torch.rand(b, 1, 28, 28)
        return optimiser_step(model, lambda: ae.autoencoder_loss(model, x, loss="bce")[0])

    def codes(b):                                       # ae.encode_batched: the encoder only
        model, x = ae.Autoencoder(784, tuple(s["ae_hidden"]), s["ae_code"]).eval(), torch.rand(b, 1, 28, 28)

        def run():
            with torch.no_grad():
                return model.encode(x)
        return run

    def features(build, shape):
        def make(b):
            net, x = build().eval(), torch.rand(b, *shape)

            def run():
                with torch.no_grad():
                    return net(x)
            return run
        return make

    def simclr_step(b):
        model = ssl.to_channels_last(ssl.SimCLR(trunk(), hidden=512), "cpu")
        opt = torch.optim.SGD(model.parameters(), lr=s["simclr_lr"], momentum=0.9, nesterov=True, weight_decay=5e-4)
        x = torch.rand(b, 3, 32, 32)

        def loss():
            z1, z2 = model(torch.cat([ssl.simclr_augment(x), ssl.simclr_augment(x)])).float().chunk(2)
            return ssl.nt_xent(z1, z2, s["temperature"])
        return optimiser_step(model, loss, opt)

    cnn = lambda: MNISTClassifier(s["cnn_width"])                                   # noqa: E731
    conv = lambda: MNISTClassifier(s["cnn_width"]).body[:7]                         # noqa: E731
    classifier = lambda: ssl.Classifier(trunk(), 10)                                # noqa: E731
    n_draws = sum(draws.values())
    ae_steps = s["ae_epochs"] * math.ceil(s["n_pool"] / 128)
    simclr_steps = min(s["simclr_steps"] or math.inf, s["simclr_epochs"] * (s["cifar_pool"] // s["simclr_batch"]))
    conv_dim = 2 * s["cnn_width"] * 7 * 7
    probe_steps = 200 * 1.25                                                        # L-BFGS iterations, line search
    pseudo_rows = {n: n + 10 * s["pseudo_per_class"] for n in draws}
    phases = []
    for n, r in draws.items():
        phases += [Phase(f"MNIST: CNN from scratch, {n} labels", r * s["scratch_steps"], min(s["scratch_batch"], n),
                         scratch_step(cnn, (1, 28, 28), 1e-3), mixed=True),
                   Phase(f"CIFAR-10: trunk from scratch, {n} labels", r * s["cifar_scratch_steps"], min(128, n),
                         scratch_step(classifier, (3, 32, 32), s["cifar_scratch_lr"]), mixed=True)]
    phases += [
        _batched("MNIST: the CNNs' test predictions", n_draws, s["n_test"], predictions(cnn, (1, 28, 28)), 1000),
        Phase("MNIST: PCA of the training images", 1, s["n_pool"], pca, small=(1_000, 2_000)),
        Phase("MNIST: the autoencoder", ae_steps, 128, autoencoder_step, mixed=True),
        _batched("MNIST: the autoencoder's codes", 1, mnist_rows, codes, 2048),
        _batched("MNIST: the random network's features", 1, mnist_rows, features(conv, (1, 28, 28)), 2_000),
        *[Phase(f"MNIST: linear probes on {d} features, {n} labels", r * probe_steps, n, probe(d), small=(2, 4))
          for n, r in draws.items() for d in (784, s["pca_dim"], conv_dim, s["ae_code"])],
        Phase("MNIST: the k-NN graph of the PCA features", 1, mnist_rows, knn_block(mnist_rows, s["pca_dim"]),
              small=(64, 128)),
        Phase("MNIST: label propagation", n_draws * s["propagation_steps"], mnist_rows, propagation, small=(500, 1_000)),
        *[Phase(f"MNIST: self-training, {n} labels", r * (s["pseudo_rounds"] + 1) * probe_steps, pseudo_rows[n],
                probe(s["ae_code"]), small=(64, 128)) for n, r in draws.items()],
        _batched("CIFAR-10: features of the random and SimCLR trunks", 2, cifar_rows, features(trunk, (3, 32, 32)), 1024,
                 mixed=True),
        Phase("CIFAR-10: SimCLR", simclr_steps, s["simclr_batch"], simclr_step, mixed=True, budget=s["simclr_budget"]),
        *[Phase(f"CIFAR-10: linear probes, {n} labels", 2 * r * probe_steps, n, probe(dim), small=(2, 4))
          for n, r in draws.items()],
        Phase("CIFAR-10: the k-NN graph of the SimCLR features", 1, cifar_rows, knn_block(cifar_rows, dim),
              small=(64, 128)),
        Phase("CIFAR-10: label propagation", n_draws * s["propagation_steps"], cifar_rows, propagation,
              small=(500, 1_000)),
        _batched("CIFAR-10: the trunks' test predictions", n_draws, s["cifar_test"], predictions(classifier, (3, 32, 32)),
                 1000, mixed=True),
    ]
    return phases


WORKLOADS: dict[str, Callable[[dict], list[Phase]]] = {
    "01_baselines": baselines,
    "02_sparse_coding": sparse_coding,
    "03_rbm_dbn": rbm_dbn,
    "04_autoencoders": autoencoders,
    "05_vae": vae,
    "06_gan": gan,
    "07_self_supervised": self_supervised,
    "07_pretext_tasks": pretext_tasks,
    "08_word2vec": word2vec,
    "08_bert": bert,
    "09_unsupervised_translation": translation,
    "10_energy_based_models": energy_based_models,
    "10_few_labels": few_labels,
}
