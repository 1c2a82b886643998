"""Every ``full`` configuration of labs 8 (word2vec, BERT) and 9 builds and takes a step on the CPU (issue 17).

The course rule: no GPU user may be the first to meet a shape or dtype bug of a ``full`` run. Each test
reads the lab's ``full`` settings from its solution notebook (``labs.profile_settings``, plus the few
written as ``dict(...)`` or inside a call, read from the same code here; never a copy of the numbers),
builds the models the lab trains with those settings, and runs one optimisation step through the
function the lab trains with, at full width and full batch size.

The text is synthetic: word ids drawn from a Zipf law instead of text8 and Wikipedia, random "words"
instead of Multi30k. What a shape or dtype bug needs is the model's sizes and a batch of the real
shape; what the data say is for the labs. Two things are smaller than in a real run, to keep the file
within its minute: the passes over the corpus (one step, or one pass of a small corpus, instead of
``epochs``) and, in lab 9, the sentence length (``SENTENCE_LENGTHS`` words, where Multi30k's average
about 13; the batch holds the lab's ``batch_size`` sentences and the Transformer its full width).
On the CPU ``train.autocast`` changes nothing, so these steps run in float32: the bfloat16 and float16
paths a GPU takes are chosen by ``train.amp_dtype`` (tests/test_precision.py), not exercised here.
"""

import json
import math
from pathlib import Path

import torch

from unsuplab import data
from unsuplab.labs import call_settings, profile_settings
from unsuplab.models import bert as B
from unsuplab.models import unmt
from unsuplab.models import word2vec as w2v
from unsuplab.models import word_translation as wt

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
SENTENCE_LENGTHS = (3, 8)  # lab 9: words per synthetic sentence, at least and at most


# ----------------------------------------------------------------------------------------------
# Reading a lab's full settings
# ----------------------------------------------------------------------------------------------

def full_settings(lab: str) -> dict:
    """``profile_settings(solution, "full")``: the parameters, the rt.pick(full=...) values (also in
    ``dict(...)``) and the other single literal assignments of the solution."""
    return profile_settings(SOLUTIONS / f"{lab}.ipynb", "full")


def call_arguments(lab: str, callee: str) -> dict:
    """The full-profile keyword arguments the solution writes in its calls of ``callee``."""
    found = call_settings(SOLUTIONS / f"{lab}.ipynb", "full", callee)
    assert found, f"{lab} never calls {callee}(...) with a literal keyword argument"
    return found


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _moved(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, p in module.named_parameters() if not torch.equal(p.detach(), before[name])]


def _zipf_vocabulary(size: int, n_words: int, min_count: int) -> w2v.Vocabulary:
    """``size`` words whose counts fall as 1 / rank (Zipf's law) in a text of about ``n_words`` words."""
    ranks = torch.arange(1, size + 1, dtype=torch.float64)
    counts = (n_words / (ranks.reciprocal().sum() * ranks)).round().clamp(min=min_count).long()
    return w2v.Vocabulary([f"w{i}" for i in range(size)], counts)


# ----------------------------------------------------------------------------------------------
# Lab 8a: word2vec
# ----------------------------------------------------------------------------------------------

