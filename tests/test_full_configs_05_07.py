"""Every ``full`` configuration of labs 5, 6, 7 and 7b builds and takes a step on the CPU (issue 17).

The course rule: no GPU user may be the first to meet a shape or dtype bug of a ``full`` run. Each test
reads the lab's ``full`` settings from its solution notebook (``labs.profile_settings``, and for an
argument written inside a call, ``labs.call_settings``; never a copy of the numbers), builds the models the lab trains with those settings, and runs one (or two)
optimisation steps through the function the lab trains with, on a batch of the real shape. The data
are synthetic where the real set is large (random grey levels of MNIST's shape, random CIFAR-10-shaped
images): a batch of the right shape and range is what a shape or dtype bug needs.

Lab 7's ResNet-18 costs 10 to 25 s per step of 512 images on a shared 2-core CPU; one pretext task (RotNet, the
lab's 128 images x 4 rotations = 512) runs at the full batch, the others at ``REDUCED_BATCH`` images so
that the file stays within its minute. Their width, depth, heads, losses and memory bank are the full ones.
"""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import unsuplab as ul
from unsuplab.labs import call_settings, profile_settings
from unsuplab.models import gan, ssl, vae
from unsuplab.models.mnist_classifier import MNISTClassifier, classify, train_classifier

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
REDUCED_BATCH = 16  # lab 7's pretext tasks other than RotNet: images per step (the lab's full batch is 512)


def call_argument(lab: str, callee: str, keyword: str, first_arg: str | None = None):
    """The ``full`` value of ``keyword=`` in the solution's calls of ``callee`` (see ``call_settings``)."""
    values = call_settings(SOLUTIONS / f"{lab}.ipynb", "full", callee, first_arg=first_arg)
    assert keyword in values, f"expected one value of {callee}({keyword}=...) in {lab}, found {values}"
    return values[keyword]


def full_settings(lab: str, *required: str) -> dict:
    """``profile_settings(solution, "full")``, checking that the names in ``required`` are there."""
    settings = profile_settings(SOLUTIONS / f"{lab}.ipynb", "full")
    missing = [name for name in required if name not in settings]
    assert not missing, f"{lab}: no single literal value for {missing}: has the lab changed?"
    return settings


def snapshot(*models: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for m in models for p in m.parameters()]


def changed(before: list[torch.Tensor], *models: torch.nn.Module) -> bool:
    after = [p.detach() for m in models for p in m.parameters()]
    return len(before) == len(after) and any(not torch.equal(a, b) for a, b in zip(before, after))


