"""BERT: attention against torch's fused kernel and a hand-computed case, the 80/10/10 masking rule
on a large batch, padding, sentence pairs, the tokeniser, the corpus parser and the training pieces."""

import math

import pytest
import torch
import torch.nn.functional as F

from unsuplab import data
from unsuplab.checks import CheckFailed
from unsuplab.models import bert as B


def small_config(**kw):
    return B.BertConfig(**{"vocab_size": 50, "max_len": 16, "d_model": 16, "n_layers": 2, "n_heads": 2,
                           "d_ff": 32, "dropout": 0.0, **kw})


# ----------------------------------------------------------------------------------------------- attention

def test_attention_matches_torch_scaled_dot_product_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 4, 7, 8, generator=g) for _ in range(3))
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = True
    pad[2, 2:] = True
    out, weights = B.attention(q, k, v, pad)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=~pad[:, None, None, :])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, weights @ v)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 7))
    assert (weights.masked_select(pad[:, None, None, :].expand_as(weights)) == 0).all()
    # without a mask too
    torch.testing.assert_close(B.attention(q, k, v)[0], F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_attention_by_hand_on_a_tiny_case():
    # one query against two keys in d_k = 2: scores q.k / sqrt(2) = (1/sqrt(2), 0)
    q = torch.tensor([[[[1.0, 0.0]]]])
    k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    v = torch.tensor([[[[10.0], [20.0]]]])
    out, weights = B.attention(q, k, v)
    w1 = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1.0)
    assert weights[0, 0, 0].tolist() == pytest.approx([w1, 1 - w1], abs=1e-6)
    assert out.item() == pytest.approx(10 * w1 + 20 * (1 - w1), abs=1e-5)
    # masking the first key leaves all the weight on the second
    out, weights = B.attention(q, k, v, torch.tensor([[True, False]]))
    assert weights[0, 0, 0].tolist() == [0.0, 1.0] and out.item() == pytest.approx(20.0)


def test_padded_keys_and_values_do_not_matter():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 6, 4, generator=g) for _ in range(3))
    pad = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
    k2, v2 = k.clone(), v.clone()
    k2[0, :, 4:] = 100.0
    v2[0, :, 4:] = -100.0
    torch.testing.assert_close(B.attention(q, k, v, pad)[0], B.attention(q, k2, v2, pad)[0])


def test_fused_and_hand_written_paths_agree():
    torch.manual_seed(0)
    mha = B.MultiHeadSelfAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    pad = torch.tensor([[False, False, False, True, True], [False] * 5])
    fused, none = mha(x, pad)
    explicit, weights = mha(x, pad, need_weights=True)
    assert none is None and weights.shape == (2, 4, 5, 5)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_encoder_respects_the_padding_mask():
    # The real tokens of a sequence get the same hidden states whether or not [PAD]s follow them.
    torch.manual_seed(0)
    enc = B.BertEncoder(small_config()).eval()
    ids = torch.tensor([[B.CLS_ID, 7, 8, 9, B.SEP_ID]])
    padded = torch.cat([ids, torch.full((1, 6), B.PAD_ID)], dim=1)
    with torch.no_grad():
        h = enc(ids)
        h_padded, maps = enc(padded, return_attention=True)
    torch.testing.assert_close(h_padded[:, :5], h, atol=1e-5, rtol=1e-5)
    for m in maps:  # (1, H, 11, 11): no weight on the padded keys
        assert m[..., 5:].abs().max() == 0


def test_encoder_and_config_errors():
    with pytest.raises(ValueError, match="multiple of n_heads"):
        B.BertConfig(vocab_size=50, d_model=10, n_heads=3)
    enc = B.BertEncoder(small_config())
    with pytest.raises(ValueError, match="longer than max_len=16"):
        enc(torch.full((1, 20), 7))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        enc(torch.full((20,), 7))


# ----------------------------------------------------------------------------------------------- masking

def special_heavy_batch(seed=0, shape=(400, 128), vocab_size=1000):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(B.N_SPECIAL, vocab_size, shape, generator=g)
    ids[:, 0] = B.CLS_ID
    ids[:, 60] = B.SEP_ID
    ids[:, 100:] = B.PAD_ID
    ids[:, 30] = B.UNK_ID
    ids[:, 31] = B.MASK_ID
    return ids