def test_full_08_word2vec_trains_with_the_full_batch_and_vocabulary():
    s = full_settings("08_word2vec")
    # The vocabulary of the whole corpus, as the cpu run measured it: the full run reads the same corpus
    # whole, with the same min_count, so its matrices have this many rows.
    assert profile_settings(SOLUTIONS / "08_word2vec.ipynb", "cpu")["max_words"] is s["max_words"] is None
    measured = json.loads((ROOT / "results" / "08_word2vec-cpu.json").read_text())["metrics"]
    vocab = _zipf_vocabulary(measured["vocab_size"], measured["corpus_words"], s["min_count"])
    g = torch.Generator().manual_seed(s["seed"])
    ids = torch.multinomial(vocab.counts.double(), 20_000, replacement=True, generator=g)  # a short Zipf text
    wv = w2v.train_word2vec(ids, vocab=vocab, dim=s["dim"], window=s["window"], negatives=s["negatives"],
                            sample=s["sample"], lr=s["lr"], epochs=1, batch_size=s["batch_size"],
                            shared_negatives=s["noise_words"], device="cpu", seed=s["seed"], progress_bar=False)
    stats = wv.stats
    assert wv.vectors.shape == (len(vocab), s["dim"])
    assert stats["settings"]["batch_size"] == s["batch_size"]
    assert stats["settings"]["shared_negatives"] == s["noise_words"]
    assert stats["pairs"] > s["batch_size"], "not one full batch of pairs was trained on"
    assert stats["loss_curve"] and all(math.isfinite(loss) for _, loss in stats["loss_curve"])
    start = w2v.SkipGram(len(vocab), s["dim"], torch.Generator().manual_seed(s["seed"])).W_in.weight
    seen = ids.unique()
    assert torch.isfinite(wv.vectors).all()
    assert not torch.equal(wv.vectors[seen], start[seen]), "SGD did not move the vectors of the words it read"


def test_full_08_word2vec_variants_train_with_the_full_batch_and_vocabulary():
    # Section 11: the four variants, one pass each over the whole corpus (variants_words = None), with the full
    # batch; the same vocabulary as the main run. Each must train on more than one full batch of its examples.
    s = full_settings("08_word2vec")
    assert s["variants_words"] is None and s["max_words"] is None
    measured = json.loads((ROOT / "results" / "08_word2vec-cpu.json").read_text())["metrics"]
    vocab = _zipf_vocabulary(measured["vocab_size"], measured["corpus_words"], s["min_count"])
    g = torch.Generator().manual_seed(s["seed"])
    ids = torch.multinomial(vocab.counts.double(), 60_000, replacement=True, generator=g)  # a short Zipf text
    for architecture in w2v.ARCHITECTURES:
        for objective in w2v.OBJECTIVES:
            wv = w2v.train_word2vec(ids, vocab=vocab, architecture=architecture, objective=objective, dim=s["dim"],
                                    window=s["window"], negatives=s["negatives"], sample=s["variants_sample"],
                                    epochs=1, batch_size=s["batch_size"], shared_negatives=s["noise_words"],
                                    device="cpu", seed=s["seed"], progress_bar=False)
            stats = wv.stats
            assert wv.vectors.shape == (len(vocab), s["dim"]) and torch.isfinite(wv.vectors).all()
            assert stats["pairs"] > s["batch_size"], (architecture, objective, "not one full batch")
            assert stats["loss_curve"] and all(math.isfinite(loss) for _, loss in stats["loss_curve"])


# ----------------------------------------------------------------------------------------------
# Lab 8b: BERT
# ----------------------------------------------------------------------------------------------

