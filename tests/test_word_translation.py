"""Chapter 9, part 1: word translation (Procrustes, CSLS, the adversarial map and its refinement), against
exact answers on tiny cases."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

from unsuplab import data
from unsuplab.models import word_translation as wt

needs_mirror = pytest.mark.skipif(not os.environ.get(data.MIRROR_ENV),
                                  reason="UNSUPLAB_DATA_MIRROR is not set (make test sets it)")


def random_orthogonal(d: int, seed: int = 0) -> torch.Tensor:
    Q, R = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    Q = (Q * torch.sign(torch.diagonal(R))).float()
    if torch.det(Q) < 0:                                # a rotation (det +1), reachable from the identity
        Q[:, 0] = -Q[:, 0]
    return Q


# --------------------------------------------------------------------------- Procrustes (9.1)

def test_procrustes_recovers_a_known_orthogonal_map_exactly():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 6, generator=g)
    Q = random_orthogonal(6, seed=1)
    W = wt.procrustes(X, X @ Q.T)                       # y_i = Q x_i exactly
    assert torch.allclose(W, Q, atol=1e-5)
    assert wt.is_orthogonal(W)


def test_procrustes_is_the_best_orthogonal_map_under_noise():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 4, generator=g)
    Y = X @ random_orthogonal(4, 2).T + 0.3 * torch.randn(40, 4, generator=g)
    W = wt.procrustes(X, Y)
    best = (X @ W.T - Y).norm()
    for seed in range(20):                              # no random orthogonal map does better
        assert (X @ random_orthogonal(4, 100 + seed).T - Y).norm() >= best - 1e-5
    # the closed form of eq. (9.1): W = U V^T with U S V^T = SVD(Y^T X)
    U, _, Vh = torch.linalg.svd(Y.T @ X)
    assert torch.allclose(W, U @ Vh, atol=1e-5)


def test_procrustes_speaks_to_the_student_about_bad_input():
    with pytest.raises(ValueError, match="pair row by row"):
        wt.procrustes(torch.randn(5, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="matrix of word vectors"):
        wt.procrustes(torch.randn(5), torch.randn(5))
    with pytest.raises(ValueError, match="floating-point"):
        wt.procrustes(torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.long))


def test_orthogonalize_step_keeps_an_orthogonal_W_orthogonal_and_pulls_others_towards_it():
    Q = random_orthogonal(5, 3)
    W = Q.clone()
    for _ in range(100):
        wt.orthogonalize_step(W, beta=0.01)
    assert torch.allclose(W, Q, atol=1e-5)              # a fixed point: (1+b) Q - b Q Q^T Q = Q
    W = Q + 0.05 * torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    distance = lambda M: (M @ M.T - torch.eye(5)).norm().item()
    before = distance(W)
    for _ in range(200):
        wt.orthogonalize_step(W, beta=0.01)
    assert distance(W) < 0.1 * before
    assert not wt.is_orthogonal(torch.randn(3, 4))        # not square: not orthogonal, no crash


# --------------------------------------------------------------------------- CSLS (9.5), (9.6)

def test_csls_on_a_hand_computed_case():
    # two source words, three target words, 2-D unit vectors; k = 1
    WX = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = math.sqrt(0.5)
    Y = torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0]])
    cos = WX @ Y.T                                       # [[1, s, 0], [0, s, 1]]
    r_T = torch.tensor([1.0, 1.0])                       # each Wx has a target at cosine 1
    r_S = torch.tensor([1.0, s, 1.0])                    # the hub y_2 is at s from both sources
    expected = 2 * cos - r_T[:, None] - r_S[None, :]
    assert torch.allclose(wt.csls(WX, Y, k=1), expected)
    assert torch.allclose(wt.neighbourhood_density(Y, WX, k=1), r_S)
    # with k = 2, the densities are means of the two nearest
    assert torch.allclose(wt.neighbourhood_density(WX, Y, k=2), torch.tensor([(1 + s) / 2, (1 + s) / 2]))


def test_csls_penalises_a_hub_that_nearest_neighbour_picks():
    # unit vectors at these angles (degrees): target 0 at 4 deg is the nearest neighbour of every source
    # word (a hub); x_0 at 10 deg is also close to target 1 at 20 deg, which no other source word wants
    angles = lambda a: torch.tensor([[math.cos(math.radians(t)), math.sin(math.radians(t))] for t in a])
    WX, Y = angles([10, 0, -3, 2]), angles([4, 20, -30])
    assert bool(((WX @ Y.T).argmax(1) == 0).all())
    _, nn_top = wt.translate(WX, Y, [0], method="nn", k=2)
    _, csls_top = wt.translate(WX, Y, [0], method="csls", k=2)
    assert nn_top.item() == 0 and csls_top.item() == 1
    # translate in batches = the whole CSLS matrix at once
    scores, top = wt.translate(WX, Y, method="csls", k=2, topn=2, batch_size=2)
    full = wt.csls(WX, Y, k=2)
    assert torch.allclose(scores, full.topk(2, dim=1).values) and torch.equal(top, full.topk(2, dim=1).indices)


def test_translate_and_precision_reject_bad_input():
    X = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError, match="'nn' .* or 'csls'"):
        wt.translate(X, X, method="cosine")
    with pytest.raises(ValueError, match="k must be between 1"):
        wt.neighbourhood_density(X, X, k=10)
    with pytest.raises(ValueError, match="nothing to score"):
        wt.translation_precision(X, X, torch.zeros(0, 2, dtype=torch.long))


def test_translation_precision_counts_any_reference_translation():
    Y = torch.eye(4)
    WX = torch.eye(4)[[0, 1, 2]]                          # word i translates to target i
    pairs = torch.tensor([[0, 0], [1, 3], [1, 1], [2, 3]])  # word 1 has two references; word 2 is wrong
    p = wt.translation_precision(WX, Y, pairs, method="nn", ks=(1, 4))
    assert p["P@1"] == pytest.approx(2 / 3) and p["P@4"] == 1.0 and p["n"] == 3


def test_dictionary_helpers():
    ids = wt.dictionary_ids([("cat", "chat"), ("dog", "chien"), ("cow", "vache")], ["dog", "cat"], ["chat", "chien"])
    assert ids.tolist() == [[1, 0], [0, 1]]
    pairs = [(f"w{i}", f"t{j}") for i in range(20) for j in range(2)]
    train, test = wt.split_dictionary(pairs, test_fraction=0.25)
    assert {a for a, _ in train}.isdisjoint({a for a, _ in test}) and len(test) == 10 and len(train) == 30


# --------------------------------------------------------------------------- the adversarial game (9.2)-(9.4)

def two_clouds(n=64, d=4, seed=0):
    """Source vectors around +e_0 and target vectors around -e_0: easy to tell apart under W = I."""
    g = torch.Generator().manual_seed(seed)
    shift = torch.zeros(d)
    shift[0] = 2.0
    return torch.randn(n, d, generator=g) + shift, torch.randn(n, d, generator=g) - shift


def test_discriminator_step_learns_to_tell_mapped_source_words_from_target_words():
    torch.manual_seed(0)
    x, y = two_clouds()
    W = torch.nn.Parameter(torch.eye(4))
    dis = wt.Discriminator(4, hidden=16, dropout=0.0)
    opt = torch.optim.SGD(dis.parameters(), lr=0.5)
    first_loss, first_accuracy = wt.discriminator_step(dis, opt, W, x, y, smooth=0.1)
    assert isinstance(first_loss, float) and 0 <= first_accuracy <= 1
    for _ in range(30):
        loss, accuracy = wt.discriminator_step(dis, opt, W, x, y, smooth=0.1)
    assert loss < first_loss and accuracy > 0.95
    assert torch.equal(W.detach(), torch.eye(4)) and W.grad is None     # the map is held fixed in (9.2)
    # the loss is (9.2), with labels smoothed: 1 - smooth for a mapped source word, smooth for a target word
    with torch.no_grad():
        p_source = torch.sigmoid(dis(torch.cat([x @ W.T, y])))            # no dropout here: the same in train()
    labels = torch.cat([torch.full((64,), 0.9), torch.full((64,), 0.1)])
    by_hand = -(labels * p_source.log() + (1 - labels) * (1 - p_source).log()).mean()
    standing_still = torch.optim.SGD(dis.parameters(), lr=0.0)
    loss, _ = wt.discriminator_step(dis, standing_still, W, x, y, smooth=0.1)
    assert loss == pytest.approx(by_hand.item(), rel=1e-5)


def test_mapping_step_is_an_sgd_step_on_the_flipped_loss_then_the_orthogonalisation():
    torch.manual_seed(0)
    x, y = two_clouds()
    W = torch.nn.Parameter(torch.eye(4))
    dis = wt.Discriminator(4, hidden=16, dropout=0.0)
    opt_d = torch.optim.SGD(dis.parameters(), lr=0.5)
    for _ in range(30):
        wt.discriminator_step(dis, opt_d, W, x, y)
    frozen = [p.detach().clone() for p in dis.parameters()]
    # by hand: (9.3) with the labels flipped (a mapped source word labelled "target", 0.9 -> 0.1), then (9.4)
    W_hand = W.detach().clone().requires_grad_()
    flipped = torch.cat([torch.full((64,), 0.1), torch.full((64,), 0.9)])
    loss_hand = F.binary_cross_entropy_with_logits(dis(torch.cat([x @ W_hand.T, y])), flipped)
    loss_hand.backward()
    expected = wt.orthogonalize_step(W_hand.detach() - 0.05 * W_hand.grad, beta=0.01)
    opt_w = torch.optim.SGD([W], lr=0.05)
    assert wt.mapping_step(dis, opt_w, W, x, y, smooth=0.1, beta=0.01) == pytest.approx(loss_hand.item())
    assert torch.allclose(W.detach(), expected, atol=1e-6)
    # a few more steps fool the fixed discriminator: W x looks more like a target word
    p_source = lambda: torch.sigmoid(dis(x @ W.detach().T)).mean().item()   # P(source | W x)
    before = p_source()
    losses = [wt.mapping_step(dis, opt_w, W, x, y, beta=0.01) for _ in range(20)]
    assert p_source() < before - 0.1 and losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(frozen, dis.parameters()))   # the discriminator is not updated


def test_adversarial_alignment_is_a_loop_over_the_two_named_steps(monkeypatch):
    calls = {"discriminator_step": 0, "mapping_step": 0}

    def counted(name):
        original = getattr(wt, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)
        return wrapper

    for name in calls:
        monkeypatch.setattr(wt, name, counted(name))
    X, Y = two_clouds(n=40)
    X, Y = wt.normalize_embeddings(X), wt.normalize_embeddings(Y)
    W, history = wt.adversarial_alignment(X, Y, steps=3, dis_steps=2, batch_size=8, hidden=8, eval_every=2,
                                          criterion_words=40, progress_bar=False)
    assert calls == {"discriminator_step": 6, "mapping_step": 3}
    per_eval = history.epochs                                       # one row per evaluation
    assert per_eval["step"] == [2, 3] and all(0 <= a <= 1 for a in per_eval["dis_accuracy"]) and W.shape == (4, 4)
    assert history.steps["step"] == [1, 2, 3] and len(history.steps["map_loss"]) == 3    # one entry per step of W
    steps = history.steps["dis_loss"]                # each the mean of its two updates; the evaluations' means agree
    assert per_eval["dis_loss"] == pytest.approx([sum(steps[:2]) / 2, steps[2]])
    assert history.info["best_step"] in (2, 3) and history.seconds > 0


def test_single_thread_on_cpu_pins_one_thread_and_restores_the_count():
    threads = torch.get_num_threads()
    with wt.single_thread_on_cpu("cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads
    with pytest.raises(RuntimeError, match="inside"):
        with wt.single_thread_on_cpu(torch.device("cpu")):
            raise RuntimeError("an error inside")
    assert torch.get_num_threads() == threads            # restored after an error too
    with wt.single_thread_on_cpu("meta"):                 # not a CPU: nothing changes
        assert torch.get_num_threads() == threads


def test_the_game_steps_on_one_thread_and_scores_its_criterion_on_all(monkeypatch):
    if torch.get_num_threads() < 2:
        pytest.skip("needs two torch threads to tell them apart")
    threads, seen = torch.get_num_threads(), {"step": set(), "criterion": set()}
    step, criterion = wt.mapping_step, wt.unsupervised_criterion

    def spy_step(*args, **kwargs):
        seen["step"].add(torch.get_num_threads())
        return step(*args, **kwargs)

    def spy_criterion(*args, **kwargs):
        seen["criterion"].add(torch.get_num_threads())
        return criterion(*args, **kwargs)

    monkeypatch.setattr(wt, "mapping_step", spy_step)
    monkeypatch.setattr(wt, "unsupervised_criterion", spy_criterion)
    X = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    wt.adversarial_alignment(X, X, steps=4, dis_steps=1, batch_size=8, hidden=8, eval_every=2, criterion_words=20,
                             progress_bar=False)
    assert seen == {"step": {1}, "criterion": {threads}} and torch.get_num_threads() == threads


# --------------------------------------------------------------------------- the controlled case

def test_adversarial_alignment_and_procrustes_recover_a_hidden_rotation():
    """Two "languages" whose vectors are the same cloud rotated and relabelled (plus noise): the game and
    the refinement, with no dictionary, must find the words' translations."""
    g = torch.Generator().manual_seed(0)
    n, d = 400, 4
    centres = 2.5 * torch.randn(6, d, generator=g) * torch.linspace(1.5, 0.5, d)        # anisotropic clusters
    X = centres[torch.randint(6, (n,), generator=g)] + torch.randn(n, d, generator=g) * torch.linspace(1.2, 0.4, d)
    Q = random_orthogonal(d, 5)
    perm = torch.randperm(n, generator=g)                # target word perm[i] translates source word i
    Y = torch.empty(n, d)
    Y[perm] = X @ Q.T + 0.02 * torch.randn(n, d, generator=g)
    X, Y = wt.normalize_embeddings(X), wt.normalize_embeddings(Y)
    gold = torch.stack([torch.arange(n), perm], 1)
    assert wt.translation_precision(X, Y, gold)["P@1"] < 0.05                          # the identity is wrong
    W, history = wt.adversarial_alignment(X, Y, steps=400, batch_size=64, hidden=64, eval_every=100, lr=0.5,
                                          criterion_words=n, most_frequent=n, progress_bar=False)
    assert len(history.epochs["criterion"]) == 4 and history.epochs["criterion"][-1] > 0.95
    W, refine_log = wt.procrustes_refinement(X, Y, W, iterations=3, max_rank=n, criterion_words=n)
    assert wt.is_orthogonal(W) and refine_log["pairs"][-1] > n / 2
    assert wt.translation_precision(X @ W.T, Y, gold, method="csls")["P@1"] > 0.9
    assert (W - Q).norm() < 0.2


