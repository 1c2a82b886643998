"""Chapter 9, part 2: unsupervised NMT (the noise model, the shared encoder-decoder, back-translation, the
trainers, round-trip BLEU), against exact answers on tiny cases."""

import math

import pytest
import torch

from unsuplab.models import unmt


@pytest.fixture
def one_thread():
    """Tiny models take many small steps: on a shared CPU, threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- the noise model (9.8)

def batch(sentences):
    return unmt.pad(sentences)


def test_local_shuffle_moves_no_word_more_than_k_places_and_keeps_the_words():
    torch.manual_seed(0)
    lengths = torch.randint(1, 30, (200,))
    x = torch.zeros(200, 30, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        x[i, :n] = torch.arange(1, n + 1)               # word j sits at place j - 1
    for k in (0, 1, 3):
        y = unmt.local_shuffle(x, lengths, k=k, generator=torch.Generator().manual_seed(k))
        moved = (y - 1 - torch.arange(30)).abs()        # |sigma(i) - i| where there is a word
        assert int(moved[y > 0].max()) <= k
        assert torch.equal(y.sort(1).values, x.sort(1).values)             # same words, padding kept
        assert torch.equal((y > 0).sum(1), lengths)                        # padding stays at the end
        assert bool(((y > 0).int().diff(dim=1) <= 0).all())
    assert torch.equal(unmt.local_shuffle(x, lengths, k=0), x)
    assert not torch.equal(unmt.local_shuffle(x, lengths, k=3), x)


def test_word_drop_never_empties_a_sentence_and_keeps_the_order():
    x, lengths = batch([[5, 6, 7], [8], [9, 10, 11, 12, 13]] * 100)
    g = torch.Generator().manual_seed(0)
    y, new_lengths = unmt.word_drop(x, lengths, p=0.9, generator=g)
    assert int(new_lengths.min()) >= 1 and bool((new_lengths <= lengths).all())
    for row, n, orig, m in zip(y.tolist(), new_lengths.tolist(), x.tolist(), lengths.tolist()):
        kept = row[:n]
        assert all(t != 0 for t in kept) and all(t == 0 for t in row[n:])
        it = iter(orig[:m])
        assert all(t in it for t in kept)               # a subsequence: the order is kept
    y0, l0 = unmt.word_drop(x, lengths, p=0.0)
    assert torch.equal(y0, x) and torch.equal(l0, lengths)
    rate = 1 - unmt.word_drop(x, lengths, p=0.3, generator=g)[1].sum() / lengths.sum()
    assert 0.2 < rate < 0.4


def test_noise_rejects_bad_settings():
    x, lengths = batch([[5, 6, 7]])
    with pytest.raises(ValueError, match=r"p \(the probability of dropping a word\)"):
        unmt.word_drop(x, lengths, p=1.0)
    with pytest.raises(ValueError, match="whole number >= 0"):
        unmt.local_shuffle(x, lengths, k=-1)
    with pytest.raises(ValueError, match=r"expected padded ids x \(B, T\)"):
        unmt.add_noise(x[0], lengths)


# --------------------------------------------------------------------------- vocabulary and model

def tiny_vocab():
    return unmt.MTVocab.build({"en": [["a", "cat", "."], ["a", "dog", "."]] * 2,
                               "fr": [["un", "chat", "."], ["un", "chien", "."]] * 2}, min_count=1)


def test_tokenize_detokenize_and_vocabulary_blocks():
    assert unmt.tokenize_sentence("L'homme court, vite.") == ["l'", "homme", "court", ",", "vite", "."]
    assert unmt.detokenize(["l'", "homme", "court", ",", "vite", "."]) == "l'homme court, vite."
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
        unmt.tokenize_sentence(["a", "list"])


def test_seq2seq_loss_shapes_and_greedy_generation_stays_in_the_target_language(one_thread):
    torch.manual_seed(0)
    v = tiny_vocab()
    model = unmt.Seq2Seq(v, d_model=16, nhead=2, layers=1, ff=32, dropout=0.0)
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
    v = unmt.MTVocab.build({"en": [["a", "cat", "paris"]], "fr": [["un", "chat", "paris"]]}, min_count=1)
    wbw = unmt.WordByWord(v, {("en", "fr"): {"a": "un", "cat": "chat"}, ("fr", "en"): {"un": "a", "chat": "cat"}})
    x, x_len = v.batch([["a", "cat", "paris"], ["cat"]], "en")
    out, lengths = wbw.generate(x, x_len, "fr")
    assert [v.decode(r[:n]) for r, n in zip(out.tolist(), lengths.tolist())] == [["un", "chat", "paris"], ["chat"]]
    assert unmt.translate_ids(wbw, [v.encode(["chat", "un"], "fr")], "en") == [v.encode(["cat", "a"], "en")]


def test_back_translation_step_trains_on_the_previous_models_output():
    """Eq. (9.10) with a word-by-word M: the loss is the model's loss on (C(M(y)), y), with no gradient to M."""
    v = unmt.MTVocab.build({"en": [["a", "cat"]], "fr": [["un", "chat"]]}, min_count=1)
    wbw = unmt.WordByWord(v, {("fr", "en"): {"un": "a", "chat": "cat"}, ("en", "fr"): {}})
    torch.manual_seed(0)
    model = unmt.Seq2Seq(v, d_model=16, nhead=2, layers=1, ff=32, dropout=0.0)
    y, y_len = v.batch([["un", "chat"]], "fr")
    loss = unmt.back_translation_loss(model, wbw, y, y_len, "fr", "en", p_drop=0.0, k=0)
    x_hat, x_len = v.batch([["a", "cat"]], "en")
    assert torch.allclose(loss, model(x_hat, x_len, y, y_len, "fr"))
    loss.backward()
    assert model.embed.weight.grad is not None