def _synthetic_articles(n_words: int, seed: int) -> list[data.Article]:
    """Articles of ten-word sentences, three to a paragraph, over ``n_words`` distinct words (each used
    five times, so that nearly all of them are seen twice in the pretraining articles and kept by the
    tokenizer): an untitled part, then two sections whose headings are the downstream task's classes."""
    g = torch.Generator().manual_seed(seed)
    stream = torch.arange(n_words).repeat(5)
    stream = stream[torch.randperm(len(stream), generator=g)].tolist()
    headings = [h[0] for h in data.SECTION_CLASSES.values()]
    paragraphs_per_part, words_per_paragraph = 6, 30
    per_article = 3 * paragraphs_per_part * words_per_paragraph
    articles = []
    for a in range(len(stream) // per_article):
        words = stream[a * per_article:(a + 1) * per_article]
        paragraphs = [" ".join(" ".join(f"w{i}" for i in words[p + s:p + s + 10]) + " ." for s in (0, 10, 20))
                      for p in range(0, per_article, words_per_paragraph)]
        lines = [(None, text) for text in paragraphs[:paragraphs_per_part]]
        for part in (1, 2):
            heading = headings[(2 * a + part) % len(headings)]
            lines.append((heading, heading))
            section = paragraphs[part * paragraphs_per_part:(part + 1) * paragraphs_per_part]
            lines += [(heading, text) for text in section]
        articles.append(data.Article(f"Article {a}", lines))
    return articles


def _bert_setup():
    s = full_settings("08_bert")
    articles = _synthetic_articles(s["vocab_size"] + 1_000, s["seed"])
    pretrain_articles, heldout_articles = data.split_articles(articles, s["holdout_every"])
    tokenizer = B.WordTokenizer.fit((line for a in pretrain_articles for _, line in a.lines), s["vocab_size"])
    assert len(tokenizer) == s["vocab_size"]
    cfg = B.BertConfig(vocab_size=len(tokenizer), max_len=s["seq_len"], d_model=s["d_model"], n_layers=s["n_layers"],
                       n_heads=s["n_heads"], d_ff=4 * s["d_model"], dropout=s["dropout"])
    return s, tokenizer, cfg, pretrain_articles, heldout_articles


def test_full_08_bert_pretraining_step():
    s, tokenizer, cfg, pretrain_articles, heldout_articles = _bert_setup()
    documents = ([line for _, line in a.lines] for a in pretrain_articles)
    train_corpus = B.PairCorpus.from_documents(tokenizer, documents, max_tokens=s["n_pretrain_tokens"])
    heldout_corpus = B.PairCorpus.from_documents(tokenizer, ([line for _, line in a.lines] for a in heldout_articles),
                                                 max_tokens=s["n_heldout_tokens"])
    torch.manual_seed(s["seed"])
    model = B.BertForPretraining(cfg)

    batch = train_corpus.sample_pairs(8, s["seq_len"])
    with torch.no_grad():
        h, logits, nsp_logits = model(batch["input_ids"], batch["segment_ids"])
    assert h.shape == (8, s["seq_len"], s["d_model"])
    assert logits.shape == (8, s["seq_len"], s["vocab_size"]) and nsp_logits.shape == (8, 2)

    full_batch = train_corpus.sample_pairs(s["batch_size"], s["seq_len"])
    assert full_batch["input_ids"].shape == (s["batch_size"], s["seq_len"])
    assert (full_batch["input_ids"][:, -1] != B.PAD_ID).float().mean() > 0.25, "few pairs fill seq_len"

    eval_args = call_arguments("08_bert", "make_eval_batches")
    eval_batches = B.make_eval_batches(heldout_corpus, len(tokenizer), n_batches=1, batch_size=eval_args["batch_size"],
                                       seq_len=s["seq_len"], mask_fn=B.mask_tokens, mask_prob=s["mask_prob"],
                                       seed=s["seed"])
    before = _snapshot(model)
    history = B.pretrain(model, train_corpus, steps=1, batch_size=s["batch_size"], seq_len=s["seq_len"], lr=s["lr"],
                         mask_fn=B.mask_tokens, mask_prob=s["mask_prob"],
                         eval_fn=lambda m: B.evaluate_mlm(m, eval_batches), eval_every=1, progress_bar=False)
    step = history.steps
    assert step["step"] == [1] and math.isfinite(step["mlm"][0]) and math.isfinite(step["nsp"][0])
    assert step["mlm"][0] > 0.5 * math.log(s["vocab_size"]), "an untrained MLM must be near-uniform"
    heldout = history.epochs
    assert math.isfinite(heldout["mlm_ppl"][0]) and 0 <= heldout["nsp_acc"][0] <= 1
    moved = _moved(model, before)
    assert "encoder.tok.weight" in moved and "decoder.weight" in moved and "nsp.weight" in moved


def test_full_08_bert_finetuning_step():
    s, tokenizer, cfg, _, heldout_articles = _bert_setup()
    texts, labels, class_names = data.section_dataset(heldout_articles, data.SECTION_CLASSES)
    x_all = tokenizer.encode_batch(texts, s["seq_len"])
    n_labels = max(s["label_draws"])                                            # the curve's largest point
    train_idx, test_idx = data.few_labels_split(labels, n_labels, s["n_test_per_class"], seed=s["seed"])
    assert len(train_idx) == n_labels * len(class_names)

    args = call_arguments("08_bert", "finetune")
    pretrained = B.BertForPretraining(cfg)
    torch.manual_seed(s["seed"])
    clf = B.BertClassifier(cfg, len(class_names), pretrained=pretrained,
                           pool=call_arguments("08_bert", "BertClassifier")["pool"])
    shuffled = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(s["seed"]))]
    one_batch = shuffled[:args["batch_size"]]                                   # one step of the lab's batch
    before = _snapshot(clf)
    history = B.finetune(clf, x_all[one_batch], labels[one_batch], epochs=1, batch_size=args["batch_size"],
                        lr=s["finetune_lrs"][0], seed=s["seed"])
    assert len(history.epochs["loss"]) == 1 and math.isfinite(history.last("loss"))
    assert {"encoder.tok.weight", "head.weight"} <= set(_moved(clf, before))
    assert B.predict(clf, x_all[test_idx[:8]]).shape == (8,)
    features = B.sentence_features(pretrained.encoder, x_all[:8])
    assert features.shape == (8, s["d_model"]) and torch.isfinite(features).all()


