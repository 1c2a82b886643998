"""word2vec (skip-gram and CBOW, negative sampling and the hierarchical softmax) and the word-vector measures,
against exact answers."""

import hashlib
import io
import math
import os
import time
import zipfile

import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from unsuplab import data
from unsuplab.models import word2vec as w2v
from unsuplab.checks import CheckFailed
from unsuplab.models.word2vec import (CBOW, HuffmanTree, Progress, SkipGram, Vocabulary, cbow_examples,
                                      check_hs_log_prob, context_mean, context_windows, hs_loss, keep_probabilities,
                                      noise_distribution, run_hogwild, sample_noise, sgns_loss, skipgram_pairs,
                                      subsample, train_chunk, train_word2vec)
from unsuplab.wordvectors import (WordVectors, analogy_accuracy, cosine_similarity, nearest_neighbours,
                                  similarity_spearman, spearman)

needs_mirror = pytest.mark.skipif(not os.environ.get(data.MIRROR_ENV),
                                  reason="UNSUPLAB_DATA_MIRROR is not set (make test sets it)")


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --------------------------------------------------------------------------- the loss (8.2), (8.7)

def test_loss_matches_the_formula_written_out_by_hand():
    v_c = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    u_o = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    u_neg = torch.tensor([[[1.0, 1.0], [-1.0, 0.0]], [[0.0, 0.0], [3.0, 1.0]]])  # K = 2 per pair
    # pair 0: s_o = 2, s_neg = 1, -1;   pair 1: s_o = -1, s_neg = 0, 0.5
    expected = [-math.log(sigmoid(2)) - math.log(sigmoid(-1)) - math.log(sigmoid(1)),
                -math.log(sigmoid(-1)) - math.log(sigmoid(0)) - math.log(sigmoid(-0.5))]
    assert sgns_loss(v_c, u_o, u_neg).tolist() == pytest.approx(expected, rel=1e-6)
    # shared noise words (8.7): the same two for both pairs (scores 1, -1 and -0.5, -0.5), weight K / K' = 0.5
    shared = torch.tensor([[1.0, 1.0], [-1.0, 0.0]])
    expected_shared = [-math.log(sigmoid(2)) - 0.5 * (math.log(sigmoid(-1)) + math.log(sigmoid(1))),
                       -math.log(sigmoid(-1)) - 0.5 * (math.log(sigmoid(0.5)) + math.log(sigmoid(0.5)))]
    assert sgns_loss(v_c, u_o, shared, noise_weight=0.5).tolist() == pytest.approx(expected_shared, rel=1e-6)


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"u_neg must be \(B, K, d\)"):
        sgns_loss(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 2, 5))
    with pytest.raises(ValueError, match="v_c and u_o must both be"):
        sgns_loss(torch.zeros(4, 3), torch.zeros(3, 3), torch.zeros(2, 3))


@pytest.mark.parametrize("shared", [False, True])
def test_the_hand_written_sgd_step_is_autograd_sgd_on_the_summed_loss(shared):
    # Repeated ids in the batch (word 1 is a center twice, word 3 a context and a noise word) must
    # accumulate exactly as autograd accumulates them.
    g = torch.Generator().manual_seed(0)
    model = SkipGram(6, 4)
    with torch.no_grad():
        model.W_out.weight.normal_(generator=g)
    centers, contexts = torch.tensor([1, 1, 2, 5]), torch.tensor([3, 0, 4, 3])
    negatives = torch.tensor([2, 5, 1]) if shared else torch.tensor([[2, 5], [3, 4], [0, 0], [1, 2]])
    weight = 2 / 3 if shared else 1.0
    reference = SkipGram(6, 4)
    reference.load_state_dict(model.state_dict())
    reference(centers, contexts, negatives, weight).sum().backward()
    lr = 0.1
    before = model.sgd_step(centers, contexts, negatives, lr, weight, return_loss=True)
    assert before == pytest.approx(reference(centers, contexts, negatives, weight).mean().item(), rel=1e-5)
    for name in ("W_in", "W_out"):
        grad = getattr(reference, name).weight.grad.to_dense()
        expected = getattr(reference, name).weight.detach() - lr * grad
        assert torch.allclose(getattr(model, name).weight, expected, atol=1e-6), name


