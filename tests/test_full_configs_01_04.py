"""Every ``full`` configuration of labs 1-4 builds and takes a training step on the CPU (issue 17).

The course rule: every ``full`` configuration must at least build and take a step on the CPU in a test,
so that no GPU user meets a shape or dtype bug first. Each test reads the lab's ``full`` sizes from its
solution notebook with :func:`unsuplab.labs.profile_settings` (the numbers the lab uses, never a copy),
builds the models the lab trains with the same ``unsuplab`` calls the lab makes, and runs one or two
optimisation steps at full width and full batch shape. Random images of MNIST's shape and range stand
in for the 60,000 real ones (a batch of the real shape is enough); the natural-image patches are the
real ones (scikit-image ships the photographs). What is cut is the number of repetitions only: epochs,
FISTA steps and AIS temperatures change how long a run takes, not the shape of any tensor. The networks
that ``ul.train.fit`` trains also step under the autocast a GPU gets (bfloat16 on an A100 or H100,
float16 with a gradient scaler on a T4), so that a dtype mismatch shows up here too.
"""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import unsuplab as ul
from unsuplab.labs import profile_settings
from unsuplab.models import dec
from unsuplab.models import sparse_coding as sc
from unsuplab.models.autoencoder import (Autoencoder, ConvAutoencoder, binary_cross_entropy,
                                         encode_batched, gaussian_noise, kl_sparsity_penalty, mask_noise,
                                         reconstruction_error, train_autoencoder, train_layerwise)
from unsuplab.models.baselines import PCA, KMeans
from unsuplab.models.rbm import (DBN, RBM, ais_log_z, average_log_prob, base_rate_bias, static_binarize,
                                 cd_gradient, classification_error, sigmoid_mlp, train_rbm)

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
CODE_STEPS = 2    # FISTA steps per batch while learning a dictionary (the labs use 100: a count, not a shape)
AIS_BETAS = 10    # AIS intermediate distributions (the lab uses 14,500: a count, not a shape)
FP16_STEPS = 8    # steps under float16, enough for the GradScaler to find a scale whose gradients are finite


def full(lab: str) -> dict:
    """The ``full`` settings of ``solutions/<lab>.ipynb``: its parameters cell and its rt.pick(full=...)."""
    return profile_settings(SOLUTIONS / f"{lab}.ipynb", "full")


def notebook_literal(lab: str, name: str):
    """The literal a code cell of the solution assigns to ``name`` (``k_linear = 16``), the same in every
    profile: ``profile_settings`` reads it too, when the lab gives it one value only."""
    settings = full(lab)
    if name not in settings:
        raise LookupError(f"solutions/{lab}.ipynb assigns no single literal to {name!r}: has the lab changed?")
    return settings[name]


