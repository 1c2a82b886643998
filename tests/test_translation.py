"""Chapter 9: word translation (Procrustes, CSLS, the adversarial map) and unsupervised NMT (noise,
the shared encoder-decoder, back-translation, BLEU), against exact answers on tiny cases."""

import math
import os

import pytest
import torch

from unsuplab import data
from unsuplab.models import translation as T

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
    W = T.procrustes(X, X @ Q.T)                       # y_i = Q x_i exactly
    assert torch.allclose(W, Q, atol=1e-5)
    assert T.is_orthogonal(W)


def test_procrustes_is_the_best_orthogonal_map_under_noise():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 4, generator=g)
    Y = X @ random_orthogonal(4, 2).T + 0.3 * torch.randn(40, 4, generator=g)
    W = T.procrustes(X, Y)
    best = (X @ W.T - Y).norm()
    for seed in range(20):                              # no random orthogonal map does better
        assert (X @ random_orthogonal(4, 100 + seed).T - Y).norm() >= best - 1e-5
    # the closed form of eq. (9.1): W = U V^T with U S V^T = SVD(Y^T X)
    U, _, Vh = torch.linalg.svd(Y.T @ X)
    assert torch.allclose(W, U @ Vh, atol=1e-5)


def test_procrustes_speaks_to_the_student_about_bad_input():
    with pytest.raises(ValueError, match="pair row by row"):
        T.procrustes(torch.randn(5, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="matrix of word vectors"):
        T.procrustes(torch.randn(5), torch.randn(5))
    with pytest.raises(ValueError, match="floating-point"):
        T.procrustes(torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.long))


def test_orthogonalize_step_keeps_an_orthogonal_W_orthogonal_and_pulls_others_towards_it():
    Q = random_orthogonal(5, 3)
    W = Q.clone()
    for _ in range(100):
        T.orthogonalize_step(W, beta=0.01)
    assert torch.allclose(W, Q, atol=1e-5)              # a fixed point: (1+b) Q - b Q Q^T Q = Q
    W = Q + 0.05 * torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    distance = lambda M: (M @ M.T - torch.eye(5)).norm().item()
    before = distance(W)
    for _ in range(200):
        T.orthogonalize_step(W, beta=0.01)
    assert distance(W) < 0.1 * before
    assert not T.is_orthogonal(torch.randn(3, 4))        # not square: not orthogonal, no crash


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
    assert torch.allclose(T.csls(WX, Y, k=1), expected)
    assert torch.allclose(T.neighbourhood_density(Y, WX, k=1), r_S)
    # with k = 2, the densities are means of the two nearest
    assert torch.allclose(T.neighbourhood_density(WX, Y, k=2), torch.tensor([(1 + s) / 2, (1 + s) / 2]))


def test_csls_penalises_a_hub_that_nearest_neighbour_picks():
    # unit vectors at these angles (degrees): target 0 at 4 deg is the nearest neighbour of every source
    # word (a hub); x_0 at 10 deg is also close to target 1 at 20 deg, which no other source word wants
    angles = lambda a: torch.tensor([[math.cos(math.radians(t)), math.sin(math.radians(t))] for t in a])
    WX, Y = angles([10, 0, -3, 2]), angles([4, 20, -30])
    assert bool(((WX @ Y.T).argmax(1) == 0).all())
    _, nn_top = T.translate(WX, Y, [0], method="nn", k=2)
    _, csls_top = T.translate(WX, Y, [0], method="csls", k=2)
    assert nn_top.item() == 0 and csls_top.item() == 1
    # translate in batches = the whole CSLS matrix at once
    scores, top = T.translate(WX, Y, method="csls", k=2, topn=2, batch_size=2)
    full = T.csls(WX, Y, k=2)
    assert torch.allclose(scores, full.topk(2, dim=1).values) and torch.equal(top, full.topk(2, dim=1).indices)