def test_a_noise_word_equal_to_the_context_is_skipped():
    # The only noise word of the pair is its context (word 1): the step is the positive term alone.
    model = SkipGram(3, 2)
    with torch.no_grad():
        model.W_in.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]]))
        model.W_out.weight.copy_(torch.tensor([[0.0, 0.0], [0.5, -1.0], [3.0, 3.0]]))
    v, u = model.W_in.weight[0].detach().clone(), model.W_out.weight[1].detach().clone()
    g = sigmoid(float(u @ v)) - 1                       # dl/ds_o, s_o = -1.5
    for negatives in (torch.tensor([[1]]), torch.tensor([1, 1])):
        with torch.no_grad():
            model.W_in.weight[0], model.W_out.weight[1] = v, u
        model.sgd_step(torch.tensor([0]), torch.tensor([1]), negatives, lr=1.0)
        assert torch.allclose(model.W_in.weight[0], v - g * u)
        assert torch.allclose(model.W_out.weight[1], u - g * v)
        assert torch.equal(model.W_out.weight[2], torch.tensor([3.0, 3.0]))


# --------------------------------------------------------------------------- the Huffman tree and the hierarchical softmax (8.11)

def codes_of(tree):
    return ["".join(map(str, tree.codes[w, :tree.lengths[w]].tolist())) for w in range(len(tree))]


def test_huffman_codes_are_prefix_free_and_frequent_words_get_short_codes():
    g = torch.Generator().manual_seed(0)
    for counts in ([5, 3], [10, 6, 3, 2, 1, 1], [4, 4, 4, 4], (1e5 / torch.arange(1, 301)).round().long(),
                   torch.randint(1, 1_000, (200,), generator=g)):
        counts = torch.as_tensor(counts)
        tree = HuffmanTree.from_counts(counts)
        codes, lengths = codes_of(tree), tree.lengths
        assert len(set(codes)) == len(codes) and all(codes)
        assert not any(a != b and b.startswith(a) for a in codes for b in codes)          # prefix-free
        assert sum(2.0 ** -len(c) for c in codes) == pytest.approx(1.0)                  # a full tree (Kraft)
        more = counts[:, None] > counts[None, :]                                          # w more frequent than w'
        assert (lengths[:, None] <= lengths[None, :])[more].all()                         # ... never a longer code
        p = counts.double() / counts.sum()                                                # Huffman: H <= mean < H + 1
        entropy, mean = -(p * p.log2()).sum().item(), (p * lengths).sum().item()
        assert entropy - 1e-9 <= mean < entropy + 1
        V = len(counts)
        assert (tree.points[:, 0] == V - 2).all()                                         # every path starts at the root
        on_path = torch.arange(tree.codes.shape[1]) < lengths[:, None]
        assert ((tree.points >= 0) & (tree.points < V - 1))[on_path].all()
    # merges: 1 + 1 = 2, then the word of count 2 with that node (4), then 3 + 4 = 7, 6 + 7 = 13, 10 + 13 = 23;
    # the heavier child (the later one on a tie) takes bit 1
    assert codes_of(HuffmanTree.from_counts([10, 6, 3, 2, 1, 1])) == ["0", "10", "110", "1110", "11110", "11111"]
    with pytest.raises(ValueError, match="at least 2 words"):
        HuffmanTree.from_counts([3])


def test_the_shared_top_of_the_tree_is_the_start_of_every_path():
    counts = (1e5 / torch.arange(1, 501)).round().long()
    for shared in (1, 7, 63, 10_000):
        tree = HuffmanTree.from_counts(counts, shared_nodes=shared)
        V, T = len(counts), tree.shared_nodes
        assert T == min(shared, V - 1) and tree.top_codes.shape == (V, T)
        for w in (0, 1, 17, 499):
            L = int(tree.lengths[w])
            points, codes = tree.points[w, :L], tree.codes[w, :L]
            top = points >= V - 1 - T
            assert top.tolist() == sorted(top.tolist(), reverse=True)                  # a prefix of the path
            row = tree.top_codes[w]
            assert torch.equal(row[points[top] - (V - 1 - T)], codes[top].to(torch.int8))
            assert (row >= 0).sum() == top.sum()                                         # -1 off the path
            assert tree.below_top[w].sum() == L - top.sum()


@pytest.mark.parametrize("architecture", [SkipGram, CBOW])
def test_hierarchical_softmax_probabilities_sum_to_one_over_the_vocabulary(architecture):
    counts = torch.tensor([50, 20, 10, 10, 5, 3, 1, 1, 1])
    V, d = len(counts), 4
    g = torch.Generator().manual_seed(0)
    model = architecture(V, d, g, tree=HuffmanTree.from_counts(counts))
    with torch.no_grad():
        model.W_node.weight.normal_(generator=g)
        model.W_in.weight.normal_(generator=g)
    inputs = torch.tensor([3]) if architecture is SkipGram else torch.tensor([[2, -1, 5, 0]])
    log_p = -model(inputs.expand(V, *inputs.shape[1:]), torch.arange(V))               # log p(w | input), all w
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
    # and (8.11) written out for one word: the product over its path of sigma(+-u_n . h)
    h = model.W_in.weight[3] if architecture is SkipGram else model.W_in.weight[[2, 5, 0]].mean(0)
    w = 7
    p = 1.0
    for node, bit in zip(model.tree.points[w, :model.tree.lengths[w]], model.tree.codes[w, :model.tree.lengths[w]]):
        p *= sigmoid((1 - 2 * int(bit)) * float(model.W_node.weight[node].detach() @ h.detach()))
    assert log_p[w].exp().item() == pytest.approx(p, rel=1e-5)