def mnist_like(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 1, 28, 28) float32 in [0, 1]: the shape, dtype and range of ``ul.data.mnist`` images."""
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_stepped(model: torch.nn.Module, before: dict[str, torch.Tensor], history, n_steps: int, what: str):
    """The history logged ``n_steps`` finite losses, every weight is finite, and the weights moved."""
    losses = history.steps.get("loss", [])
    assert len(losses) == n_steps, f"{what}: expected {n_steps} optimisation steps, the history has {len(losses)}"
    assert all(math.isfinite(v) for v in losses), f"{what}: non-finite loss {losses}"
    after = dict(model.named_parameters())
    assert all(torch.isfinite(p).all() for p in after.values()), f"{what}: non-finite weights after the step"
    moved = [name for name, p in after.items() if not torch.equal(p.detach(), before[name])]
    assert moved, f"{what}: no parameter changed in {n_steps} steps"


@pytest.fixture(autouse=True)
def one_thread_seeded():
    """Seeded, on one CPU thread: these steps are many small operations, and when the cores are shared two
    threads wait on each other (the K-means seeding took 3 s on one thread and 18 s on two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# Lab 1: PCA and K-means
# ----------------------------------------------------------------------------------------------

def test_full_01_baselines_pca_and_kmeans_features():
    s = full("01_baselines")
    n_centroids = s["n_centroids"]
    x_flat = mnist_like(n_centroids + n_centroids // 10).reshape(-1, 784)         # (N, 784), N > K

    pca = PCA().fit(x_flat)                       # all 784 components: the lab's variance curve
    assert pca.components_.shape == (784, 784) and pca.components_.dtype == torch.float32
    assert pca.explained_variance_ratio_.sum().item() == pytest.approx(1.0, abs=1e-4)
    pca50 = PCA(50).fit(x_flat)
    assert pca50.transform(x_flat).shape == (len(x_flat), 50)

    # the feature K-means: k-means++ seeding of n_centroids centroids, then one Lloyd step (eqs. 1.5-1.6)
    kmeans = KMeans(n_centroids, n_init=1, max_iter=1, seed=s["seed"]).fit(x_flat)
    assert kmeans.cluster_centers_.shape == (n_centroids, 784) and kmeans.n_iter_ == 1
    assert math.isfinite(kmeans.inertia_) and kmeans.labels_.shape == (len(x_flat),)
    # the update step moved the centroids: some are now the mean of several images, not the one they
    # were seeded at
    assert torch.cdist(kmeans.cluster_centers_, x_flat).min(1).values.max() > 1e-3
    features = kmeans.triangle_features(x_flat)
    assert features.shape == (len(x_flat), n_centroids)
    assert torch.isfinite(features).all() and (features >= 0).all()


# ----------------------------------------------------------------------------------------------
# Lab 2: sparse coding of natural-image patches and of whole digits
# ----------------------------------------------------------------------------------------------

def test_full_02_sparse_coding_patches():
    s = full("02_sparse_coding")
    p, batch_size, n_atoms = s["patch_size"], s["batch_size"], s["n_atoms"]
    train_names = [name for name in ul.data.NATURAL_IMAGES if name != s["test_image"]]
    x = torch.as_tensor(ul.data.image_patches(p, batch_size, images=ul.data.natural_images(train_names),
                                              seed=s["seed"]))                                  # (B, p*p)
    assert x.shape == (batch_size, p * p) and x.dtype == torch.float32

    # n = batch_size and one epoch: one code step (FISTA on the whole batch) and one dictionary step
    model = sc.SparseCoding(n_atoms, lam=s["lam"], n_epochs=1, batch_size=batch_size, n_code_iter=CODE_STEPS,
                            seed=s["seed"]).fit(x)
    assert len(model.history_) == 1 and math.isfinite(model.history_[0])
    assert model.D_.shape == (p * p, n_atoms) and torch.isfinite(model.D_).all()
    assert torch.allclose(model.D_.norm(dim=0), torch.ones(n_atoms), atol=1e-4)
    # the dictionary step lowered the objective of eq. 2.1 (codes recomputed as in learning)
    assert model.score(x, n_iter=CODE_STEPS) < model.history_[0]
    assert model.atoms.reshape(-1, 1, p, p).shape == (n_atoms, 1, p, p)


def test_full_02_sparse_coding_digits():
    s = full("02_sparse_coding")
    batch_size, n_atoms = s["batch_size"], s["mnist_atoms"]
    x = mnist_like(batch_size).reshape(batch_size, -1)                                  # (B, 784)
    model = sc.SparseCoding(n_atoms, lam=s["mnist_lam"], n_epochs=1, batch_size=batch_size, n_code_iter=1,
                            seed=s["seed"]).fit(x)
    assert len(model.history_) == 1 and math.isfinite(model.history_[0])
    assert model.D_.shape == (784, n_atoms) and torch.isfinite(model.D_).all()
    z = model.transform(x[:64], n_iter=1)
    assert z.shape == (64, n_atoms) and torch.isfinite(z).all()
    assert model.atoms.reshape(-1, 1, 28, 28).shape == (n_atoms, 1, 28, 28)


# ----------------------------------------------------------------------------------------------
# Lab 3: RBMs trained by CD-1 and PCD-1, AIS, and the deep belief network
# ----------------------------------------------------------------------------------------------

def test_full_03_rbm_cd1_pcd1_and_ais():
    s = full("03_rbm_dbn")
    B, n_hidden = s["batch_size"], s["n_hidden"]
    x = static_binarize(mnist_like(2 * B), seed=0)                                      # (2B, 784) in {0, 1}

    # CD-1, one update as the lab's loop makes it (the library's gibbs and cd_gradient are what the
    # lab's self-checks compare the student's functions with)
    rbm_cd1 = RBM(784, n_hidden).init_visible_bias(x)
    before = snapshot(rbm_cd1)
    v0 = x[:B]
    vk = rbm_cd1.gibbs(v0, 1)
    dW, db, dc = cd_gradient(rbm_cd1, v0, vk)
    assert (dW.shape, db.shape, dc.shape) == ((784, n_hidden), (784,), (n_hidden,))
    with torch.no_grad():
        rbm_cd1.W += s["lr_cd"] * dW
        rbm_cd1.b += s["lr_cd"] * db
        rbm_cd1.c += s["lr_cd"] * dc
    assert not torch.equal(rbm_cd1.W.detach(), before["W"]) and torch.isfinite(rbm_cd1.W).all()

    # PCD-1 through train_rbm: two updates of a batch of B persistent chains
    rbm_pcd = RBM(784, n_hidden)
    before = snapshot(rbm_pcd)
    history = train_rbm(rbm_pcd, x, epochs=1, batch_size=B, lr=s["lr_pcd"], k=1, persistent=True,
                        momentum=s["momentum"], weight_decay=s["weight_decay"], progress_bar=False)
    assert math.isfinite(history.last("recon_error"))
    assert not torch.equal(rbm_pcd.W.detach(), before["W"]) and torch.isfinite(rbm_pcd.W).all()
    assert rbm_pcd.fantasy_particles.shape == (B, 784)

    # the small RBM whose log Z the lab computes exactly, and AIS with the lab's chains and repeats
    rbm_small = RBM(784, s["n_hidden_exact"])
    train_rbm(rbm_small, x, epochs=1, batch_size=B, lr=0.05, persistent=True, progress_bar=False)
    ais = ais_log_z(rbm_pcd, n_chains=s["ais_chains"], n_repeats=s["ais_repeats"], n_betas=AIS_BETAS,
                    base_bias=base_rate_bias(x))
    assert ais.log_z_runs.shape == (s["ais_repeats"],) and ais.log_w.shape == (s["ais_repeats"], s["ais_chains"])
    assert math.isfinite(ais.log_z) and math.isfinite(average_log_prob(rbm_pcd, x, ais.log_z))
    assert math.isfinite(ais_log_z(rbm_small, n_chains=s["ais_chains"], n_repeats=s["ais_repeats"],
                                   n_betas=AIS_BETAS).log_z)


def test_full_03_dbn_pretrain_and_finetune():
    s = full("03_rbm_dbn")
    sizes, B = s["dbn_sizes"], s["batch_size"]
    x = mnist_like(B).reshape(B, -1)                                              # (B, 784) grey digits
    y = torch.randint(0, 10, (B,))

    dbn = DBN(sizes)
    before = snapshot(dbn)
    histories = dbn.pretrain(x, epochs=1, batch_size=B, lr=0.05, k=1, momentum=s["momentum"],
                             weight_decay=s["weight_decay"], progress_bar=False)
    assert len(histories) == len(sizes) - 1 and all(math.isfinite(h.last("recon_error")) for h in histories)
    for l, rbm in enumerate(dbn.rbms):      # one CD-1 update per layer, on the codes of the layer below
        assert rbm.W.shape == (sizes[l], sizes[l + 1])
        assert not torch.equal(rbm.W.detach(), before[f"rbms.{l}.W"]), f"RBM {l + 1} did not move"
    assert dbn.sample(4, n_gibbs=2).shape == (4, sizes[0])

    # fine-tuning, as the lab's finetune(): SGD with momentum, a linear decay, one step of a full batch
    for net in (dbn.to_classifier(10), sigmoid_mlp(sizes, 10)):
        assert net(x).shape == (B, 10)
        finetune_one_step(net, x, y, s)


def classification_loss(net, batch):
    xb, yb = batch
    return F.cross_entropy(net(xb), yb)          # (B, 784) -> (B, 10)


def finetune_one_step(net, x, y, s):
    """One step of the lab's finetune(): SGD with momentum, the rate falling linearly over its epochs."""
    epochs = s["finetune_epochs"]
    optimizer = torch.optim.SGD(net.parameters(), lr=s["lr_finetune"], momentum=0.9)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1 - epoch / epochs)
    loader = ul.train.TensorBatches(x[:s["finetune_batch"]], y[:s["finetune_batch"]], batch_size=s["finetune_batch"])
    before = snapshot(net)
    history = ul.train.fit(net, classification_loss, loader, epochs=1, optimizer=optimizer, scheduler=schedule,
                           progress_bar=False, eval_fn=lambda net: {"test_error": classification_error(net, x, y)})
    assert_stepped(net, before, history, 1, f"fine-tuning {type(net).__name__}")
    assert 0.0 <= history.last("test_error") <= 1.0


# ----------------------------------------------------------------------------------------------
# Lab 4: deep, linear, sparse, denoising, convolutional and stacked autoencoders
# ----------------------------------------------------------------------------------------------

def bce_loss(model, xb):
    """The lab's loss for its first deep autoencoder: eq. 4.3 from the logits, mean over the batch."""
    return binary_cross_entropy(model.decode_logits(model.encode(xb)), xb).mean()    # (B, 784) logits


def test_full_04_deep_autoencoders():
    s = full("04_autoencoders")
    hidden, B, lr = s["hidden"], s["batch_size"], s["lr"]
    x = mnist_like(B)                                                             # (B, 1, 28, 28)

    # the deep autoencoder trained with cross-entropy, through ul.train.fit as the lab does
    ae_bce = Autoencoder(784, hidden, code_dim=s["k_main"])
    assert ae_bce.sizes == [784, *hidden, s["k_main"]]
    before = snapshot(ae_bce)
    history = ul.train.fit(ae_bce, bce_loss, ul.train.TensorBatches(x, batch_size=B), epochs=1, lr=lr, progress_bar=False)
    assert_stepped(ae_bce, before, history, 1, "deep autoencoder (cross-entropy)")
    assert ae_bce(x).shape == x.shape

    # the linear autoencoder compared with PCA
    k_linear = notebook_literal("04_autoencoders", "k_linear")
    linear_ae = Autoencoder(784, (), k_linear, activation=None, output="linear")
    before = snapshot(linear_ae)
    history = train_autoencoder(linear_ae, x, epochs=1, batch_size=B, lr=lr, loss="se", progress_bar=False)
    assert_stepped(linear_ae, before, history, 1, "linear autoencoder")
    assert linear_ae.decoder[0].weight.shape == (784, k_linear)

    # one deep autoencoder per code size, trained with the squared error
    for k in s["code_sizes"]:
        deep = Autoencoder(784, hidden, k)
        before = snapshot(deep)
        history = train_autoencoder(deep, x, epochs=1, batch_size=B, lr=lr, loss="se", progress_bar=False)
        assert_stepped(deep, before, history, 1, f"deep autoencoder, k = {k}")
        assert encode_batched(deep, x).shape == (B, k)
        assert reconstruction_error(deep, x).shape == (B,)

    # stacked: one step per layer pair, then one step of fine-tuning end to end
    stacked = Autoencoder(784, hidden, s["k_main"])
    before = snapshot(stacked)
    histories = train_layerwise(stacked, x, steps_per_layer=1, batch_size=B, lr=lr, loss="se", progress_bar=False)
    assert len(histories) == len(hidden) + 1
    for l, h in enumerate(histories):
        assert len(h.steps["loss"]) == 1 and math.isfinite(h.steps["loss"][0]), f"layer pair {l + 1}"
    for l, layer in enumerate(stacked.encoder):
        assert not torch.equal(layer.weight.detach(), before[f"encoder.{l}.weight"]), f"layer pair {l + 1} did not move"
    before = snapshot(stacked)
    history = train_autoencoder(stacked, x, epochs=1, max_steps=1, batch_size=B, lr=lr, loss="se",
                                progress_bar=False)
    assert_stepped(stacked, before, history, 1, "stacked autoencoder, fine-tuning")


def test_full_04_sparse_and_denoising_autoencoders():
    s = full("04_autoencoders")
    units, B, lr = s["shallow_units"], s["batch_size"], s["lr"]
    kl_weight, rho = s["kl_weight"], s["rho"]
    x = mnist_like(B)

    sparsities = {"none": None, "L1": ("l1", s["l1_weight"]),
                  "KL": lambda h: kl_weight * kl_sparsity_penalty(h, rho)}
    corruptions = {f"mask {nu}": (lambda xb, nu=nu: mask_noise(xb, nu)) for nu in s["mask_levels"]}
    corruptions.update({f"gauss {sigma}": (lambda xb, sigma=sigma: gaussian_noise(xb, sigma))
                        for sigma in s["gauss_levels"]})
    runs = [dict(sparsity=sparsity, name=f"sparsity {name}") for name, sparsity in sparsities.items()]
    runs += [dict(corruption=corruption, name=f"denoising, {name}") for name, corruption in corruptions.items()]
    for run in runs:
        name = run.pop("name")
        model = Autoencoder(784, (), units, code_activation="sigmoid")
        before = snapshot(model)
        history = train_autoencoder(model, x, epochs=1, batch_size=B, lr=lr, loss="bce", progress_bar=False, **run)
        assert_stepped(model, before, history, 1, name)
        assert model.filters().shape == (units, 784)
        h = encode_batched(model, x)
        assert h.shape == (B, units) and bool(((h >= 0) & (h <= 1)).all())


def test_full_04_convolutional_autoencoder():
    s = full("04_autoencoders")
    B = s["batch_size"]
    x = mnist_like(B)
    conv = ConvAutoencoder(s["k_main"], s["conv_channels"])
    assert conv.encode(x).shape == (B, s["k_main"])
    before = snapshot(conv)
    history = train_autoencoder(conv, x, epochs=1, batch_size=B, lr=s["lr"], loss="bce", progress_bar=False)
    assert_stepped(conv, before, history, 1, "convolutional autoencoder")
    assert conv(x).shape == x.shape


def test_full_04_dec_on_the_deep_autoencoders_codes():
    s = full("04_autoencoders")
    x = mnist_like(600)
    ae = Autoencoder(784, tuple(s["hidden"]), s["dec_code_size"])
    codes = ae.encode(x).detach()
    model = dec.DEC(ae, KMeans(10, n_init=1, seed=0).fit(codes).cluster_centers_)
    before = snapshot(model)
    history = dec.train_dec(model, x, steps=2, batch_size=256, update_interval=s["dec_interval"], seed=0)
    assert len(history.steps["loss"]) == 2 and all(math.isfinite(v) for v in history.steps["loss"])
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())
    assert model.assign(x).shape == (600, 10)