def test_masking_proportions_on_a_large_batch():
    ids = special_heavy_batch()
    before = ids.clone()
    torch.manual_seed(0)
    inputs, labels = B.mask_tokens(ids, 1000)
    assert torch.equal(ids, before)
    real = ids >= B.N_SPECIAL
    chosen = labels != B.IGNORE_INDEX
    n = int(chosen.sum())
    assert chosen.sum() / real.sum() == pytest.approx(0.15, abs=0.005)          # ~37,600 real tokens
    assert (chosen & (inputs == B.MASK_ID)).sum() / n == pytest.approx(0.8, abs=0.02)
    assert (chosen & (inputs != B.MASK_ID) & (inputs != ids)).sum() / n == pytest.approx(0.1, abs=0.015)
    assert (chosen & (inputs == ids)).sum() / n == pytest.approx(0.1, abs=0.015)
    assert not (chosen & ~real).any(), "a special token was chosen"
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    replaced = chosen & (inputs != B.MASK_ID) & (inputs != ids)
    assert (inputs[replaced] >= B.N_SPECIAL).all() and (inputs[replaced] < 1000).all()


def test_masking_never_touches_special_tokens_even_at_probability_one():
    ids = special_heavy_batch(1, (20, 128))
    inputs, labels = B.mask_tokens(ids, 1000, mask_prob=1.0)
    real = ids >= B.N_SPECIAL
    assert torch.equal(labels != B.IGNORE_INDEX, real)
    assert torch.equal(inputs[~real], ids[~real])
    inputs, labels = B.mask_tokens(ids, 1000, mask_prob=0.0)
    assert torch.equal(inputs, ids) and (labels == B.IGNORE_INDEX).all()