def test_translate_and_precision_reject_bad_input():
    X = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError, match="'nn' .* or 'csls'"):
        T.translate(X, X, method="cosine")
    with pytest.raises(ValueError, match="k must be between 1"):
        T.neighbourhood_density(X, X, k=10)
    with pytest.raises(ValueError, match="nothing to score"):
        T.translation_precision(X, X, torch.zeros(0, 2, dtype=torch.long))


def test_translation_precision_counts_any_reference_translation():
    Y = torch.eye(4)
    WX = torch.eye(4)[[0, 1, 2]]                          # word i translates to target i
    pairs = torch.tensor([[0, 0], [1, 3], [1, 1], [2, 3]])  # word 1 has two references; word 2 is wrong
    p = T.translation_precision(WX, Y, pairs, method="nn", ks=(1, 4))
    assert p["P@1"] == pytest.approx(2 / 3) and p["P@4"] == 1.0 and p["n"] == 3


def test_dictionary_helpers():
    ids = T.dictionary_ids([("cat", "chat"), ("dog", "chien"), ("cow", "vache")], ["dog", "cat"], ["chat", "chien"])
    assert ids.tolist() == [[1, 0], [0, 1]]
    pairs = [(f"w{i}", f"t{j}") for i in range(20) for j in range(2)]
    train, test = T.split_dictionary(pairs, test_fraction=0.25)
    assert {a for a, _ in train}.isdisjoint({a for a, _ in test}) and len(test) == 10 and len(train) == 30


# --------------------------------------------------------------------------- the controlled case