# ----------------------------------------------------------------------------------------------
# Mixed precision: the dtypes ul.train.fit gives these networks on a GPU
# ----------------------------------------------------------------------------------------------

@pytest.fixture(params=[torch.bfloat16, torch.float16], ids=["bf16 (A100, H100)", "fp16 with a scaler (T4)"])
def gpu_precision(request, monkeypatch):
    """fit() autocasts as it would on a CUDA card (bfloat16 at compute capability >= 8.0, float16 with a
    GradScaler below), here on the CPU: a dtype mismatch in a model or a loss shows up without a GPU.
    (CPU autocast lowers fewer operations than CUDA's; the matrix products and convolutions are lowered.)"""
    monkeypatch.setattr(ul.train, "amp_dtype", lambda device: request.param)
    return request.param


def test_full_03_finetune_mixed_precision(gpu_precision):
    s = full("03_rbm_dbn")
    B = s["finetune_batch"]
    x, y = mnist_like(B).reshape(B, -1), torch.randint(0, 10, (B,))
    finetune_one_step(DBN(s["dbn_sizes"]).to_classifier(10), x, y, s)


def test_full_04_autoencoders_mixed_precision(gpu_precision):
    s = full("04_autoencoders")
    B, lr, k = s["batch_size"], s["lr"], s["k_main"]
    # float16: the GradScaler starts at a scale of 2^16 and skips every step whose scaled gradients
    # overflow, halving the scale; with losses summed over 784 pixels the linear and convolutional
    # autoencoders lose their first 5 steps so (by design, and harmless over a lab's thousands of steps)
    n_steps = 1 if gpu_precision is torch.bfloat16 else FP16_STEPS
    x = mnist_like(B * n_steps)
    kl_weight, rho = s["kl_weight"], s["rho"]

    ae_bce = Autoencoder(784, s["hidden"], code_dim=k)
    before = snapshot(ae_bce)
    history = ul.train.fit(ae_bce, bce_loss, ul.train.TensorBatches(x, batch_size=B), epochs=1, lr=lr, progress_bar=False)
    assert_stepped(ae_bce, before, history, n_steps, f"deep autoencoder (cross-entropy) under {gpu_precision}")

    runs = {   # the squared error under autocast: the linear one (the deep one differs only in its loss)
        "linear": (Autoencoder(784, (), notebook_literal("04_autoencoders", "k_linear"), activation=None,
                               output="linear"), dict(loss="se")),
        "sparse (KL)": (Autoencoder(784, (), s["shallow_units"], code_activation="sigmoid"),
                        dict(loss="bce", sparsity=lambda h: kl_weight * kl_sparsity_penalty(h, rho))),
        "denoising (mask)": (Autoencoder(784, (), s["shallow_units"], code_activation="sigmoid"),
                             dict(loss="bce", corruption=lambda xb: mask_noise(xb, s["mask_levels"][-1]))),
        "convolutional": (ConvAutoencoder(k, s["conv_channels"]), dict(loss="bce")),
    }
    for name, (model, kwargs) in runs.items():
        before = snapshot(model)
        history = train_autoencoder(model, x, epochs=1, batch_size=B, lr=lr, progress_bar=False, **kwargs)
        assert_stepped(model, before, history, n_steps, f"{name} autoencoder under {gpu_precision}")