def test_masking_is_reproducible_with_a_generator_and_checks_its_input():
    ids = special_heavy_batch(2, (8, 64))
    a = B.mask_tokens(ids, 1000, generator=torch.Generator().manual_seed(3))
    b = B.mask_tokens(ids, 1000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(TypeError, match="integer token ids"):
        B.mask_tokens(ids.float(), 1000)
    with pytest.raises(ValueError, match="probability"):
        B.mask_tokens(ids, 1000, mask_prob=15)


def test_check_masking_accepts_the_rule_and_names_wrong_ones(capsys):
    B.check_masking(B.mask_tokens)
    assert capsys.readouterr().out.count("✓") == 5

    def masks_specials_too(ids, vocab_size):
        chosen = torch.rand(ids.shape) < 0.15
        return torch.where(chosen, B.MASK_ID, ids), torch.where(chosen, ids, B.IGNORE_INDEX)

    def always_mask(ids, vocab_size):
        chosen = (torch.rand(ids.shape) < 0.15) & (ids >= B.N_SPECIAL)
        return torch.where(chosen, B.MASK_ID, ids), torch.where(chosen, ids, B.IGNORE_INDEX)

    def in_place(ids, vocab_size):
        inputs, labels = B.mask_tokens(ids.clone(), vocab_size)
        ids.copy_(inputs)
        return inputs, labels

    with pytest.raises(CheckFailed, match="special tokens were chosen"):
        B.check_masking(masks_specials_too)
    with pytest.raises(CheckFailed, match="80%"):
        B.check_masking(always_mask)
    with pytest.raises(CheckFailed, match="in place"):
        B.check_masking(in_place)


# ----------------------------------------------------------------------------------------------- text

def test_tokenizer_fit_encode_decode():
    tok = B.WordTokenizer.fit(["The cat sat. The dog sat!", "the cat ran"], vocab_size=8, min_count=1)
    assert tok.vocab[:5] == list(B.SPECIAL_TOKENS)
    assert tok.vocab[5:] == ["the", "cat", "sat"]             # by count, then alphabetically
    assert B.WordTokenizer.tokenize("Paris is [MASK].") == ["paris", "is", "[MASK]", "."]
    ids = tok.encode("The cat [MASK] a dog")
    assert ids == [5, 6, B.MASK_ID, B.UNK_ID, B.UNK_ID]
    assert tok.decode(ids + [B.PAD_ID]) == "the cat [MASK] [UNK] [UNK]"
    batch = tok.encode_batch(["the cat sat", "cat"], seq_len=4)
    assert batch.tolist() == [[B.CLS_ID, 5, 6, B.SEP_ID], [B.CLS_ID, 6, B.SEP_ID, B.PAD_ID]]
    with pytest.raises(ValueError, match="vocab_size"):
        B.WordTokenizer.fit(["a b"], vocab_size=3)
    with pytest.raises(TypeError, match="iterable of lines"):
        B.WordTokenizer.fit("a b c", vocab_size=10)
    with pytest.raises(ValueError, match="special tokens"):
        B.WordTokenizer(["a", "b"])


WIKI = "\n".join([
    "Some preamble that belongs to no article.",
    "Alpha",
    "Alpha is a town in the north of a country with many hills and rivers and lakes.",
    "Climate.",
    "The climate of alpha is cold in winter and mild in summer with rain falling in every month of the year.",
    "short climate line .",
    "Economy.",
    "The economy of alpha rests on farming and on a small industry that makes shoes and bags for export to the city.",
    "Beta Gamma",
    "Beta Gamma was a writer who lived in the south and wrote many books about the sea and its ships.",
    "Early life.",
    "Beta Gamma was born in a small village by the sea and went to school there until he was twelve years old then.",
    "Notes.",
    "A paragraph under a heading that is not a class, with more than twenty words in it, to be left out of the data.",
])


def test_wiki_articles_sections_and_splits():
    articles = data.wiki_articles(WIKI)
    assert [a.title for a in articles] == ["Alpha", "Beta Gamma"]
    assert articles[0].lines[1] == ("Climate.", "Climate.")
    texts, labels, names = data.section_dataset(articles, min_words=20)
    assert [names[i] for i in labels.tolist()] == ["climate", "economy", "early life"]
    assert texts[0].startswith("The climate of alpha") and all(not t.endswith("Climate.") for t in texts)
    # WikiText writes headings without the final full stop: the same classes apply
    wikitext = [data.Article(a.title, [(h and h.rstrip("."), t.rstrip(".") if t == h else t) for h, t in a.lines])
                for a in articles]
    assert data.section_dataset(wikitext, min_words=20)[0] == texts
    assert data.frequent_sections(articles * 3, n_classes=2, min_count=3) == {"climate": ("Climate",),
                                                                           "early life": ("Early life",)}
    with pytest.raises(ValueError, match="fewer than 2 section headings"):
        data.frequent_sections(articles, min_count=2)
    kept, held = data.split_articles(articles * 4, holdout_every=4)
    assert len(kept) == 6 and len(held) == 2
    with pytest.raises(ValueError, match="at least 2"):
        data.split_articles(articles, holdout_every=1)


def test_few_labels_split():
    labels = torch.tensor([0] * 10 + [1] * 6 + [2] * 8)
    train, test = data.few_labels_split(labels, 3, n_test_per_class=2, seed=0)
    assert torch.bincount(labels[train]).tolist() == [3, 3, 3]
    assert torch.bincount(labels[test]).tolist() == [2, 2, 2]
    assert not set(train.tolist()) & set(test.tolist())
    _, test_all = data.few_labels_split(labels, 3)
    assert len(test_all) == 24 - 9
    with pytest.raises(ValueError, match="only 6 examples"):
        data.few_labels_split(labels, 6)


def toy_corpus():
    # Three documents; token ids say where they are: document d, sentence s, word w -> 100d + 10s + w,
    # each sentence ending in ".", so a pair can be checked against the documents exactly.
    docs = []
    for d in range(1, 4):
        docs.append([" ".join(f"w{100 * d + 10 * s + w}" for w in range(1 + s % 3)) + " ." for s in range(6)])
    vocab = list(B.SPECIAL_TOKENS) + ["."] + [f"w{i}" for i in range(100, 400)]
    tok = B.WordTokenizer(vocab)
    return tok, B.PairCorpus.from_documents(tok, docs)


def test_sentence_pairs_follow_bert_layout():
    tok, corpus = toy_corpus()
    assert len(corpus.split_at) == 3 * 5          # every sentence but the first of each document
    batch = corpus.sample_pairs(256, 16, generator=torch.Generator().manual_seed(0))
    ids, seg, is_next = batch["input_ids"], batch["segment_ids"], batch["is_next"]
    assert ids.shape == seg.shape == (256, 16) and is_next.shape == (256,)
    assert 0.35 < is_next.float().mean() < 0.65
    words = {i: int(w[1:]) for w, i in tok.token_to_id.items() if w.startswith("w")}
    for row, s_row, nxt in zip(ids.tolist(), seg.tolist(), is_next.tolist()):
        assert row[0] == B.CLS_ID and row.count(B.SEP_ID) == 2
        sep1 = row.index(B.SEP_ID)
        sep2 = row.index(B.SEP_ID, sep1 + 1)
        assert all(t == B.PAD_ID for t in row[sep2 + 1:]) and B.PAD_ID not in row[:sep2]
        assert s_row == [0] * (sep1 + 1) + [1] * (sep2 - sep1) + [0] * (15 - sep2)
        a, b = row[1:sep1], row[sep1 + 1:sep2]
        assert a and b and a[-1] == tok.token_to_id["."]       # A ends at a sentence end
        a_docs = {words[t] // 100 for t in a if t in words}
        assert len(a_docs) == 1                                 # A stays inside one document
        b_words = [words[t] for t in b if t in words]
        if nxt:  # B is the next sentence of the same document, from its first word on
            last_a = max(words[t] for t in a if t in words)
            assert b_words and b_words[0] // 100 in a_docs and b_words[0] % 10 == 0
            assert (b_words[0] // 10) % 10 == (last_a // 10) % 10 + 1
        assert len({w // 100 for w in b_words}) <= 1            # B stays inside one document


def test_sentence_pairs_errors():
    tok = B.WordTokenizer(list(B.SPECIAL_TOKENS) + ["a", "."])
    with pytest.raises(ValueError, match="two sentences"):
        B.PairCorpus.from_documents(tok, [["a a a"], ["a"]])
    _, corpus = toy_corpus()
    with pytest.raises(ValueError, match="at least 5"):
        corpus.sample_pairs(2, 4)


# ----------------------------------------------------------------------------------------------- training

def test_unigram_baseline_by_hand():
    train_ids = torch.tensor([5, 5, 5, 6, 0, 2])          # specials do not count; add-one smoothing
    labels = torch.full((1, 4), B.IGNORE_INDEX)
    labels[0, :3] = torch.tensor([5, 6, 7])
    out = B.unigram_baseline(train_ids, 8, [{"labels": labels}])
    p = {5: 4 / 7, 6: 2 / 7, 7: 1 / 7}                    # counts (3, 1, 0) + 1 each
    assert out["unigram_acc"] == pytest.approx(1 / 3) and out["most_frequent_id"] == 5
    assert out["unigram_ppl"] == pytest.approx(math.exp(-(math.log(p[5]) + math.log(p[6]) + math.log(p[7])) / 3))


def test_pretraining_learns_and_beats_the_unigram_baseline():
    # A corpus where a masked word is given away by its neighbours (each document repeats one word).
    torch.manual_seed(0)
    vocab = list(B.SPECIAL_TOKENS) + ["."] + [f"w{i}" for i in range(20)]
    tok = B.WordTokenizer(vocab)
    docs = [[" ".join([f"w{d % 20}"] * 6) + " ."] * 8 for d in range(40)]
    corpus = B.PairCorpus.from_documents(tok, docs)
    model = B.BertForPretraining(small_config(vocab_size=len(tok), n_layers=1))
    batches = B.make_eval_batches(corpus, len(tok), n_batches=2, batch_size=32, seq_len=16, seed=1)
    before = B.evaluate_mlm(model, batches)
    history = B.pretrain(model, corpus, steps=40, batch_size=32, seq_len=16, lr=3e-3,
                         eval_fn=lambda m: B.evaluate_mlm(m, batches), progress_bar=False)
    after = B.evaluate_mlm(model, batches)
    base = B.unigram_baseline(corpus.ids, len(tok), batches)
    assert history.steps["step"] == list(range(1, 41)) and history.epochs["step"] == [40]
    assert history.epochs["mlm_acc"][-1] == after["mlm_acc"]
    assert sum(history.steps["loss"][-10:]) < sum(history.steps["loss"][:10])
    assert after["mlm_ppl"] < before["mlm_ppl"] and after["mlm_ppl"] < base["unigram_ppl"]
    assert after["mlm_acc"] > base["unigram_acc"] + 0.1
    # the same fixed evaluation batches give the same numbers
    assert B.evaluate_mlm(model, batches) == after
    model.train()
    top = B.fill_mask(model, tok, "w3 w3 [MASK] w3 .", k=3)
    assert len(top) == 1 and len(top[0]) == 3 and top[0][0][1] >= top[0][1][1]
    assert model.training, "fill_mask must give the model back in the mode it was in"
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        B.fill_mask(model, tok, "w3 w4")


def test_pretraining_leaves_the_embeddings_of_unseen_words_alone():
    # The bug behind "fine-tuning from the pretrained encoder is worse than from random weights": with
    # the MLM decoder tied to E_tok, every step pushes the output vector of every word that is not the
    # answer along the same direction, and Adam turns even tiny, consistent gradients into full steps.
    # Rare words (the topic words a downstream task needs) were all dragged to one shared direction,
    # so the encoder could no longer tell them apart. With an untied decoder (the default), a word
    # that never occurs in the pretraining text keeps exactly its initial embedding.
    vocab = list(B.SPECIAL_TOKENS) + ["."] + [f"w{i}" for i in range(40)]
    tok = B.WordTokenizer(vocab)
    docs = [[" ".join(f"w{(d + k) % 20}" for k in range(6)) + " ."] * 8 for d in range(40)]  # w20..w39 never occur
    corpus = B.PairCorpus.from_documents(tok, docs)
    unseen = torch.arange(tok.token_to_id["w20"], tok.token_to_id["w39"] + 1)
    # the 10% random replacements of the masking rule draw only seen words here (ids below w20's)
    seen_only = lambda ids, vocab_size, p: B.mask_tokens(ids, int(unseen[0]), p)  # noqa: E731
    drift = {}
    for tie in (False, True):
        torch.manual_seed(0)
        model = B.BertForPretraining(small_config(vocab_size=len(tok), tie_embeddings=tie))
        before = model.encoder.tok.weight.detach().clone()
        B.pretrain(model, corpus, steps=30, batch_size=16, seq_len=16, lr=3e-3, weight_decay=0.0,
                   mask_fn=seen_only, progress_bar=False)
        drift[tie] = model.encoder.tok.weight.detach()[unseen] - before[unseen]          # (20, D)
    assert torch.equal(drift[False], torch.zeros_like(drift[False]))
    # tied: the unseen words all moved, and all in nearly the same direction
    d = F.normalize(drift[True], dim=1)
    assert drift[True].norm(dim=1).min() > 0.05 and (d @ d.T).mean() > 0.8


def test_a_pretrained_encoder_transfers_to_words_it_was_never_fine_tuned_on():
    # Four topics of ten words; pretraining reads documents of one topic each. The downstream task
    # (which topic?) is fine-tuned on sentences of words 0-4 of each topic and tested on sentences of
    # words 5-9 only. From random weights those test words are unknown (chance: 25%); from the
    # pretrained encoder they share their topic's representation, so the whole pipeline (pretrain,
    # copy the encoder, fine-tune) must carry that over.
    g = torch.Generator().manual_seed(0)
    topics, per = 4, 10
    tok = B.WordTokenizer(list(B.SPECIAL_TOKENS) + ["."] + [f"t{t}w{i}" for t in range(topics) for i in range(per)])

    def sentence(t, words, n):
        return " ".join(f"t{t}w{int(words[j])}" for j in torch.randint(len(words), (n,), generator=g)) + " ."

    def task(words, n):
        texts = [sentence(t, words, 8) for t in range(topics) for _ in range(n)]
        return tok.encode_batch(texts, 12), torch.arange(topics).repeat_interleave(n)

    corpus = B.PairCorpus.from_documents(tok, [[sentence(d % topics, torch.arange(per), 6) for _ in range(6)]
                                               for d in range(120)])
    x_train, y_train = task(torch.arange(5), 4)
    x_test, y_test = task(torch.arange(5, 10), 25)
    cfg = small_config(vocab_size=len(tok), d_model=32, n_layers=1, d_ff=64)
    torch.manual_seed(0)
    pretrained = B.BertForPretraining(cfg)
    B.pretrain(pretrained, corpus, steps=100, batch_size=32, seq_len=16, lr=3e-3, progress_bar=False)
    acc = {}
    for name, start in [("pretrained", pretrained), ("random", None)]:
        torch.manual_seed(1)                                                # the same head for both
        clf = B.BertClassifier(cfg, topics, pretrained=start, pool="mean")
        B.finetune(clf, x_train, y_train, epochs=20, batch_size=8, lr=1e-3)
        acc[name] = (B.predict(clf, x_test) == y_test).float().mean().item()
    # (over seeds 0-4: pretrained 0.75-1.0, random 0.09-0.34; chance is 0.25)
    assert acc["pretrained"] >= 0.6 and acc["pretrained"] >= acc["random"] + 0.3, acc


def test_evaluate_mlm_perplexity_is_exp_of_the_cross_entropy():
    torch.manual_seed(0)
    model = B.BertForPretraining(small_config()).eval()
    ids = torch.tensor([[B.CLS_ID, 7, 8, 9, 10, B.SEP_ID, 11, 12, B.SEP_ID, B.PAD_ID]])
    labels = torch.full_like(ids, B.IGNORE_INDEX)
    labels[0, [2, 6]] = torch.tensor([8, 11])
    batch = {"input_ids": ids, "labels": labels, "segment_ids": torch.zeros_like(ids), "is_next": torch.tensor([1])}
    with torch.no_grad():
        logits = model.mlm_logits(model.encoder(ids))[0]                    # (T, V)
    ce = F.cross_entropy(logits[[2, 6]], torch.tensor([8, 11]))
    out = B.evaluate_mlm(model, [batch])
    assert out["mlm_ppl"] == pytest.approx(math.exp(ce.item()), rel=1e-5) and out["n_masked"] == 2


def test_classifier_starts_from_the_pretrained_encoder_and_fine_tunes():
    torch.manual_seed(0)
    cfg = small_config()
    pre = B.BertForPretraining(cfg)
    warm, cold = B.BertClassifier(cfg, 3, pretrained=pre), B.BertClassifier(cfg, 3)
    for name, p in pre.encoder.state_dict().items():
        assert torch.equal(warm.encoder.state_dict()[name], p)
    assert not torch.equal(cold.encoder.tok.weight, pre.encoder.tok.weight)
    ids = torch.randint(B.N_SPECIAL, 50, (24, 10))
    ids[:, 0] = B.CLS_ID
    y = ids[:, 1] % 3                                                       # learnable from one token
    mean = B.BertClassifier(cfg, 3, pretrained=pre, pool="mean").eval()
    with torch.no_grad():  # mean pooling ignores [PAD]: extra padding leaves the logits unchanged
        x = torch.tensor([[B.CLS_ID, 7, 8, B.SEP_ID]])
        torch.testing.assert_close(mean(x), mean(torch.cat([x, torch.zeros(1, 3, dtype=torch.long)], 1)),
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pool must be"):
        B.BertClassifier(cfg, 3, pool="max")
    losses = B.finetune(warm, ids, y, epochs=30, batch_size=8, lr=3e-3).epochs["loss"]
    assert losses[-1] < losses[0] and (B.predict(warm, ids) == y).float().mean() > 0.6
    assert B.sentence_features(warm.encoder, ids).shape == (24, 16)
    maps = B.attention_maps(warm.encoder, ids[0])
    assert maps.shape == (2, 2, 10, 10)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 10))
    # reading a model does not change its mode: a model in training stays in training
    warm.train()
    B.predict(warm, ids), B.sentence_features(warm.encoder, ids), B.attention_maps(warm.encoder, ids[0])
    assert warm.training and all(m.training for m in warm.modules())
    warm.eval()
    B.predict(warm, ids)
    assert not warm.training