def test_hs_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="expected h"):
        hs_loss(torch.zeros(4, 3), torch.zeros(4, 2, 5), torch.zeros(4, 2, dtype=torch.long))


def step_matches_autograd(model, inputs, targets, negatives, weight, hidden):
    """One sgd_step of ``model`` against autograd on a copy: the output rows by their gradient, the input rows
    by -lr dl/dh given to each input word (skip-gram: its center; CBOW: every context word, (8.10)). A row of
    the tree, or a CBOW context word, that m > max_load examples update takes max_load / m of it (8.13)."""
    lr = 0.1
    reference = type(model)(model.W_in.num_embeddings, model.W_in.embedding_dim, tree=model.tree)
    reference.load_state_dict(model.state_dict())
    h = hidden(reference).detach().requires_grad_()
    reference.loss(h, targets, negatives, weight).sum().backward()
    before = model.sgd_step(inputs, targets, negatives, lr, weight, return_loss=True)
    assert before == pytest.approx(reference(inputs, targets, negatives, weight).mean().item(), rel=1e-5)
    out = "W_out" if model.tree is None else "W_node"
    cap = torch.ones(getattr(model, out).num_embeddings)
    if model.tree is not None:                                                       # m: the paths through a node
        points, _, mask = model.tree.padded(targets)
        load = torch.zeros(len(cap)).index_add_(0, points[mask], torch.ones(int(mask.sum())))
        cap = (model.max_load / load.clamp(min=1)).clamp(max=1)
    expected_out = getattr(reference, out).weight.detach() - lr * cap[:, None] * getattr(reference, out).weight.grad.to_dense()
    assert torch.allclose(getattr(model, out).weight, expected_out, atol=1e-6), out
    words = inputs.reshape(len(targets), -1)                                          # (B, 1) or (B, 2 window)
    rows = (words >= 0).nonzero(as_tuple=True)[0]
    step = -lr * h.grad[rows]
    if isinstance(model, CBOW):                                                       # m: a word's slots in the batch
        load = torch.bincount(words[words >= 0], minlength=model.W_in.num_embeddings).double()
        step = step * (model.max_load / load[words[words >= 0]]).clamp(max=1)[:, None].float()
    expected_in = reference.W_in.weight.detach().index_add(0, words[words >= 0], step)
    assert torch.allclose(model.W_in.weight, expected_in, atol=1e-6), "W_in"


@pytest.mark.parametrize("max_load", [64, 1])
@pytest.mark.parametrize("shared", [False, True])
def test_the_cbow_step_is_autograd_on_the_context_mean_with_the_whole_step_to_each_context_word(shared, max_load):
    # contexts with empty slots and repeated words (word 1 twice in one window, word 3 in two windows)
    g = torch.Generator().manual_seed(1)
    model = CBOW(7, 4, g)
    with torch.no_grad():
        model.W_out.weight.normal_(generator=g)
    contexts = torch.tensor([[1, 3, 1, -1], [-1, 3, 4, 6], [0, -1, -1, -1]])
    centers = torch.tensor([2, 5, 3])
    negatives = torch.tensor([4, 6]) if shared else torch.tensor([[4, 0], [1, 2], [6, 6]])
    weight = 1.5 if shared else 1.0
    v = model.W_in.weight.detach()
    assert torch.allclose(context_mean(v[contexts.clamp(min=0)], contexts >= 0)[0], (2 * v[1] + v[3]) / 3)
    model.max_load = max_load      # 1: words 1 and 3, in two slots each, take half of their summed step (8.13)
    step_matches_autograd(model, contexts, centers, negatives, weight,
                          lambda m: context_mean(m.W_in.weight[contexts.clamp(min=0)], contexts >= 0))