def mnist_like(n: int, seed: int = 0) -> torch.Tensor:
    """Random grey levels of MNIST's shape and range: (n, 1, 28, 28) in [0, 1]."""
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def cifar_like(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and labels of CIFAR-10's shape and range: (n, 3, 32, 32) in [0, 1], (n,) in 0..9."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(10, (n,), generator=g)


def finite(history_or_value, key: str = "loss") -> bool:
    if isinstance(history_or_value, ul.train.History):
        values = history_or_value.steps[key]
        return len(values) >= 1 and all(math.isfinite(v) for v in values)
    return math.isfinite(float(history_or_value))


# ------------------------------------------------------------------------------------------------
# Lab 5: the MNIST VAE, the beta-VAEs on 64 x 64 sprites, the VQ-VAE
# ------------------------------------------------------------------------------------------------

def test_full_05_vae_mnist_vae_and_vqvae_step():
    s = full_settings("05_vae", "batch_size")
    B = s["batch_size"]
    x = mnist_like(B)
    x_val = vae.binarize(mnist_like(16, seed=1))

    torch.manual_seed(s["seed"])
    model = vae.VAE(hidden=s["hidden"], z_dim=s["z_dim"])
    assert [m.out_features for m in model.encoder if hasattr(m, "out_features")] == list(s["hidden"])
    before = snapshot(model)
    history = vae.train(model, x, epochs=s["epochs"], batch_size=B, lr=s["lr"], lr_final=s["lr_final"],
                        x_val=x_val, device="cpu", seed=s["seed"], max_steps=1, progress_bar=False)
    assert len(history.steps["loss"]) == 1 and finite(history) and finite(history, "neg_elbo")
    assert changed(before, model)
    assert model.sample(4).shape == (4, 1, 28, 28)

    torch.manual_seed(s["seed"])
    vq = vae.VQVAE(channels=s["vq_channels"], code_dim=s["code_dim"], n_codes=s["n_codes"],
                   commitment=s["commitment"], restart_after=s["vq_restart_after"])
    before = snapshot(vq)
    history = vae.train(vq, x, epochs=s["vq_epochs"], batch_size=B, lr=call_argument("05_vae", "train", "lr", "vq_model"), device="cpu", seed=s["seed"],
                        max_steps=1, progress_bar=False)
    assert finite(history) and finite(history, "perplexity") and changed(before, vq)
    assert vq.quantizer.codebook.shape == (s["n_codes"], s["code_dim"])
    assert vq.encode(vae.binarize(x[:8])).shape == (8, 7, 7)
    assert vq.reconstruct(x[:8]).shape == (8, 1, 28, 28)


def test_full_05_vae_beta_vaes_on_full_size_sprites_step():
    s = full_settings("05_vae", "batch_size")
    B, size = s["batch_size"], s["sprite_size"]
    x_spr, factors = ul.data.sprites(B, size=size, seed=s["seed"])   # the lab's generator, at full size
    assert x_spr.shape == (B, 1, size, size) and factors.shape == (B, 5)
    for beta in s["betas"]:
        torch.manual_seed(s["seed"])
        model = vae.VAE(image_shape=(1, size, size), hidden=s["sprite_hidden"], z_dim=s["sprite_z_dim"], beta=beta)
        before = snapshot(model)
        history = vae.train(model, x_spr, epochs=s["sprite_epochs"], batch_size=B, lr=call_argument("05_vae", "train", "lr", first_arg="model"),
                            binarize_data=False, device="cpu", seed=s["seed"], max_steps=1, progress_bar=False)
        assert finite(history) and finite(history, "kl") and changed(before, model)
        with torch.no_grad():
            mu, logvar = model.encode(x_spr[:16])
        assert mu.shape == logvar.shape == (16, s["sprite_z_dim"])
        assert model.decode_images(mu).shape == (16, 1, size, size)


# ------------------------------------------------------------------------------------------------
# Lab 6: the feature net, DCGAN, the conditional GAN, InfoGAN, CycleGAN, and chapter 5's VAE
# ------------------------------------------------------------------------------------------------

def test_full_06_gan_feature_net_trains():
    s = full_settings("06_gan")
    x, y = mnist_like(128), torch.randint(10, (128,), generator=torch.Generator().manual_seed(2))
    torch.manual_seed(s["seed"])
    untrained = MNISTClassifier(s["classifier_width"])        # what train_classifier builds from this seed
    net = train_classifier(x, y, epochs=s["classifier_epochs"], width=s["classifier_width"], seed=s["seed"],
                           device="cpu")                      # 128 images: one step of 128 per epoch
    assert changed(snapshot(untrained), net)
    features, probs = classify(net, x[:10])
    assert features.shape == (10, net.feature_dim) and probs.shape == (10, 10)
    assert torch.isfinite(features).all() and torch.allclose(probs.sum(1), torch.ones(10))


def test_full_06_gan_dcgan_step():
    s = full_settings("06_gan")
    B, z_dim = s["batch_size"], s["z_dim"]
    x_gan = gan.to_signed(mnist_like(B))
    torch.manual_seed(s["seed"])
    G, D = gan.DCGANGenerator(z_dim, s["width"]), gan.DCGANDiscriminator(s["width"])
    opt_G = torch.optim.Adam(G.parameters(), lr=s["lr"], betas=(s["beta1"], 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=s["lr"], betas=(s["beta1"], 0.999))
    before_G, before_D = snapshot(G), snapshot(D)
    z = torch.randn(B, z_dim)
    assert G(z).shape == (B, 1, 28, 28) and D(x_gan).shape == (B,)
    losses = gan.gan_step(G, D, opt_G, opt_D, x_gan, z)      # the reference of the lab's exercise 3
    assert all(finite(v) for v in losses.values())
    assert changed(before_G, G) and changed(before_D, D)
    assert gan.generate(G, torch.randn(4, z_dim)).shape == (4, 1, 28, 28)


def test_full_06_gan_conditional_gan_step(tmp_path):
    s = full_settings("06_gan", "cgan_width", "cgan_steps")
    B, z_dim, n_classes = s["batch_size"], s["z_dim"], 10          # MNIST's ten digits are the labels
    x_gan = gan.to_signed(mnist_like(B))
    y = torch.randint(n_classes, (B,), generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(s["seed"] + 9)
    torch.manual_seed(s["seed"])
    G = gan.DCGANGenerator(z_dim + n_classes, s["cgan_width"])
    D = gan.ProjectionDiscriminator(s["cgan_width"], n_classes)
    opt_G = torch.optim.Adam(G.parameters(), lr=s["lr"], betas=(s["beta1"], 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=s["lr"], betas=(s["beta1"], 0.999))
    before = snapshot(G, D)
    log = gan.run_steps(lambda step: gan.conditional_gan_step(G, D, opt_G, opt_D, x_gan, y,
                                                              torch.randn(B, z_dim, generator=g)),
                        1, checkpoint=tmp_path / "cgan.pt", state=dict(G=G, D=D, opt_G=opt_G, opt_D=opt_D),
                        generator=g, desc="conditional GAN")
    assert log.steps["step"] == [1] and all(math.isfinite(log.steps[k][0]) for k in ("loss_D", "loss_G"))
    assert changed(before, G, D)
    asked = torch.arange(n_classes)
    images = gan.generate(G, gan.generator_input(torch.randn(n_classes, z_dim), asked, n_classes))
    assert images.shape == (n_classes, 1, 28, 28)
    assert D(x_gan[:4], y[:4]).shape == (4,)


def test_full_06_gan_infogan_and_cyclegan_step(tmp_path):
    s = full_settings("06_gan")
    B, codes_n, noise_dim = s["batch_size"], s["info_codes"], s["info_noise_dim"]
    x_gan = gan.to_signed(mnist_like(B))
    g = torch.Generator().manual_seed(s["seed"] + 5)

    torch.manual_seed(s["seed"])
    G_info = gan.DCGANGenerator(noise_dim + codes_n, s["info_width"], hidden=s["info_hidden"])
    D_info = gan.DCGANDiscriminator(s["info_width"], n_codes=codes_n, hidden=s["info_hidden"])
    opt_G = torch.optim.Adam(G_info.parameters(), lr=s["info_lr_G"], betas=(s["beta1"], 0.999))
    opt_D = torch.optim.Adam(D_info.parameters(), lr=s["info_lr_D"], betas=(s["beta1"], 0.999))
    before = snapshot(G_info, D_info)

    def info_step(step):
        noise = torch.randn(B, noise_dim, generator=g)
        codes = torch.randint(codes_n, (B,), generator=g)
        return gan.infogan_step(G_info, D_info, opt_G, opt_D, x_gan, noise, codes, s["lambda_info"])

    log = gan.run_steps(info_step, 1, checkpoint=tmp_path / "infogan.pt",
                        state=dict(G=G_info, D=D_info, opt_G=opt_G, opt_D=opt_D), generator=g, desc="InfoGAN")
    assert log.steps["step"] == [1] and all(math.isfinite(log.steps[k][0]) for k in ("loss_D", "loss_G", "info"))
    assert changed(before, G_info, D_info)
    assert D_info.q_logits(D_info.features(x_gan[:4])).shape == (4, codes_n)

    cb = s["cycle_batch"]
    domain_a = x_gan[:cb]
    domain_b = gan.to_signed(gan.thicken(mnist_like(cb, seed=3)))
    torch.manual_seed(s["seed"])
    G_ab, G_ba = (gan.Translator(s["cycle_width"], s["cycle_blocks"]) for _ in range(2))
    D_a, D_b = (gan.PatchDiscriminator(s["cycle_width"]) for _ in range(2))
    cycle_lr = call_argument("06_gan", "Adam", "lr")     # the one literal learning rate: CycleGAN's
    opt_G = torch.optim.Adam([*G_ab.parameters(), *G_ba.parameters()], lr=cycle_lr, betas=(s["beta1"], 0.999))
    opt_D = torch.optim.Adam([*D_a.parameters(), *D_b.parameters()], lr=cycle_lr, betas=(s["beta1"], 0.999))
    before = snapshot(G_ab, G_ba, D_a, D_b)
    log = gan.run_steps(lambda step: gan.cyclegan_step(G_ab, G_ba, D_a, D_b, opt_G, opt_D, domain_a, domain_b,
                                                       s["lambda_cyc"]),
                        1, checkpoint=tmp_path / "cyclegan.pt",
                        state=dict(G_ab=G_ab, G_ba=G_ba, D_a=D_a, D_b=D_b, opt_G=opt_G, opt_D=opt_D), desc="CycleGAN")
    assert all(math.isfinite(log.steps[k][0]) for k in ("loss_D", "loss_G", "cycle"))
    assert changed(before, G_ab, G_ba, D_a, D_b)
    assert G_ab(domain_a[:4]).shape == (4, 1, 28, 28) and D_b(domain_b[:4]).shape == (4, 1, 7, 7)


def test_full_06_gan_comparison_vae_step(tmp_path):
    s = full_settings("06_gan")
    torch.manual_seed(s["seed"])
    model = vae.VAE(hidden=s["vae_hidden"], z_dim=s["vae_z_dim"])
    before = snapshot(model)
    history = vae.train(model, mnist_like(128), epochs=s["vae_epochs"], lr=s["vae_lr"], lr_final=s["vae_lr_final"],
                        device="cpu", seed=s["seed"], checkpoint=tmp_path / "vae.pt", max_steps=1, progress_bar=False)
    assert finite(history) and changed(before, model)
    assert model.sample(8).shape == (8, 1, 28, 28)


# ------------------------------------------------------------------------------------------------
# Lab 7: one ResNet-18 trunk under every pretext task, SimCLR and DeepCluster
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab7():
    s = full_settings("07_self_supervised")
    assert s["arch"] == "resnet18", "lab 7's full profile trains a ResNet-18; this file checks that trunk"
    return s


def lab7_train(s, model, loss_fn, x_n: int, images_per_step: int, n_steps: int = 1, cosine: bool = False):
    """The lab's ``train`` (section 2): ``unsuplab.train.fit`` over ``unsuplab.train.TensorBatches`` of image
    numbers with Adam at lr; with ``cosine``, a per-step warm-up and cosine decay (relative position)."""
    batches = ul.train.TensorBatches(torch.arange(x_n), batch_size=images_per_step, drop_last=True)
    schedule = {"warmup": s["steps"] // 20, "decay": "cosine"} if cosine else {}
    return ul.train.fit(model, loss_fn, batches, epochs=math.ceil(n_steps / len(batches)), max_steps=n_steps,
                        lr=s["lr"], seed=s["seed"], progress_bar=False, **schedule)


def new_trunk(s):
    return ssl.make_backbone(s["arch"], s["width"])


def test_full_07_self_supervised_rotnet_full_batch_step(lab7):
    s = lab7
    images = s["batch_size"] // 4                     # the lab's images_per_step: 4 rotations make the batch
    x, _ = cifar_like(images)
    torch.manual_seed(s["seed"])
    rotnet = ssl.to_channels_last(ssl.Classifier(new_trunk(s), 4), "cpu")
    assert rotnet.backbone.feature_dim == 512
    before = snapshot(rotnet)
    seen = []

    def rotation_loss(model, index):
        x_rot, r = ssl.rotate_batch(ssl.random_crop_flip(x[index]))
        seen.append(tuple(x_rot.shape))
        logits = model(x_rot)
        assert logits.shape == (len(r), 4)
        return F.cross_entropy(logits, r)

    history = lab7_train(s, rotnet, rotation_loss, len(x), images)
    assert seen == [(s["batch_size"], 3, 32, 32)]     # the full batch of 512 rotated images went through
    assert finite(history) and changed(before, rotnet)


def test_full_07_self_supervised_position_colour_instance_supervised_step(lab7):
    s = lab7
    B = REDUCED_BATCH
    x, y = cifar_like(B)

    torch.manual_seed(s["seed"])
    relnet = ssl.to_channels_last(ssl.RelativePositionNet(new_trunk(s)), "cpu")
    before = snapshot(relnet)

    def position_loss(model, index):  # the lab's 2 x 2 grid, each patch recoloured
        first, second, k = ssl.patch_pairs(x[index], s["grid_patch"], s["gap"], s["jitter"], grid=2)
        return F.cross_entropy(model(ssl.recolour_patches(first), ssl.recolour_patches(second)), k)

    assert finite(lab7_train(s, relnet, position_loss, B, B, cosine=True)) and changed(before, relnet)

    torch.manual_seed(s["seed"])
    colorizer = ssl.to_channels_last(ssl.Colorizer(new_trunk(s), grid=s["colour_grid"]), "cpu")
    with torch.no_grad():
        map_size = colorizer(x[:2]).shape[-2:]
    assert tuple(map_size) == (4, 4)
    weights = ssl.rebalancing_weights(torch.bincount(colorizer.targets(x, map_size).flatten(),
                                                     minlength=colorizer.n_bins))
    before = snapshot(colorizer)

    def colour_loss(model, index):
        images = ssl.random_crop_flip(x[index])
        logits = model(images)
        assert logits.shape == (len(index), colorizer.n_bins, 4, 4)
        return ssl.colorization_loss(logits, model.targets(images, logits.shape[-2:]), weights)

    assert finite(lab7_train(s, colorizer, colour_loss, B, B)) and changed(before, colorizer)

    torch.manual_seed(s["seed"])
    npid = ssl.to_channels_last(ssl.InstanceNet(new_trunk(s)), "cpu")
    bank = ssl.MemoryBank(s["n_train"], momentum=s["memory_momentum"])   # all 50,000 memories of the full run
    bank_before = bank.v.clone()
    before = snapshot(npid)

    def instance_loss(model, index):
        v = model(ssl.simclr_augment(x[index]))
        loss = ssl.npid_loss(v, index, bank, s["npid_temperature"])       # softmax over (B, 50,000)
        bank.update(index, v)
        return loss

    assert finite(lab7_train(s, npid, instance_loss, B, B)) and changed(before, npid)
    assert not torch.equal(bank.v[:B], bank_before[:B]) and torch.equal(bank.v[B:], bank_before[B:])

    torch.manual_seed(s["seed"])
    supervised = ssl.to_channels_last(ssl.Classifier(new_trunk(s), 10), "cpu")
    before = snapshot(supervised)
    history = lab7_train(s, supervised, lambda m, index: F.cross_entropy(m(ssl.random_crop_flip(x[index])), y[index]),
                         B, B)
    assert finite(history) and changed(before, supervised)
    assert ssl.extract_features(supervised, x[:4]).shape == (4, 512)


def test_full_07_self_supervised_simclr_two_steps(lab7):
    s = lab7
    B = REDUCED_BATCH
    x, _ = cifar_like(2 * B)                          # two steps: the first one's learning rate is 0 (warm-up)
    torch.manual_seed(s["seed"])
    simclr = ssl.to_channels_last(ssl.SimCLR(new_trunk(s), hidden=call_argument("07_self_supervised", "SimCLR", "hidden")), "cpu")
    assert simclr.projector[0].out_features == call_argument("07_self_supervised", "SimCLR", "hidden")
    before = snapshot(simclr)
    history = ssl.train_simclr(simclr, x, epochs=s["simclr_epochs"], batch_size=B, lr=s["simclr_lr"],
                               temperature=s["temperature"], time_budget=s["simclr_budget"], max_steps=2,
                               loss_fn=ssl.nt_xent, seed=s["seed"], progress_bar=False, log_every=1)
    assert len(history.steps["loss"]) == 2 and finite(history)
    assert changed(before, simclr)
    with torch.no_grad():
        assert simclr(x[:4]).shape == (4, 128) and simclr.features(x[:4]).shape == (4, 512)


def test_full_07_self_supervised_deepcluster_round_step(lab7):
    s = lab7
    k = s["dc_k"]
    x, y = cifar_like(k + REDUCED_BATCH)               # K-means with the full k needs at least k images
    torch.manual_seed(s["seed"])
    model = ssl.to_channels_last(ssl.Classifier(new_trunk(s), k), "cpu")
    before = snapshot(model.backbone)
    history = ssl.train_deepcluster(model, x, rounds=1, steps_per_round=1, batch_size=REDUCED_BATCH, lr=s["lr"],
                                    kmeans_iters=s["dc_kmeans_iters"], balanced=True,
                                    reassign=ssl.reassign_empty_clusters, labels=y, seed=s["seed"], progress_bar=False)
    assert history.epochs["empty"] == [0] and len(history.info["sizes"][0]) == k     # the fix leaves no cluster empty
    assert all(math.isfinite(v) for v in history.epochs["loss"] + history.epochs["nmi"] + history.steps["loss"])
    assert changed(before, model.backbone)


def test_full_07_self_supervised_deepcluster_with_its_guards_down(lab7):
    # the lab's second DeepCluster pair: no whitening, K-means carried over from round to round, k = 1,000
    s = lab7
    k = s["guard_k"]
    assert k == 1_000 and s["guard_rounds"] >= 2
    x, y = cifar_like(k + REDUCED_BATCH)
    torch.manual_seed(s["seed"])
    model = ssl.to_channels_last(ssl.Classifier(new_trunk(s), k), "cpu")
    before = snapshot(model.backbone)
    history = ssl.train_deepcluster(model, x, rounds=2, steps_per_round=1, batch_size=REDUCED_BATCH, lr=s["guard_lr"],
                                    kmeans_iters=s["dc_kmeans_iters"], whiten=False, carry_centroids=True,
                                    balanced=False, reassign=None, labels=y, seed=s["seed"], progress_bar=False)
    assert len(history.info["sizes"]) == 2 and all(len(sizes) == k for sizes in history.info["sizes"])
    assert all(math.isfinite(v) for v in history.epochs["loss"] + history.epochs["nmi"] + history.steps["loss"])
    assert changed(before, model.backbone)


# ------------------------------------------------------------------------------------------------
# Lab 7b: the ResNet-18 trunk under the jigsaw, the context encoder, Exemplar-CNN and noise as targets
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab7b():
    s = full_settings("07_pretext_tasks", "arch", "n_permutations", "n_exemplars", "n_train", "batch_size", "lr",
                      "tile", "tile_gap", "tile_jitter", "big_tile", "centre", "lambda_adv")
    assert s["arch"] == "resnet18", "lab 7b's full profile trains a ResNet-18; this file checks that trunk"
    return s


def lab7b_train(s, model, loss_fn, x_n: int, images_per_step: int):
    """Lab 7b's ``train``: ``unsuplab.train.fit`` with Adam at lr, a per-step warm-up and cosine decay."""
    batches = ul.train.TensorBatches(torch.arange(x_n), batch_size=images_per_step, drop_last=True)
    return ul.train.fit(model, loss_fn, batches, epochs=1, max_steps=1, lr=s["lr"], warmup=0, decay="cosine",
                        seed=s["seed"], progress_bar=False)


def test_full_07_pretext_tasks_jigsaws_step(lab7b):
    s, B = lab7b, REDUCED_BATCH
    x, _ = cifar_like(B)
    permutations = ssl.hamming_permutations(9, s["n_permutations"], generator=torch.Generator().manual_seed(0))
    assert permutations.shape == (s["n_permutations"], 9)
    for grid, perms, tile, gap in [(3, permutations, s["tile"], s["tile_gap"]),
                                   (2, ssl.all_permutations(4), s["big_tile"], 2)]:
        torch.manual_seed(s["seed"])
        net = ssl.to_channels_last(ssl.JigsawNet(new_trunk(s), grid * grid, len(perms)), "cpu")
        before = snapshot(net)

        def jigsaw_loss(model, index):
            puzzles, j = ssl.jigsaw_batch(ssl.random_crop_flip(x[index]), perms, tile, gap, s["tile_jitter"], grid=grid)
            assert puzzles.shape == (B, grid * grid, 3, tile, tile)
            return F.cross_entropy(model(puzzles), j)

        assert finite(lab7b_train(s, net, jigsaw_loss, B, B)) and changed(before, net)


def test_full_07_pretext_tasks_context_encoder_step(lab7b):
    s, B = lab7b, REDUCED_BATCH
    x, _ = cifar_like(B)
    torch.manual_seed(s["seed"])
    model = ssl.to_channels_last(ssl.ContextEncoder(new_trunk(s), centre=s["centre"]), "cpu")
    disc = ssl.to_channels_last(ssl.CentreDiscriminator(), "cpu")
    before, d_before = snapshot(model), snapshot(disc)
    history = ssl.train_context_encoder(model, disc, x, steps=1, batch_size=B, lr=s["lr"], centre=s["centre"],
                                            lambda_adv=s["lambda_adv"], progress_bar=False)
    assert finite(history) and finite(history, "adv") and changed(before, model) and changed(d_before, disc)
    with torch.no_grad():
        assert model.eval()(ssl.mask_centre(x[:2], s["centre"])[0]).shape == (2, 3, s["centre"], s["centre"])


def test_full_07_pretext_tasks_exemplar_and_noise_as_targets_step(lab7b):
    s, B = lab7b, REDUCED_BATCH
    x, _ = cifar_like(B)
    torch.manual_seed(s["seed"])
    exemplar = ssl.to_channels_last(ssl.ExemplarCNN(new_trunk(s), s["n_exemplars"]), "cpu")
    assert exemplar.head.out_features == s["n_exemplars"]
    before = snapshot(exemplar)
    history = lab7b_train(s, exemplar, lambda model, index: ssl.exemplar_loss(model, x, index), B, B)
    assert finite(history) and changed(before, exemplar)

    nat = ssl.to_channels_last(ssl.NoiseAsTargets(new_trunk(s)), "cpu")
    state = ssl.NatState(s["n_train"], nat.head.out_features, "cpu", generator=torch.Generator().manual_seed(0))
    assert state.targets.shape == (s["n_train"], 512)
    before = snapshot(nat)
    history = lab7b_train(s, nat, lambda model, index: ssl.nat_loss(model, x, index, state), B, B)
    assert finite(history) and changed(before, nat)
    assert torch.equal(state.assigned.sort().values, torch.arange(s["n_train"]))   # still one target per image