# ----------------------------------------------------------------------------------------------
# Lab 9: word translation, then unsupervised (and supervised) translation
# ----------------------------------------------------------------------------------------------

def test_full_09_word_vectors_robust_start_and_adversarial_alignment():
    s = full_settings("09_unsupervised_translation")
    game, refine, learn = s["game"], s["refine"], s["learn"]
    for w2v_args in (s["w2v_novels"], s["w2v_captions"]):
        vocab = _zipf_vocabulary(2_500, 180_000, w2v_args["min_count"])
        g = torch.Generator().manual_seed(s["seed"])
        ids = torch.multinomial(vocab.counts.double(), 20_000, replacement=True, generator=g)
        # the lab passes no device: word2vec runs on the CPU here in every profile
        wv = w2v.train_word2vec([vocab.words[j] for j in ids.tolist()], seed=s["seed"], progress_bar=False,
                                **{**w2v_args, "epochs": 1})
        assert wv.vectors.shape[1] == w2v_args["dim"] and torch.isfinite(wv.vectors).all()
    # The alignment code sees only matrices: two spaces as large as 5M words of novels give with
    # min_count 10 (about 16,000 words), one a rotation of the other.
    d = s["w2v_novels"]["dim"]
    g = torch.Generator().manual_seed(s["seed"])
    X = wt.normalize_embeddings(torch.randn(16_000, d, generator=g))
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    Y = X @ Q.T
    W_adv, history = wt.adversarial_alignment(X, Y, seed=s["seed"], progress_bar=False,
                                              **{**game, "steps": 2, "eval_every": 2})
    assert W_adv.shape == (d, d)
    assert not torch.equal(W_adv, torch.eye(d)), "the map W did not move from the identity"
    per_eval = history.epochs                        # one row per evaluation
    assert per_eval["step"] == [2] and math.isfinite(per_eval["criterion"][0]) and 0 <= per_eval["dis_accuracy"][0] <= 1
    W_ref, ref_log = wt.procrustes_refinement(X, Y, W_adv, **{**refine, "iterations": 1})
    assert wt.is_orthogonal(W_ref) and all(math.isfinite(c) for c in ref_log["criterion"])
    seed_pairs = wt.similarity_seed(X, Y, n=s["n_signature"])
    assert seed_pairs.shape[1] == 2 and len(seed_pairs) > 0
    W_rob, rob_log = wt.self_learning(X, Y, seed_pairs, **{**learn, "iterations": 2})
    assert wt.is_orthogonal(W_rob) and len(rob_log["criterion"]) == 2
    pairs = torch.stack([torch.arange(s["n_iso"]), torch.arange(s["n_iso"])], 1)
    assert wt.eigenvector_similarity(X, Y, pairs) < 1e-3 and wt.relational_similarity(X, Y, pairs) > 0.999