@pytest.mark.parametrize("max_load", [64, 2])
@pytest.mark.parametrize("architecture", ["skipgram", "cbow"])
def test_the_hierarchical_softmax_step_is_autograd_sgd_on_its_loss(architecture, max_load):
    # a tree of 9 words with 3 shared nodes: paths that cross the shared top and the nodes below it
    counts = torch.tensor([50, 20, 10, 10, 5, 3, 1, 1, 1])
    g = torch.Generator().manual_seed(2)
    tree = HuffmanTree.from_counts(counts, shared_nodes=3)
    if architecture == "skipgram":
        model, inputs = SkipGram(9, 4, g, tree=tree), torch.tensor([1, 1, 4, 8, 0])
        hidden = lambda m: m.W_in.weight[inputs]                                       # noqa: E731
    else:
        model, inputs = CBOW(9, 4, g, tree=tree), torch.tensor([[1, 2, -1, 8], [-1, 0, 0, 7], [5, 6, 7, 8],
                                                               [3, -1, -1, -1], [2, 2, 1, 1]])
        hidden = lambda m: context_mean(m.W_in.weight[inputs.clamp(min=0)], inputs >= 0)  # noqa: E731
    with torch.no_grad():
        model.W_node.weight.normal_(generator=g)
    model.max_load = max_load      # 2: the root (5 paths) and other nodes take 2 / m of their summed step (8.13)
    step_matches_autograd(model, inputs, torch.tensor([8, 0, 6, 6, 3]), None, 1.0, hidden)


def test_context_windows_hold_the_words_skipgram_pairs_with():
    ids = torch.arange(60) * 10                                                       # the id says the position
    contexts = context_windows(ids, 3, torch.Generator().manual_seed(5))
    centers, others = skipgram_pairs(ids, 3, torch.Generator().manual_seed(5))       # the same draw of b_t
    assert contexts.shape == (60, 6)
    from_rows = sorted((int(ids[t]), int(o)) for t in range(60) for o in contexts[t].tolist() if o >= 0)
    assert from_rows == sorted(zip(centers.tolist(), others.tolist()))
    for t in (0, 30, 59):                                                             # slot window - j is t - j
        for slot, o in enumerate(contexts[t].tolist()):
            j = slot - 3 + 1 if slot >= 3 else slot - 3
            assert o == -1 or o == ids[t + j]
    words, centres = cbow_examples(ids, 3, torch.Generator().manual_seed(5))
    assert torch.equal(words, contexts) and torch.equal(centres, ids)
    assert cbow_examples(torch.tensor([4]), 2)[0].shape == (0, 4)                   # one word has no context


def test_check_hs_log_prob_accepts_the_rule_and_names_wrong_ones(capsys):
    def right(h, W_node, points, codes):
        return F.logsigmoid((1 - 2 * codes).to(h.dtype) * (W_node[points] @ h)).sum()

    check_hs_log_prob(right)
    assert capsys.readouterr().out.startswith("✓ hs_log_prob gives eq. (8.11)")
    wrong = {"the loss": (lambda h, W, p, c: -right(h, W, p, c), "the loss"),
             "flipped bits": (lambda h, W, p, c: right(h, W, p, 1 - c), "the other convention"),
             "no sign": (lambda h, W, p, c: F.logsigmoid(W[p] @ h).sum(), "every branch is scored"),
             "probability": (lambda h, W, p, c: right(h, W, p, c).exp(), "its logarithm"),
             "not summed": (lambda h, W, p, c: F.logsigmoid((1 - 2 * c).to(h.dtype) * (W[p] @ h)), "one number")}
    for name, (answer, words) in wrong.items():
        with pytest.raises(CheckFailed, match=words):
            check_hs_log_prob(answer)


# --------------------------------------------------------------------------- subsampling (8.4), noise (8.3)

def test_keep_probabilities_are_word2vecs_formula():
    counts = torch.tensor([900, 90, 9, 1])          # f = 0.9, 0.09, 0.009, 0.001
    t = 0.01
    expected = [math.sqrt(t / f) + t / f for f in (0.9, 0.09, 0.009, 0.001)]
    expected = [min(1.0, p) for p in expected]     # [0.1165, 0.4444, 1, 1]
    assert keep_probabilities(counts, t).tolist() == pytest.approx(expected, rel=1e-6)
    assert keep_probabilities(counts, 0).tolist() == [1.0] * 4
    with pytest.raises(ValueError, match="sample"):
        keep_probabilities(counts, -1)
    with pytest.raises(ValueError, match="counts"):
        keep_probabilities(torch.tensor([[1, 2]]))


def test_subsample_keeps_each_word_at_its_rate():
    keep = torch.tensor([0.25, 1.0])
    ids = torch.tensor([0, 1] * 20_000)
    kept = subsample(ids, keep, torch.Generator().manual_seed(0))
    assert (kept == 1).sum() == 20_000                          # always kept
    assert abs((kept == 0).sum().item() / 20_000 - 0.25) < 0.01  # 4 standard deviations is 0.012


