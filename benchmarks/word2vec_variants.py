"""word2vec's four variants on one corpus with equal settings, each against gensim's Word2Vec, one run.

The variants are the two architectures of Mikolov et al. (2013a), skip-gram (a word predicts each word of
its window) and CBOW (the mean of the window predicts the word), each with the two output layers,
negative sampling (Mikolov et al. 2013b) and the hierarchical softmax over a Huffman tree (Morin & Bengio
2005; Mikolov et al. 2013a). All eight runs (four of the course's ``train_word2vec``, four of gensim's
with ``sg``, ``hs`` and ``negative`` set alike, ``cbow_mean=1``) read the same tokens with the same
settings (dimension 100, window 5, 5 noise words, subsampling 1e-3, min_count 5, the same threads, the
same passes) and word2vec.c's learning rates: 0.025 for skip-gram and 0.05 for CBOW, falling linearly.
Each is timed (training only, on the wall clock and in CPU-seconds of the whole process) and scored by
the same code (``unsuplab.wordvectors.evaluate``: analogies restricted to the 30,000 most frequent words,
Spearman's rho on WordSim-353, SimLex-999 and MEN).

Two things are measured besides: the Huffman tree of the vocabulary (its code lengths averaged over the
tokens against ``log2 V``), and how the cost of a training example grows with the vocabulary
(``--scaling-vocab``): skip-gram trained for one pass on ``--scaling-words`` words with the vocabulary
cut to its V most frequent words, with each output layer; the hierarchical softmax's CPU time per
example should grow with the mean path length (about ``log2 V``) and negative sampling's stay flat.

gensim is not a course dependency: install it for this benchmark only (`pip install gensim`).

    PYTHONPATH=. UNSUPLAB_DATA_MIRROR=... python benchmarks/word2vec_variants.py --workers 1
    python benchmarks/word2vec_variants.py --max-words 2000000 --no-gensim --scaling-vocab 0

A benchmark is only worth writing on an idle machine: if the load average exceeds the number of cores
when it starts, the script stops without writing (``--allow-busy`` writes anyway, and the file says so).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from unsuplab import data  # noqa: E402
from unsuplab.models.word2vec import HuffmanTree, Vocabulary, keep_probabilities, train_word2vec  # noqa: E402
from unsuplab.runtime import device_name  # noqa: E402
from unsuplab.wordvectors import WordVectors, evaluate  # noqa: E402
from word2vec_vs_gensim import _vocab_and_ids, timed, training_speed  # noqa: E402

VARIANTS = {  # name: (architecture, objective)
    "skipgram+negative_sampling": ("skipgram", "negative_sampling"),
    "cbow+negative_sampling": ("cbow", "negative_sampling"),
    "skipgram+hierarchical_softmax": ("skipgram", "hierarchical_softmax"),
    "cbow+hierarchical_softmax": ("cbow", "hierarchical_softmax"),
}


def learning_rate(architecture: str, args) -> float:
    return args.lr_cbow if architecture == "cbow" else args.lr_skipgram


def run_ours(ids: torch.Tensor, vocab: Vocabulary, architecture: str, objective: str, args, epochs: int,
             score: bool = True) -> dict:
    """The course's word2vec on word ``ids`` (vocabulary built beforehand, as gensim's build_vocab is)."""
    wv, _, cpu = timed(lambda: train_word2vec(
        ids, vocab=vocab, architecture=architecture, objective=objective, dim=args.dim, window=args.window,
        negatives=args.negatives, epochs=epochs, sample=args.sample, min_count=args.min_count,
        lr=learning_rate(architecture, args), threads=args.workers, seed=args.seed, progress_bar=False))
    out = {**training_speed(args.raw_words * epochs, wv.stats["train_seconds"], cpu),
           "examples": wv.stats["pairs"], "cpu_microseconds_per_example": 1e6 * cpu / max(wv.stats["pairs"], 1)}
    return {"vocab_size": len(wv), **out, **evaluate(wv)} if score else out


def run_gensim(tokens: list[str], architecture: str, objective: str, args) -> dict:
    from gensim.models import Word2Vec

    # sentences of 10,000 words, as gensim's own Text8Corpus cuts a corpus without sentences
    sentences = [tokens[i:i + 10_000] for i in range(0, len(tokens), 10_000)]
    lr = learning_rate(architecture, args)
    hierarchical = objective == "hierarchical_softmax"
    model = Word2Vec(vector_size=args.dim, window=args.window, sg=int(architecture == "skipgram"), cbow_mean=1,
                     hs=int(hierarchical), negative=0 if hierarchical else args.negatives, min_count=args.min_count,
                     sample=args.sample, alpha=lr, min_alpha=lr * 1e-4, workers=args.workers, epochs=args.epochs,
                     seed=args.seed)
    model.build_vocab(sentences)
    _, wall, cpu = timed(lambda: model.train(sentences, total_examples=len(sentences), epochs=args.epochs))
    counts = torch.tensor([model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key])
    wv = WordVectors(model.wv.index_to_key, torch.from_numpy(model.wv.vectors.copy()), counts)
    return {"vocab_size": len(wv), **training_speed(len(tokens) * args.epochs, wall, cpu), **evaluate(wv)}


def tree_summary(vocab: Vocabulary, sample: float) -> dict:
    """Code lengths of the Huffman tree of ``vocab``: averaged over the corpus's tokens (what the tree
    minimises), over the tokens kept by subsampling (the targets a pass trains on), and the longest."""
    tree = HuffmanTree.from_counts(vocab.counts)
    lengths, counts = tree.lengths.double(), vocab.counts.double()
    kept = counts * keep_probabilities(vocab.counts, sample).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log2()).sum().item()
    return {"vocab_size": len(vocab), "log2_vocab": math.log2(len(vocab)), "entropy_bits": entropy,
            "mean_code_length": (lengths * counts).sum().item() / counts.sum().item(),
            "mean_code_length_kept": (lengths * kept).sum().item() / kept.sum().item(),
            "max_code_length": int(lengths.max())}


def scaling(tokens: list[str], args) -> list[dict]:
    """Skip-gram's CPU time per example against the vocabulary size, with each output layer: one pass
    over the first ``--scaling-words`` words, with the vocabulary of the whole corpus cut to its V most
    frequent words (the words outside it are dropped from the text, as rare words are)."""
    few = tokens[:args.scaling_words]
    rows = []
    for size in args.scaling_vocab:
        vocab = Vocabulary.from_tokens(tokens, args.min_count, size)
        if rows and len(vocab) == rows[-1]["vocab_size"]:
            continue                                      # the corpus has no more words: the same run again
        ids = vocab.encode(few)
        one = argparse.Namespace(**{**vars(args), "raw_words": len(few)})
        row = {"max_vocab": size, "words_in_vocab": len(ids), **tree_summary(vocab, args.sample)}
        for objective in ("negative_sampling", "hierarchical_softmax"):
            run = run_ours(ids, vocab, "skipgram", objective, one, epochs=1, score=False)
            row[objective] = run
        print(f"  V = {len(vocab):,}: mean path {row['mean_code_length_kept']:.1f} nodes (log2 V = "
              f"{row['log2_vocab']:.1f}); CPU per example: negative sampling "
              f"{row['negative_sampling']['cpu_microseconds_per_example']:.2f} us, hierarchical softmax "
              f"{row['hierarchical_softmax']['cpu_microseconds_per_example']:.2f} us", flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="auto", help="text8, enwiki-17M, ... or auto (text8 if possible)")
    parser.add_argument("--max-words", type=int, default=None, help="only the first N words of the corpus")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the corpus, for every run")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                        help="the variants to train (none: only the tree and the scaling runs)")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-3)
    parser.add_argument("--lr-skipgram", type=float, default=0.025, help="eta_0 of skip-gram (word2vec.c's)")
    parser.add_argument("--lr-cbow", type=float, default=0.05, help="eta_0 of CBOW (word2vec.c's)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    parser.add_argument("--no-gensim", action="store_true", help="train the course's variants only")
    parser.add_argument("--scaling-words", type=int, default=2_000_000,
                        help="words of the scaling runs (the first ones of the corpus)")
    parser.add_argument("--scaling-vocab", type=int, nargs="+", default=[1_000, 4_000, 16_000, 64_000],
                        help="vocabulary sizes of the scaling runs (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-busy", action="store_true",
                        help="write the file even if the load average exceeds the core count (it says so)")
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "word2vec_variants-cpu.json"))
    args = parser.parse_args(argv)

    if not args.no_gensim:
        import gensim  # noqa: F401 - fail now, not after tokenising, if it is missing
    load, cores = os.getloadavg()[0], os.cpu_count()
    if load > cores and not args.allow_busy:
        print(f"the load average is {load:.2f} on {cores} cores: other jobs are running, so the timings would "
              "measure them too. Nothing is written; wait for an idle machine (or pass --allow-busy).", file=sys.stderr)
        return 2
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    corpus = data.english_corpus() if args.corpus == "auto" else args.corpus
    tokens = data.corpus_tokens(corpus, args.max_words)
    args.raw_words = len(tokens)
    print(f"corpus {corpus}: {len(tokens):,} words" + ("" if corpus == "text8" else
                                                      " -- an offline stand-in for text8, not text8"), flush=True)
    (vocab, ids), vocab_wall, _ = timed(lambda: _vocab_and_ids(tokens, args.min_count))
    tree = tree_summary(vocab, args.sample)
    print(f"vocabulary {len(vocab):,} words; Huffman codes average {tree['mean_code_length']:.2f} bits over the "
          f"tokens ({tree['mean_code_length_kept']:.2f} over those subsampling keeps), log2 V = "
          f"{tree['log2_vocab']:.2f}, the entropy {tree['entropy_bits']:.2f}", flush=True)

    variants = {}
    for name in args.variants:
        architecture, objective = VARIANTS[name]
        print(f"training {name}, {args.epochs} epoch(s) ...", flush=True)
        result = {"lr": learning_rate(architecture, args), "load_average_before": round(os.getloadavg()[0], 2),
                  "unsuplab": run_ours(ids, vocab, architecture, objective, args, args.epochs)}
        if not args.no_gensim:
            result["gensim"] = run_gensim(tokens, architecture, objective, args)
            ours, ref = result["unsuplab"], result["gensim"]
            result.update(speed_ratio_wall=ours["words_per_second"] / ref["words_per_second"],
                          speed_ratio_cpu=ours["words_per_cpu_second"] / ref["words_per_cpu_second"],
                          analogy_difference=ours["analogy_acc"] - ref["analogy_acc"])
        for who in ("unsuplab", "gensim"):
            if who in result:
                r = result[who]
                print(f"  {who:>8}: {r['train_seconds']:.1f} s ({r['train_cpu_seconds']:.1f} CPU-s), "
                      f"{r['words_per_cpu_second']:,.0f} words per CPU-second; analogy {r['analogy_acc']:.1%}, "
                      f"WS353 {r['wordsim353_spearman']:.3f}, SimLex {r['simlex999_spearman']:.3f}, "
                      f"MEN {r['men_spearman']:.3f}", flush=True)
        if "speed_ratio_cpu" in result:
            print(f"  ours / gensim: {result['speed_ratio_wall']:.2f}x on the wall clock, {result['speed_ratio_cpu']:.2f}x "
                  f"per CPU-second, analogy {100 * result['analogy_difference']:+.1f} points", flush=True)
        variants[name] = result

    rows = []
    if args.scaling_vocab != [0]:
        print(f"scaling: skip-gram, one pass over {min(args.scaling_words, len(tokens)):,} words, vocabulary cut to "
              f"{args.scaling_vocab}", flush=True)
        rows = scaling(tokens, args)

    gensim_version = None
    if not args.no_gensim:
        import gensim
        gensim_version = gensim.__version__
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "word2vec_variants", "started": started, "corpus": corpus, "corpus_is_text8": corpus == "text8",
        "raw_words": len(tokens), "vocab_seconds": round(vocab_wall, 2),
        "settings": {k: getattr(args, k) for k in ("epochs", "dim", "window", "negatives", "min_count", "sample",
                                                    "lr_skipgram", "lr_cbow", "workers", "seed", "max_words",
                                                    "scaling_words", "scaling_vocab")},
        "cpu": device_name(torch.device("cpu")), "cores": cores, "load_average_at_start": load_at_start,
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "machine_was_busy": load_at_start[0] > cores,
        "python": platform.python_version(), "torch": torch.__version__, "gensim": gensim_version,
        "tree": tree, "variants": variants, "scaling": rows,
    }, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