def _translation_setup():
    """The full model size and a synthetic two-language world: ``MTVocab`` with a few thousand words per
    language, monolingual sentences of random words, and a word-by-word dictionary (word i <-> word i)."""
    s = full_settings("09_unsupervised_translation")
    langs = ("en", s["lang"])
    words = {"en": [f"e{i}" for i in range(3_000)], s["lang"]: [f"x{i}" for i in range(4_000)]}
    g = torch.Generator().manual_seed(s["seed"])

    def sentences(lang, n):
        lo, hi = SENTENCE_LENGTHS
        return [[words[lang][j] for j in torch.randint(len(words[lang]), (int(length),), generator=g).tolist()]
                for length in torch.randint(lo, hi + 1, (n,), generator=g)]

    tokenised = {lang: sentences(lang, 2 * s["batch_size"]) for lang in langs}
    vocab = unmt.MTVocab.build({lang: tokenised[lang] + [words[lang]] for lang in langs}, min_count=1)
    mono = {lang: [vocab.encode(t, lang) for t in tokenised[lang]] for lang in langs}
    pairs = list(zip(words["en"], words[s["lang"]]))
    wbw = unmt.WordByWord(vocab, {("en", s["lang"]): dict(pairs), (s["lang"], "en"): {b: a for a, b in pairs}})
    torch.manual_seed(s["seed"])
    model = unmt.Seq2Seq(vocab, **s["model_size"])
    assert unmt.init_embeddings_from_dictionary(model, wbw, "en", s["lang"]) == len(words["en"])
    return s, vocab, mono, tokenised, wbw, model


def test_full_09_unsupervised_translation_step():
    s, vocab, mono, tokenised, wbw, model = _translation_setup()
    lang = s["lang"]
    assert model.d_model == s["model_size"]["d_model"] and len(model.encoder.layers) == s["model_size"]["layers"]
    translations = []

    def evaluate(m):  # stands in for the lab's BLEU scores: greedy decoding at full width, a number to select by
        translations[:] = unmt.translate_ids(m, mono["en"][:4], lang)
        return {"score": -float(sum(map(len, translations)))}

    before = _snapshot(model)
    warmup = call_arguments("09_unsupervised_translation", "train_unmt")["warmup"]
    history = unmt.train_unmt(model, mono, wbw, iterations=1, steps=1, batch_size=s["batch_size"], lr=s["lr"],
                              warmup=warmup, p_drop=s["p_drop"], k=s["k_shuffle"], evaluate=evaluate,
                              select="score", seed=s["seed"], progress_bar=False)
    terms = ["auto_en", f"auto_{lang}", f"bt_en_{lang}", f"bt_{lang}_en"]
    assert all(math.isfinite(history.epochs[t][0]) for t in terms), {t: history.epochs.get(t) for t in terms}
    assert history.info["best_round"] == 1
    assert {"embed.weight", "encoder.layers.0.self_attn.in_proj_weight"} <= set(_moved(model, before))
    lo, hi = vocab.lang_range(lang)
    assert len(translations) == 4 and all(lo <= i < hi for sentence in translations for i in sentence)


def test_full_09_supervised_translation_step():
    s, vocab, mono, tokenised, wbw, model = _translation_setup()
    lang = s["lang"]
    parallel = {"en": mono["en"], lang: [vocab.encode([w.replace("e", "x") for w in t], lang) for t in tokenised["en"]]}
    before = _snapshot(model)
    warmup = call_arguments("09_unsupervised_translation", "train_supervised")["warmup"]
    history = unmt.train_supervised(model, parallel, steps=1, batch_size=2 * s["batch_size"], lr=s["lr"],
                                    warmup=warmup, seed=s["seed"], progress_bar=False)
    assert math.isfinite(history.epochs[f"sup_en_{lang}"][0]) and math.isfinite(history.epochs[f"sup_{lang}_en"][0])
    assert {"embed.weight", "decoder.layers.0.multihead_attn.in_proj_weight"} <= set(_moved(model, before))