# --------------------------------------------------------------------------- data

def test_monolingual_halves_are_disjoint_and_cover_the_corpus():
    a, b = unmt.monolingual_halves(101, seed=0)
    assert len(a) == 50 and len(b) == 51
    assert set(a.tolist()).isdisjoint(b.tolist()) and sorted(a.tolist() + b.tolist()) == list(range(101))


# --------------------------------------------------------------------------- the word-by-word start

def test_best_translations_prefers_the_candidate_seen_in_the_target_corpus():
    pairs = [("the", "le"), ("the", "la"), ("the", "les"), ("cat", "chat"), ("cat", "matou"), ("xyz", "abc")]
    assert unmt.best_translations(pairs) == {"the": "le", "cat": "chat", "xyz": "abc"}
    counts = {"la": 5, "le": 9, "les": 2, "matou": 1}
    assert unmt.best_translations(pairs, counts) == {"the": "le", "cat": "matou"}


def test_embeddings_start_at_the_dictionary_translation():
    v = unmt.MTVocab.build({"en": [["a", "cat"]], "fr": [["un", "chat", "seul"]]}, min_count=1)
    wbw = unmt.WordByWord(v, {("fr", "en"): {"un": "a", "chat": "cat"}, ("en", "fr"): {}})
    model = unmt.Seq2Seq(v, d_model=8, nhead=2, layers=1, ff=16)
    E = model.embed.weight
    assert unmt.init_embeddings_from_dictionary(model, wbw, "en", "fr") == 2
    assert torch.equal(E[v.index["fr"]["chat"]], E[v.index["en"]["cat"]])
    assert not torch.equal(E[v.index["fr"]["seul"]], E[v.index["en"]["cat"]])


def test_translate_ids_returns_the_input_order_and_the_loss_rejects_words_of_another_language():
    v = unmt.MTVocab.build({"en": [["a", "cat", "sat"]], "fr": [["un", "chat", "assis"]]}, min_count=1)
    wbw = unmt.WordByWord(v, {("en", "fr"): {"a": "un", "cat": "chat", "sat": "assis"}, ("fr", "en"): {}})
    sentences = [["a", "cat", "sat"], ["cat"], ["sat", "a"]]
    out = unmt.translate_ids(wbw, [v.encode(s, "en") for s in sentences], "fr", batch_size=2)
    assert [v.decode(o) for o in out] == [["un", "chat", "assis"], ["chat"], ["assis", "un"]]
    model = unmt.Seq2Seq(v, d_model=8, nhead=2, layers=1, ff=16)
    x, x_len = v.batch([["a", "cat"]], "en")
    with pytest.raises(ValueError, match="not words of 'fr'"):
        model(x, x_len, x, x_len, "fr")


# --------------------------------------------------------------------------- a tiny two-language world

DICTIONARY = {"a": "un", "the": "le", "cat": "chat", "dog": "chien", "sat": "assis", "ran": "court",
              "on": "sur", "mat": "tapis", ".": "."}
ENGLISH = [["a", "cat", "sat", "on", "the", "mat", "."], ["the", "dog", "ran", "."], ["a", "dog", "sat", "."],
           ["the", "cat", "ran", "on", "a", "mat", "."]]