def test_noise_distribution_is_proportional_to_count_to_the_three_quarters():
    counts = torch.tensor([16, 1, 81, 0])
    p = noise_distribution(counts)
    expected = torch.tensor([8.0, 1.0, 27.0, 0.0]) / 36     # 16^0.75 = 8, 81^0.75 = 27
    assert torch.allclose(p, expected, atol=1e-7) and p.sum().item() == pytest.approx(1.0)
    assert torch.allclose(noise_distribution(counts, power=1.0), counts / counts.sum())
    draws = sample_noise(p.double().cumsum(0).float(), (200_000,), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4) / len(draws)
    assert freq[3] == 0                                        # a word never seen is never drawn
    assert torch.allclose(freq, expected, atol=0.004)           # 4 standard deviations


# --------------------------------------------------------------------------- pairs with dynamic windows (8.1)

def test_window_one_gives_every_neighbour_pair_both_ways():
    ids = torch.tensor([4, 7, 1, 9])
    centers, contexts = skipgram_pairs(ids, 1)
    assert sorted(zip(centers.tolist(), contexts.tolist())) == sorted(
        [(4, 7), (7, 4), (7, 1), (1, 7), (1, 9), (9, 1)])


def test_dynamic_windows_pair_each_position_with_its_b_t_neighbours():
    n, window, seed = 50, 4, 3
    ids = torch.arange(n)                                   # the id is the position
    centers, contexts = skipgram_pairs(ids, window, torch.Generator().manual_seed(seed))
    b = torch.randint(1, window + 1, (n,), generator=torch.Generator().manual_seed(seed))  # the same draw
    expected = sorted((t, t + j) for t in range(n) for j in range(-window, window + 1)
                      if j != 0 and abs(j) <= b[t] and 0 <= t + j < n)
    assert sorted(zip(centers.tolist(), contexts.tolist())) == expected
    with pytest.raises(ValueError, match="window must be"):
        skipgram_pairs(ids, 0)
    assert skipgram_pairs(torch.tensor([3]), 5)[0].numel() == 0


# --------------------------------------------------------------------------- vocabulary and training

def test_vocabulary_sorts_by_count_and_drops_rare_words():
    vocab = Vocabulary.from_tokens("b a c a b a d".split(), min_count=2)
    assert vocab.words == ["a", "b"] and vocab.counts.tolist() == [3, 2]
    assert vocab.encode("a x b b".split()).tolist() == [0, 1, 1]
    with pytest.raises(TypeError, match="split it into words"):
        Vocabulary.from_tokens("a b c")
    with pytest.raises(ValueError, match="no word occurs 9 times"):
        Vocabulary.from_tokens(["a", "b"], min_count=9)


def topic_corpus(n_sentences=1500, seed=0):
    """Sentences drawn from one of two topics: words of a topic only ever appear together."""
    g = torch.Generator().manual_seed(seed)
    topics = [[f"fruit{i}" for i in range(6)], [f"tool{i}" for i in range(6)]]
    tokens = []
    for _ in range(n_sentences):
        topic = topics[torch.randint(2, (1,), generator=g).item()]
        tokens += [topic[i] for i in torch.randint(6, (8,), generator=g).tolist()]
    return tokens


@pytest.mark.parametrize("architecture, objective", [(a, o) for a in w2v.ARCHITECTURES for o in w2v.OBJECTIVES])
def test_every_variant_puts_words_of_the_same_topic_together(architecture, objective):
    # batches of 64: a batch sums the steps of a word it holds many times, and this vocabulary has 12 words
    wv = train_word2vec(topic_corpus(), architecture=architecture, objective=objective, dim=16, window=2, epochs=3,
                        sample=0, min_count=1, lr=0.05, batch_size=64, threads=1, seed=0, progress_bar=False,
                        negatives=2)
    for word in ("fruit0", "tool3"):
        neighbours = [w for w, _ in wv.most_similar(word, k=5)]
        assert all(w[:4] == word[:4] for w in neighbours), (architecture, objective, word, neighbours)
    first, last = wv.stats["loss_curve"][0][1], wv.stats["loss_curve"][-1][1]
    assert last < first
    assert wv.stats["settings"]["architecture"] == architecture and wv.stats["settings"]["objective"] == objective
    examples = len(topic_corpus()) * 3
    assert wv.stats["pairs"] == examples if architecture == "cbow" else wv.stats["pairs"] > 1.5 * examples


@pytest.mark.parametrize("shared_negatives", ["auto", None])
def test_training_puts_words_of_the_same_topic_together(shared_negatives):
    wv = train_word2vec(topic_corpus(), dim=16, window=2, epochs=3, sample=0, min_count=1, lr=0.05,
                        batch_size=256, threads=1, seed=0, progress_bar=False, shared_negatives=shared_negatives,
                        negatives=2)
    assert len(wv) == 12 and wv.dim == 16
    for word in ("fruit0", "tool3"):
        neighbours = [w for w, _ in wv.most_similar(word, k=5)]
        assert all(w[:4] == word[:4] for w in neighbours), (word, neighbours)
    assert wv.stats["words_per_second"] > 0 and wv.stats["pairs"] > 0
    first, last = wv.stats["loss_curve"][0][1], wv.stats["loss_curve"][-1][1]
    assert last < first