@pytest.fixture
def one_thread():
    """The game takes thousands of tiny steps: on a shared CPU, threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_adversarial_alignment_and_procrustes_recover_a_hidden_rotation(one_thread):
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
    X, Y = T.normalize_embeddings(X), T.normalize_embeddings(Y)
    gold = torch.stack([torch.arange(n), perm], 1)
    assert T.translation_precision(X, Y, gold)["P@1"] < 0.05                          # the identity is wrong
    W, log = T.adversarial_alignment(X, Y, steps=400, batch_size=64, hidden=64, eval_every=100, lr=0.5,
                                     criterion_words=n, most_frequent=n, progress=False)
    assert len(log["criterion"]) == 4 and log["criterion"][-1] > 0.95
    W, refine_log = T.procrustes_refinement(X, Y, W, iterations=3, max_rank=n, criterion_words=n)
    assert T.is_orthogonal(W) and refine_log["pairs"][-1] > n / 2
    assert T.translation_precision(X @ W.T, Y, gold, method="csls")["P@1"] > 0.9
    assert (W - Q).norm() < 0.2


def test_induce_dictionary_keeps_mutual_nearest_neighbours_only():
    WX = torch.eye(3)
    Y = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.0], [0.9, 0.0, 0.1], [0.0, 0.0, 1.0]]), dim=1)
    pairs = T.induce_dictionary(WX, Y, k=1, method="nn")
    assert pairs.tolist() == [[0, 0], [2, 2]]            # x_1 -> y_0 -> x_0: not mutual, left out


# --------------------------------------------------------------------------- the noise model (9.8)

def batch(sentences):
    return T.pad(sentences)


def test_local_shuffle_moves_no_word_more_than_k_places_and_keeps_the_words():
    torch.manual_seed(0)
    lengths = torch.randint(1, 30, (200,))
    x = torch.zeros(200, 30, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        x[i, :n] = torch.arange(1, n + 1)               # word j sits at place j - 1
    for k in (0, 1, 3):
        y = T.local_shuffle(x, lengths, k=k, generator=torch.Generator().manual_seed(k))
        moved = (y - 1 - torch.arange(30)).abs()        # |sigma(i) - i| where there is a word
        assert int(moved[y > 0].max()) <= k
        assert torch.equal(y.sort(1).values, x.sort(1).values)             # same words, padding kept
        assert torch.equal((y > 0).sum(1), lengths)                        # padding stays at the end
        assert bool(((y > 0).int().diff(dim=1) <= 0).all())
    assert torch.equal(T.local_shuffle(x, lengths, k=0), x)
    assert not torch.equal(T.local_shuffle(x, lengths, k=3), x)


def test_word_drop_never_empties_a_sentence_and_keeps_the_order():
    x, lengths = batch([[5, 6, 7], [8], [9, 10, 11, 12, 13]] * 100)
    g = torch.Generator().manual_seed(0)
    y, new_lengths = T.word_drop(x, lengths, p=0.9, generator=g)
    assert int(new_lengths.min()) >= 1 and bool((new_lengths <= lengths).all())
    for row, n, orig, m in zip(y.tolist(), new_lengths.tolist(), x.tolist(), lengths.tolist()):
        kept = row[:n]
        assert all(t != 0 for t in kept) and all(t == 0 for t in row[n:])
        it = iter(orig[:m])
        assert all(t in it for t in kept)               # a subsequence: the order is kept
    y0, l0 = T.word_drop(x, lengths, p=0.0)
    assert torch.equal(y0, x) and torch.equal(l0, lengths)
    rate = 1 - T.word_drop(x, lengths, p=0.3, generator=g)[1].sum() / lengths.sum()
    assert 0.2 < rate < 0.4


def test_noise_rejects_bad_settings():
    x, lengths = batch([[5, 6, 7]])
    with pytest.raises(ValueError, match=r"p \(the probability of dropping a word\)"):
        T.word_drop(x, lengths, p=1.0)
    with pytest.raises(ValueError, match="whole number >= 0"):
        T.local_shuffle(x, lengths, k=-1)
    with pytest.raises(ValueError, match=r"expected padded ids x \(B, T\)"):
        T.add_noise(x[0], lengths)


# --------------------------------------------------------------------------- vocabulary and model

def tiny_vocab():
    return T.MTVocab.build({"en": [["a", "cat", "."], ["a", "dog", "."]] * 2,
                            "fr": [["un", "chat", "."], ["un", "chien", "."]] * 2}, min_count=1)


def test_tokenize_detokenize_and_vocabulary_blocks():
    assert T.tokenize_sentence("L'homme court, vite.") == ["l'", "homme", "court", ",", "vite", "."]
    assert T.detokenize(["l'", "homme", "court", ",", "vite", "."]) == "l'homme court, vite."
    v = tiny_vocab()
    assert v.itos[:6] == ["<pad>", "<unk>", "<eos>", "<s>", "<en>", "<fr>"]
    assert v.encode(["a", "cat", "zebra"], "en")[2] == v.unk_id
    assert v.encode(["."], "en") != v.encode(["."], "fr")       # each language has its own block
    assert v.decode(v.encode(["un", "chat"], "fr") + [v.eos_id, 7]) == ["un", "chat"]
    mask = v.lang_mask("fr")
    start, stop = v.lang_range("fr")
    assert mask.sum() == stop - start + 1 and mask[v.eos_id]
    with pytest.raises(ValueError, match="unknown language 'de'"):
        v.lang_id("de")
    with pytest.raises(TypeError, match="one sentence"):
        T.tokenize_sentence(["a", "list"])


def test_seq2seq_loss_shapes_and_greedy_generation_stays_in_the_target_language(one_thread):
    torch.manual_seed(0)
    v = tiny_vocab()
    model = T.Seq2Seq(v, d_model=16, nhead=2, layers=1, ff=32, dropout=0.0)
    x, x_len = v.batch([["a", "cat", "."], ["a", "dog"]], "en")
    loss = model(x, x_len, x, x_len, "en")
    assert loss.ndim == 0 and math.isfinite(loss.item())
    assert abs(loss.item() - math.log(len(v))) < 1.5         # untrained: about uniform
    out, lengths = model.generate(x, x_len, "fr", max_len=6)
    start, stop = v.lang_range("fr")
    written = out[torch.arange(out.shape[1])[None, :] < lengths[:, None]]
    assert bool(((written >= start) & (written < stop)).all()) and bool((lengths >= 1).all())
    # it learns to copy a sentence (the auto-encoder of 9.9 without noise) in a few steps
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        model(x, x_len, x, x_len, "en").backward()
        opt.step()
    model.eval()
    out, lengths = model.generate(x, x_len, "en")
    assert [v.decode(r[:n]) for r, n in zip(out.tolist(), lengths.tolist())] == [["a", "cat", "."], ["a", "dog"]]


def test_word_by_word_translates_with_the_dictionary_and_keeps_shared_spellings():
    v = T.MTVocab.build({"en": [["a", "cat", "paris"]], "fr": [["un", "chat", "paris"]]}, min_count=1)
    wbw = T.WordByWord(v, {("en", "fr"): {"a": "un", "cat": "chat"}, ("fr", "en"): {"un": "a", "chat": "cat"}})
    x, x_len = v.batch([["a", "cat", "paris"], ["cat"]], "en")
    out, lengths = wbw.generate(x, x_len, "fr")
    assert [v.decode(r[:n]) for r, n in zip(out.tolist(), lengths.tolist())] == [["un", "chat", "paris"], ["chat"]]
    assert T.translate_ids(wbw, [v.encode(["chat", "un"], "fr")], "en") == [v.encode(["cat", "a"], "en")]


def test_back_translation_step_trains_on_the_previous_models_output():
    """Eq. (9.10) with a word-by-word M: the loss is the model's loss on (C(M(y)), y), with no gradient to M."""
    v = T.MTVocab.build({"en": [["a", "cat"]], "fr": [["un", "chat"]]}, min_count=1)
    wbw = T.WordByWord(v, {("fr", "en"): {"un": "a", "chat": "cat"}, ("en", "fr"): {}})
    torch.manual_seed(0)
    model = T.Seq2Seq(v, d_model=16, nhead=2, layers=1, ff=32, dropout=0.0)
    y, y_len = v.batch([["un", "chat"]], "fr")
    loss = T.back_translation_loss(model, wbw, y, y_len, "fr", "en", p_drop=0.0, k=0)
    x_hat, x_len = v.batch([["a", "cat"]], "en")
    assert torch.allclose(loss, model(x_hat, x_len, y, y_len, "fr"))
    loss.backward()
    assert model.embed.weight.grad is not None