def tiny_world():
    """Two languages whose sentences translate word for word, and the word-by-word translator M^(0)."""
    french = [[DICTIONARY[w] for w in s] for s in ENGLISH]
    vocab = unmt.MTVocab.build({"en": ENGLISH, "fr": french}, min_count=1)
    mono = {"en": [vocab.encode(s, "en") for s in ENGLISH], "fr": [vocab.encode(s, "fr") for s in french]}
    wbw = unmt.WordByWord(vocab, {("en", "fr"): DICTIONARY, ("fr", "en"): {b: a for a, b in DICTIONARY.items()}})
    return vocab, mono, wbw


def tiny_model(vocab, seed=0):
    torch.manual_seed(seed)
    return unmt.Seq2Seq(vocab, d_model=16, nhead=2, layers=1, ff=32, dropout=0.0)


def state(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def same_weights(a, b):
    return all(torch.equal(a[name], b[name]) for name in a)


# --------------------------------------------------------------------------- back-translations of a round

def test_back_translations_look_up_each_sentence_of_a_batch_and_refuse_others():
    vocab, mono, wbw = tiny_world()
    back = unmt.BackTranslations(wbw, mono["fr"], "en", batch_size=3)
    assert len(back) == 4
    y, y_len = unmt.pad([mono["fr"][2], mono["fr"][0], mono["fr"][2]])
    assert all(torch.equal(a, b) for a, b in zip(back.generate(y, y_len, "en"), wbw.generate(y, y_len, "en")))
    # in back_translation_loss, the stored M(y) gives the same loss as translating y there and then
    model = tiny_model(vocab)
    torch.manual_seed(1)
    looked_up = unmt.back_translation_loss(model, back, y, y_len, "fr", "en")
    torch.manual_seed(1)
    assert torch.equal(looked_up, unmt.back_translation_loss(model, wbw, y, y_len, "fr", "en"))
    unseen, unseen_len = unmt.pad([mono["fr"][1][:2]])
    with pytest.raises(ValueError, match="sentence 0 of the batch, .* is not one of the 4 sentences"):
        back.generate(unseen, unseen_len, "en")
    with pytest.raises(ValueError, match="into 'en', not 'fr'"):
        back.generate(y, y_len, "fr")


# --------------------------------------------------------------------------- the trainers

@pytest.mark.parametrize("scores, best_round", [([2.0, 1.0], 1), ([1.0, 2.0], 2)])
def test_train_unmt_logs_the_four_terms_and_restores_the_selected_round(one_thread, scores, best_round):
    vocab, mono, wbw = tiny_world()
    model = tiny_model(vocab)
    snapshots = []

    def evaluate(m):
        snapshots.append(state(m))                       # the weights of the round being scored
        return {"score": scores[len(snapshots) - 1]}

    history = unmt.train_unmt(model, mono, wbw, iterations=2, steps=3, batch_size=4, lr=1e-2, warmup=1,
                              evaluate=evaluate, select="score", seed=0, progress_bar=False)
    per_round = history.epochs                           # one row per round
    assert per_round["round"] == [1, 2] and per_round["score"] == scores and history.seconds > 0
    for term in ("auto_en", "auto_fr", "bt_en_fr", "bt_fr_en"):
        assert len(per_round[term]) == 2 and all(math.isfinite(v) and v > 0 for v in per_round[term]), term
        steps = history.steps[term]                      # every step's term; the row holds each round's mean
        assert len(steps) == 6 and per_round[term] == [sum(steps[:3]) / 3, sum(steps[3:]) / 3], term
    assert history.steps["step"] == [1, 2, 3, 4, 5, 6]   # counted across the rounds
    assert history.info == {"best_round": best_round}
    assert not same_weights(snapshots[0], snapshots[1])            # round 2 trained on
    assert same_weights(state(model), snapshots[best_round - 1])   # and the selected round came back
    assert not model.training


def test_train_unmt_trains_with_back_translation_loss_from_the_previous_model(monkeypatch, one_thread):
    """The function the tests and the lab check is the one that trains: each step calls back_translation_loss
    once per direction, with the back-translations of the previous round's model."""
    vocab, mono, wbw = tiny_world()
    calls, built_from = [], []
    original_loss, original_back = unmt.back_translation_loss, unmt.BackTranslations

    def counted(model, translator, y, y_len, lang_y, lang_x, *args, **kwargs):
        loss = original_loss(model, translator, y, y_len, lang_y, lang_x, *args, **kwargs)
        calls.append((type(translator).__name__, f"bt_{lang_x}_{lang_y}", loss.item()))
        return loss

    class Recorded(original_back):
        def __init__(self, translator, *args, **kwargs):
            built_from.append(type(translator).__name__)
            super().__init__(translator, *args, **kwargs)

    monkeypatch.setattr(unmt, "back_translation_loss", counted)
    monkeypatch.setattr(unmt, "BackTranslations", Recorded)
    history = unmt.train_unmt(tiny_model(vocab), mono, wbw, iterations=2, steps=3, batch_size=4, lr=1e-2, warmup=1,
                              seed=0, progress_bar=False)
    assert len(calls) == 2 * 3 * 2 and {c[0] for c in calls} == {"Recorded"}
    assert built_from == ["WordByWord", "WordByWord", "Seq2Seq", "Seq2Seq"]     # M^(0), then M^(1)
    for term in ("bt_en_fr", "bt_fr_en"):                # the logged term is the mean of what it returned
        first_round = [value for _, name, value in calls[:6] if name == term]
        assert history.epochs[term][0] == pytest.approx(sum(first_round) / 3)
        assert history.steps[term][:3] == pytest.approx(first_round)
    assert history.info == {"best_round": 0}             # nothing selected


def test_train_supervised_learns_a_tiny_translation_task(one_thread):
    vocab, mono, _ = tiny_world()
    model = tiny_model(vocab)
    x, x_len = unmt.pad(mono["en"])
    y, y_len = unmt.pad(mono["fr"])

    def loss_en_fr():
        model.eval()
        with torch.no_grad():
            return model(x, x_len, y, y_len, "fr").item()

    before = loss_en_fr()
    history = unmt.train_supervised(model, mono, steps=40, batch_size=4, lr=1e-2, warmup=1, seed=0, progress_bar=False)
    assert loss_en_fr() < 0.5 * before
    assert set(history.epochs) == {"sup_en_fr", "sup_fr_en"} and len(history.epochs["sup_en_fr"]) == 1  # the whole run
    steps = history.steps["sup_en_fr"]                   # every step's loss; the row holds their mean
    assert len(steps) == 40 and history.epochs["sup_en_fr"][0] == sum(steps) / 40
    assert history.seconds > 0


def test_train_supervised_rejects_corpora_that_do_not_pair_line_by_line():
    vocab, mono, _ = tiny_world()
    model = tiny_model(vocab)
    with pytest.raises(ValueError, match="got 3 en and 4 fr sentences"):
        unmt.train_supervised(model, {"en": mono["en"][:3], "fr": mono["fr"]}, steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="got 1 languages"):
        unmt.train_supervised(model, {"en": mono["en"]}, steps=1, progress_bar=False)


# --------------------------------------------------------------------------- round-trip BLEU

def test_round_trip_bleu_is_100_for_a_faithful_round_trip_and_less_for_a_broken_one():
    pytest.importorskip("sacrebleu")
    vocab, _, wbw = tiny_world()
    sentences = [unmt.detokenize(s) for s in ENGLISH]          # "a cat sat on the mat."
    assert unmt.round_trip_bleu(wbw, sentences, "en", "fr") == pytest.approx(100.0)
    swapped = {b: a for a, b in DICTIONARY.items()} | {"chat": "dog", "chien": "cat"}   # mixes up the animals
    broken = unmt.WordByWord(vocab, {("en", "fr"): DICTIONARY, ("fr", "en"): swapped})
    assert unmt.round_trip_bleu(broken, sentences, "en", "fr") < 90


def test_init_embeddings_from_vectors_keeps_every_cosine_and_leaves_other_words_alone():
    vocab = unmt.MTVocab.build({"en": [["a", "dog", "runs"]], "fr": [["un", "chien", "court"]]}, min_count=1)
    torch.manual_seed(0)
    model = unmt.Seq2Seq(vocab, d_model=16, nhead=2, layers=1, ff=32, dropout=0.0)
    before = model.embed.weight.detach().clone()
    V = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    vectors = {"en": (["dog", "runs", "cat"], V[:3]), "fr": (["chien"], V[3:])}      # "cat" has no id
    assert unmt.init_embeddings_from_vectors(model, vectors) == 3
    E = model.embed.weight.detach()
    ids = [vocab.index["en"]["dog"], vocab.index["en"]["runs"], vocab.index["fr"]["chien"]]
    cos = torch.nn.functional.normalize(E[ids], dim=1)
    expected = V[[0, 1, 3]] @ V[[0, 1, 3]].T
    assert torch.allclose(cos @ cos.T, expected, atol=1e-5)                # a word and its translation stay neighbours
    assert torch.allclose(E[ids].norm(dim=1), before.norm(dim=1).mean().expand(3), atol=1e-5)   # same scale
    untouched = [i for i in range(len(vocab)) if i not in ids]
    assert torch.equal(E[untouched], before[untouched])
    with pytest.raises(ValueError, match="d <= d_model"):
        unmt.init_embeddings_from_vectors(model, {"en": (["dog"], torch.randn(1, 32))})