def test_training_is_reproducible_with_one_thread():
    tokens = topic_corpus(300)
    runs = [train_word2vec(tokens, dim=8, epochs=1, min_count=1, threads=1, seed=1, progress_bar=False)
            for _ in range(2)]
    assert torch.equal(runs[0].vectors, runs[1].vectors)


@pytest.mark.parametrize("shared_negatives", [4, None])
def test_a_chunk_decays_the_learning_rate_and_touches_only_its_words_and_noise_words(shared_negatives):
    # Words 0-5 make the chunk; the noise distribution puts all its mass on words 6 and 7; words 8-11
    # are in neither, so no row of theirs may move, and only the chunk's centers move in W_in.
    g = torch.Generator().manual_seed(0)
    model = SkipGram(12, 4, g)
    with torch.no_grad():
        model.W_out.weight.normal_(generator=g)
    W_in, W_out = model.W_in.weight.clone(), model.W_out.weight.clone()
    cdf = noise_distribution(torch.tensor([0] * 6 + [5, 3] + [0] * 4)).double().cumsum(0).float()
    steps = []                                          # (centers, contexts, noise words, eta) of every step
    sgd_step = model.sgd_step

    def recording_step(centers, contexts, negatives, lr, *args, **kwargs):
        steps.append((centers, contexts, negatives, lr))
        return sgd_step(centers, contexts, negatives, lr, *args, **kwargs)

    model.sgd_step = recording_step
    chunk = torch.randint(6, (400,), generator=g)
    progress = Progress(corpus_words=1_000, total_words=2_000, words_done=600)   # 30% of the training done
    train_chunk(model, chunk, progress, keep=torch.ones(12), cdf=cdf, window=2, negatives=3,
                shared_negatives=shared_negatives, lr=0.1, batch_size=8, generator=g)

    etas = [eta for *_, eta in steps]
    assert etas[0] == pytest.approx(0.1 * (1 - 600 / 2_000))            # (8.6) where the chunk starts ...
    assert all(a > b for a, b in zip(etas, etas[1:]))                   # ... falling batch by batch ...
    assert etas[-1] > 0.1 * (1 - 1_000 / 2_000)                         # ... towards where it ends
    assert all(s[2].shape == ((shared_negatives,) if shared_negatives else (len(s[0]), 3)) for s in steps)
    assert set(torch.cat([s[2].reshape(-1) for s in steps]).tolist()) == {6, 7}
    moved_in = (model.W_in.weight != W_in).any(1).nonzero().reshape(-1).tolist()
    moved_out = (model.W_out.weight != W_out).any(1).nonzero().reshape(-1).tolist()
    assert moved_in == list(range(6)) and moved_out == list(range(8))
    assert progress.words_done == 1_000 and progress.pairs == sum(len(s[0]) for s in steps)
    # one loss in 16 batches, a point every 4 losses, and the chunk's last losses as a point at its end
    assert len(progress.curve) == math.ceil(math.ceil(len(steps) / 16) / 4)
    assert progress.curve[-1][0] == 1_000 / 1_000          # in epochs: one of the two