def test_induce_dictionary_keeps_mutual_nearest_neighbours_only():
    WX = torch.eye(3)
    Y = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.0], [0.9, 0.0, 0.1], [0.0, 0.0, 1.0]]), dim=1)
    pairs = wt.induce_dictionary(WX, Y, k=1, method="nn")
    assert pairs.tolist() == [[0, 0], [2, 2]]            # x_1 -> y_0 -> x_0: not mutual, left out


# --------------------------------------------------------------------------- robust start (9.13), isomorphism (9.14)

def clustered_cloud(n: int = 300, d: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(12, d, generator=g) * torch.linspace(1.5, 0.5, d)
    return wt.normalize_embeddings(centres[torch.randint(12, (n,), generator=g)] + torch.randn(n, d, generator=g))


def test_similarity_signatures_do_not_change_under_a_rotation():
    X = clustered_cloud()
    Q = random_orthogonal(X.shape[1], 3)
    assert torch.allclose(wt.similarity_signatures(X, 100), wt.similarity_signatures(X @ Q.T, 100), atol=1e-4)
    # ... but they do change when the cloud itself changes
    assert not torch.allclose(wt.similarity_signatures(X, 100), wt.similarity_signatures(clustered_cloud(seed=1), 100),
                              atol=1e-2)


def test_similarity_seed_then_self_learning_find_a_hidden_rotation_without_a_dictionary():
    X = clustered_cloud(400, 8)
    n, Q = len(X), random_orthogonal(8, 4)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    Y = torch.empty_like(X)
    Y[perm] = X @ Q.T + 0.01 * torch.randn(n, 8, generator=torch.Generator().manual_seed(2))
    Y = wt.normalize_embeddings(Y, center=False)
    gold = torch.stack([torch.arange(n), perm], 1)
    seed = wt.similarity_seed(X, Y, n=n)
    assert len(seed) > 20 and (perm[seed[:, 0]] == seed[:, 1]).float().mean() > 0.5
    W, log = wt.self_learning(X, Y, seed, iterations=6, max_rank=n, criterion_words=n)
    assert log["keep"][0] == pytest.approx(0.1) and log["keep"][-1] == pytest.approx(1.0)
    assert len(log["criterion"]) == 6 and all(p > 0 for p in log["pairs"])
    assert wt.translation_precision(X @ W.T, Y, gold, method="csls")["P@1"] > 0.9


def test_similarity_seed_works_for_vocabularies_of_different_sizes():
    # two languages never have the same number of words: the signatures must still compare
    X = clustered_cloud(300, 8)
    Y = wt.normalize_embeddings(X[:260] @ random_orthogonal(8, 5).T, center=False)
    seed = wt.similarity_seed(X, Y, n=1_000)
    assert seed.shape[1] == 2 and len(seed) > 0
    assert seed[:, 0].max() < 260 and seed[:, 1].max() < 260


def test_self_learning_refuses_an_empty_seed_and_a_bad_keep():
    X = clustered_cloud(50, 4)
    with pytest.raises(ValueError, match="seed dictionary"):
        wt.self_learning(X, X, torch.zeros(0, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="keep"):
        wt.self_learning(X, X, torch.tensor([[0, 0]]), keep=0.0)


def test_identical_strings_seed_pairs_words_spelled_alike():
    pairs = wt.identical_strings_seed(["the", "paris", "1900", "dog"], ["le", "1900", "chien", "paris"])
    assert sorted(pairs.tolist()) == [[1, 3], [2, 1]]


def test_isomorphism_measures_are_perfect_for_a_rotation_and_worse_for_another_cloud():
    X = clustered_cloud(200, 8)
    Q = random_orthogonal(8, 6)
    same = torch.stack([torch.arange(200), torch.arange(200)], 1)
    assert wt.eigenvector_similarity(X, X @ Q.T, same) == pytest.approx(0.0, abs=1e-6)
    assert wt.relational_similarity(X, X @ Q.T, same) == pytest.approx(1.0, abs=1e-5)
    other = clustered_cloud(200, 8, seed=9)
    assert wt.eigenvector_similarity(X, other, same) > 1.0
    assert wt.relational_similarity(X, other, same) < 0.5
    # the eigenvalues forget the order of the words: shuffling both sides the same way changes nothing
    shuffled = same[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    assert wt.eigenvector_similarity(X, other, shuffled) == pytest.approx(wt.eigenvector_similarity(X, other, same))
    with pytest.raises(ValueError, match="more than k"):
        wt.eigenvector_similarity(X, X, same[:5])


# --------------------------------------------------------------------------- data

@needs_mirror
def test_bilingual_dictionaries_load_from_the_mirror():
    pairs = data.bilingual_dictionary("muse.en-fr.full")
    assert ("cat", "chat") in pairs and len(pairs) > 100_000
    assert ("dog", "hund") in data.bilingual_dictionary("muse.en-de.full")