# --------------------------------------------------------------------------- BLEU (9.12)

SYSTEM = ["the cat sat on the mat .", "a man is riding a red bike down the street .",
          "two dogs play in the snow near a tree .", "a woman in a blue dress smiles ."]
REFERENCE = ["the cat sat on a mat .", "a man rides a red bicycle down the street .",
             "two dogs are playing in the snow by a tree .", "a woman in a blue dress is smiling ."]


def test_bleu_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    ours = T.bleu([s.split() for s in SYSTEM], [r.split() for r in REFERENCE])
    theirs = sacrebleu.corpus_bleu(SYSTEM, [REFERENCE], tokenize="none", smooth_method="none").score
    assert ours == pytest.approx(theirs, abs=1e-6) and 20 < ours < 80
    assert T.corpus_bleu(SYSTEM, REFERENCE) == pytest.approx(sacrebleu.corpus_bleu(SYSTEM, [REFERENCE], lowercase=True).score)
    # a short hypothesis is penalised by BP; identical text scores 100
    assert T.bleu([r.split() for r in REFERENCE], [r.split() for r in REFERENCE]) == pytest.approx(100)
    short = [s.split()[:-2] for s in REFERENCE]
    bp = math.exp(1 - sum(len(r.split()) for r in REFERENCE) / sum(map(len, short)))
    assert T.bleu(short, [r.split() for r in REFERENCE]) == pytest.approx(100 * bp)