def test_a_failing_worker_stops_the_others_and_its_error_reaches_the_caller(monkeypatch):
    taken = []

    def worker(w, next_job):
        while (job := next_job()) is not None:
            taken.append(job)
            if job == 2:
                raise ValueError("job 2 failed")
            time.sleep(0.002)

    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match="job 2 failed"):
        run_hogwild(range(1_000), worker, threads=2)
    assert 3 <= len(taken) < 1_000                      # the other worker stopped long before the end
    assert torch.get_num_threads() == threads           # torch's thread count is restored
    taken.clear()
    with pytest.raises(ValueError, match="job 2 failed"):
        run_hogwild(range(10), worker, threads=None)    # one worker in this thread, as on a GPU
    assert taken == [0, 1, 2]
    # without a failure every job is done exactly once
    done = []
    run_hogwild(range(50), lambda w, next_job: done.extend(iter(next_job, None)), threads=3)
    assert sorted(done) == list(range(50))
    # and train_word2vec hands on what its workers raise
    monkeypatch.setattr(w2v, "train_chunk", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train_word2vec(topic_corpus(50), min_count=1, threads=2, progress_bar=False)
    assert torch.get_num_threads() == threads


def test_training_explains_bad_input():
    with pytest.raises(TypeError, match="one string"):
        train_word2vec("the whole text as one string", progress_bar=False)
    with pytest.raises(ValueError, match="pass the Vocabulary"):
        train_word2vec(torch.tensor([0, 1, 2]), progress_bar=False)
    with pytest.raises(ValueError, match="dim must be"):
        train_word2vec(["a"] * 10, dim=0, min_count=1, progress_bar=False)
    with pytest.raises(ValueError, match="shared_negatives"):
        train_word2vec(["a"] * 10, shared_negatives="all", min_count=1, progress_bar=False)
    with pytest.raises(ValueError, match="architecture must be one of 'skipgram', 'cbow'"):
        train_word2vec(["a"] * 10, architecture="sg", min_count=1, progress_bar=False)
    with pytest.raises(ValueError, match="objective must be one of"):
        train_word2vec(["a"] * 10, objective="hs", min_count=1, progress_bar=False)


# --------------------------------------------------------------------------- word-vector measures

def hand_made_vectors():
    """Word = family + sign * gender, with orthonormal directions: every vector has length sqrt(2),
    and woman - man + king is exactly queen."""
    e = torch.eye(8)
    gender = e[7]
    rows = {}
    for i, (male, female) in enumerate([("man", "woman"), ("king", "queen"), ("boy", "girl"),
                                        ("prince", "princess")]):
        rows[male], rows[female] = e[i] + gender, e[i] - gender
    rows["apple"], rows["pear"] = e[5] + e[6], e[5] - e[6]
    rows["uncle"], rows["aunt"] = e[4] + gender, e[4] - gender
    words = list(rows)  # the order says which words are "frequent": uncle and aunt are 11th and 12th
    return WordVectors(words, torch.stack([rows[w] for w in words]))


def test_analogies_on_hand_made_vectors_with_known_answers():
    wv = hand_made_vectors()
    assert wv.analogy("man", "king", "woman")[0][0] == "queen"
    assert wv.analogy("man", "king", "woman")[0][1] == pytest.approx(1.0)
    questions = {
        "family": [("Man", "Woman", "King", "Queen"),     # right (upper case is lower-cased)
                   ("boy", "girl", "prince", "princess"),  # right
                   ("man", "woman", "uncle", "aunt")],     # uncle/aunt are outside the 10 most frequent
        "gram-gender": [("boy", "girl", "man", "woman"),    # right: girl - boy + man = woman
                        ("man", "woman", "king", "boy")],   # wrong: the answer is queen
    }
    result = analogy_accuracy(wv, questions, restrict_vocab=10)
    assert result["n_questions"] == 5 and result["n_covered"] == 4 and result["coverage"] == 0.8
    assert result["semantic"] == 1.0 and result["syntactic"] == 0.5 and result["accuracy"] == 0.75
    assert result["sections"] == {"family": (2, 2), "gram-gender": (1, 2)}
    assert analogy_accuracy(wv, questions)["n_covered"] == 5
    answers = analogy_accuracy(wv, questions, restrict_vocab=10, details=True)["answers"]
    assert answers[-1] == ("gram-gender", ("man", "woman", "king", "boy"), "queen")


def test_similarity_spearman_and_neighbours():
    wv = hand_made_vectors()
    pairs = [("king", "prince", 5.0), ("king", "queen", 1.0), ("apple", "pear", 0.5), ("king", "man", 6.0),
             ("king", "zebra", 9.0)]
    result = similarity_spearman(wv, pairs)
    assert result["n_covered"] == 4 and result["coverage"] == 0.8
    # cos(king, prince) = 0.5, cos(king, man) = 0.5, cos(king, queen) = 0, cos(apple, pear) = 0
    cos = [float(cosine_similarity(wv[a][None], wv[b][None])) for a, b, _ in pairs[:4]]
    assert cos == pytest.approx([0.5, 0.0, 0.0, 0.5], abs=1e-6)
    # ranks with ties: model (3.5, 1.5, 1.5, 3.5), human (3, 2, 1, 4): Pearson of the ranks is 2 / sqrt(5)
    assert result["spearman"] == pytest.approx(2 / math.sqrt(5), abs=1e-6)
    x, y = torch.randn(2, 40, generator=torch.Generator().manual_seed(0)).round(decimals=1).tolist()
    assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, rel=1e-9)  # with ties
    keys = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    values, indices = nearest_neighbours(keys[:7], keys, k=3, batch_size=2)
    brute = cosine_similarity(keys[:7], keys).topk(3, dim=1)
    assert torch.equal(indices, brute.indices) and torch.allclose(values, brute.values)
    assert (indices[:, 0] == torch.arange(7)).all()          # each key is its own nearest neighbour
    with pytest.raises(KeyError, match="not in the vocabulary"):
        wv["zebra"]


def test_word_vectors_save_and_load(tmp_path):
    wv = hand_made_vectors()
    again = WordVectors.load(wv.save(tmp_path / "wv.pt"))
    assert again.words == wv.words and torch.equal(again.vectors, wv.vectors)
    with pytest.raises(ValueError, match="one vector per word"):
        WordVectors(["a", "b"], torch.zeros(3, 2))


def test_word_vectors_refuse_a_crafted_pickle(tmp_path):
    from unsuplab.train import UnsafeCheckpointError

    class WritesAFile:
        def __reduce__(self):
            return exec, (f"open({str(tmp_path / 'pwned.txt')!r}, 'w').write('ran foreign code')",)

    torch.save({"words": ["a"], "vectors": torch.zeros(1, 2), "counts": None, "stats": WritesAFile()},
               tmp_path / "wv.pt")
    with pytest.raises(UnsafeCheckpointError, match="wv.pt is not a safe checkpoint"):
        WordVectors.load(tmp_path / "wv.pt")
    assert not (tmp_path / "pwned.txt").exists()


# --------------------------------------------------------------------------- corpora (unsuplab.data)

def test_tokenize_keeps_letters_of_every_script():
    assert data.tokenize("Don't panic, 42 times!") == ["don", "t", "panic", "times"]
    assert data.tokenize("Ça déjà, Straße") == ["ça", "déjà", "straße"]


def test_text8_is_registered_for_download_with_its_checksum():
    entry = data.REGISTRY["text/text8.zip"]
    assert entry.size == 31_344_016 and entry.urls == ("https://mattmahoney.net/dc/text8.zip",)
    assert "text/text8.zip" in data.ONLINE_ONLY


def test_text8_is_read_from_its_zip(tmp_path, monkeypatch):
    # a stand-in text8.zip, registered under its own checksum, found in a tmp mirror
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("text8", " anarchism originated as a term of abuse" * 3)
    content = buffer.getvalue()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "text8.zip").write_bytes(content)
    monkeypatch.setitem(data.REGISTRY, "text/text8.zip", data.RemoteFile(
        "text/text8.zip", (), hashlib.sha256(content).hexdigest(), len(content), "test"))
    monkeypatch.setenv(data.MIRROR_ENV, str(tmp_path))
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    assert data.corpus_tokens("text8")[:3] == ["anarchism", "originated", "as"]
    assert len(data.corpus_tokens("text8")) == 21 and len(data.corpus_tokens("text8", max_words=4)) == 4
    assert data.english_corpus() == "text8"


@needs_mirror
def test_corpus_tokens_streams_exactly_what_tokenize_gives(monkeypatch, tmp_path):
    whole = data.tokenize(data.read_text("tinyshakespeare"))
    assert data.corpus_tokens("tinyshakespeare") == whole   # 1.1 MB: several blocks, words cut between them
    assert data.corpus_tokens("enwiki-17M", max_words=1_000)[:3] == ["anarchism", "anarchism", "is"]
    with pytest.raises(ValueError, match="did you mean 'enwiki-17M'"):
        data.corpus_tokens("enwiki17M")
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))   # text8 in neither the mirror nor the cache
    assert data.english_corpus(download=False) == "enwiki-17M"


@needs_mirror
def test_the_variants_benchmark_runs_and_writes_every_variant(tmp_path):
    # a tiny run of benchmarks/word2vec_variants.py: the measured numbers come from runs on the whole corpus
    import json
    import runpy
    from pathlib import Path

    pytest.importorskip("gensim")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "word2vec_variants.py"
    out = tmp_path / "variants.json"
    runpy.run_path(str(script))["main"](["--corpus", "enwiki-17M", "--max-words", "30000", "--scaling-words", "30000",
                                         "--scaling-vocab", "100", "400", "--workers", "1", "--allow-busy",
                                         "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"skipgram+negative_sampling", "cbow+negative_sampling",
                                       "skipgram+hierarchical_softmax", "cbow+hierarchical_softmax"}
    for name, run in result["variants"].items():
        assert run["lr"] == (0.05 if name.startswith("cbow") else 0.025)
        for who in ("unsuplab", "gensim"):
            assert run[who]["words_per_cpu_second"] > 0 and 0 <= run[who]["analogy_acc"] <= 1
        assert run["speed_ratio_cpu"] > 0
    cbow, skipgram = (result["variants"][f"{a}+negative_sampling"]["unsuplab"]["examples"] for a in ("cbow", "skipgram"))
    assert 2 * cbow < skipgram                                   # one example per position against one per pair
    tree = result["tree"]
    assert tree["entropy_bits"] <= tree["mean_code_length"] < tree["entropy_bits"] + 1 <= tree["log2_vocab"] + 1
    assert [row["vocab_size"] for row in result["scaling"]] == [100, 400]
    assert result["scaling"][0]["mean_code_length"] < result["scaling"][1]["mean_code_length"]