def test_bleu_by_hand_on_one_sentence():
    # hyp "a b c d", ref "a b c e": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1 -> 0 without smoothing
    assert T.bleu([["a", "b", "c", "d"]], [["a", "b", "c", "e"]]) == 0.0
    # clipped counts: "the the the the" against "the cat": p1 = 1/4
    assert T.bleu([["the"] * 4], [["the", "cat"]], max_n=1) == pytest.approx(25.0)


def test_bleu_rejects_bad_input():
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        T.bleu([["a"]], [])
    with pytest.raises(TypeError, match="tokenised sentences"):
        T.bleu(["a b"], ["a b"])


def test_bleu_of_no_sentences_is_an_error_not_a_score():
    with pytest.raises(ValueError, match="no sentences to score"):
        T.bleu([], [])
    with pytest.raises(ValueError, match="no sentences to score"):
        T.corpus_bleu([], [])


# --------------------------------------------------------------------------- data

def test_monolingual_halves_are_disjoint_and_cover_the_corpus():
    a, b = T.monolingual_halves(101, seed=0)
    assert len(a) == 50 and len(b) == 51
    assert set(a.tolist()).isdisjoint(b.tolist()) and sorted(a.tolist() + b.tolist()) == list(range(101))


@needs_mirror
def test_bilingual_dictionaries_load_from_the_mirror():
    pairs = data.bilingual_dictionary("muse.en-fr.full")
    assert ("cat", "chat") in pairs and len(pairs) > 100_000
    assert ("dog", "hund") in data.bilingual_dictionary("muse.en-de.full")


# --------------------------------------------------------------------------- the word-by-word start

def test_best_translations_prefers_the_candidate_seen_in_the_target_corpus():
    pairs = [("the", "le"), ("the", "la"), ("the", "les"), ("cat", "chat"), ("cat", "matou"), ("xyz", "abc")]
    assert T.best_translations(pairs) == {"the": "le", "cat": "chat", "xyz": "abc"}
    counts = {"la": 5, "le": 9, "les": 2, "matou": 1}
    assert T.best_translations(pairs, counts) == {"the": "le", "cat": "matou"}


def test_embeddings_start_at_the_dictionary_translation():
    v = T.MTVocab.build({"en": [["a", "cat"]], "fr": [["un", "chat", "seul"]]}, min_count=1)
    wbw = T.WordByWord(v, {("fr", "en"): {"un": "a", "chat": "cat"}, ("en", "fr"): {}})
    model = T.Seq2Seq(v, d_model=8, nhead=2, layers=1, ff=16)
    E = model.embed.weight
    assert T.init_embeddings_from_dictionary(model, wbw, "en", "fr") == 2
    assert torch.equal(E[v.index["fr"]["chat"]], E[v.index["en"]["cat"]])
    assert not torch.equal(E[v.index["fr"]["seul"]], E[v.index["en"]["cat"]])


def test_translate_ids_returns_the_input_order_and_the_loss_rejects_words_of_another_language():
    v = T.MTVocab.build({"en": [["a", "cat", "sat"]], "fr": [["un", "chat", "assis"]]}, min_count=1)
    wbw = T.WordByWord(v, {("en", "fr"): {"a": "un", "cat": "chat", "sat": "assis"}, ("fr", "en"): {}})
    sentences = [["a", "cat", "sat"], ["cat"], ["sat", "a"]]
    out = T.translate_ids(wbw, [v.encode(s, "en") for s in sentences], "fr", batch_size=2)
    assert [v.decode(o) for o in out] == [["un", "chat", "assis"], ["chat"], ["assis", "un"]]
    model = T.Seq2Seq(v, d_model=8, nhead=2, layers=1, ff=16)
    x, x_len = v.batch([["a", "cat"]], "en")
    with pytest.raises(ValueError, match="not words of 'fr'"):
        model(x, x_len, x, x_len, "fr")
