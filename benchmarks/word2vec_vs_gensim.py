"""word2vec: the course's skip-gram (unsuplab.models.word2vec) against gensim's Word2Vec, one run.

Both train on the same tokens with the same settings (skip-gram, negative sampling, dim 100, window 5,
5 noise words, subsampling 1e-3, min_count 5, lr 0.025 falling linearly, the same number of threads),
and both are scored by the same code (unsuplab.wordvectors): analogy accuracy on questions-words
restricted to the 30,000 most frequent words, semantic and syntactic, and Spearman's rho on
WordSim-353, SimLex-999 and MEN. gensim's own analogy evaluation is run too, as a cross-check of ours.
On a CPU the course's model runs in batches of 2,048 pairs sharing 32 noise words (``--batch-size``,
``--shared-negatives``), its fastest setting for skip-gram: the library's default load of 16 K (1,024
pairs, 64 noise words) spends more of a CPU's time in the noise words' matrix products.
Speed is raw corpus words x epochs per second of training (vocabulary building excluded for both),
on the wall clock and per CPU-second (the whole process's CPU time, all threads), because on a shared
machine the wall clock also measures the other users.

gensim is not a course dependency: install it for this benchmark only (`pip install gensim`).

    PYTHONPATH=. UNSUPLAB_DATA_MIRROR=... python benchmarks/word2vec_vs_gensim.py --epochs 5
    python benchmarks/word2vec_vs_gensim.py --epochs 1 5 --out results/benchmarks/word2vec_vs_gensim-cpu.json

Several ``--epochs`` values train both libraries once per value; the file keeps every run under ``runs``
and the last one at the top level. A benchmark is only worth writing on an idle machine: if the load
average exceeds the number of cores when it starts, the script stops without writing (``--allow-busy``
writes anyway, and the file says so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unsuplab import data  # noqa: E402
from unsuplab.models.word2vec import Vocabulary, train_word2vec  # noqa: E402
from unsuplab.runtime import device_name  # noqa: E402
from unsuplab.wordvectors import WordVectors, evaluate  # noqa: E402


def timed(fn):
    """Run ``fn`` and return (its result, wall seconds, CPU seconds of the whole process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def training_speed(words: int, wall: float, cpu: float) -> dict:
    """Training time on the wall clock and in CPU-seconds, and the words trained per second of each."""
    return {"train_seconds": round(wall, 2), "train_cpu_seconds": round(cpu, 2),
            "words_per_second": words / wall, "words_per_cpu_second": words / cpu}


def run_gensim(tokens: list[str], args, score: bool = True) -> dict:
    from gensim.models import Word2Vec

    # gensim takes sentences; text8 has none, so cut the stream into pieces of 10,000 words as
    # gensim's own Text8Corpus does (windows do not cross the cuts: 0.1% of positions are affected).
    sentences = [tokens[i:i + 10_000] for i in range(0, len(tokens), 10_000)]
    model = Word2Vec(vector_size=args.dim, window=args.window, negative=args.negatives, sg=1, hs=0,
                     min_count=args.min_count, sample=args.sample, alpha=args.lr, min_alpha=args.lr * 1e-4,
                     workers=args.workers, epochs=args.epochs, seed=args.seed)
    _, vocab_wall, _ = timed(lambda: model.build_vocab(sentences))
    _, wall, cpu = timed(lambda: model.train(sentences, total_examples=len(sentences), epochs=args.epochs))
    speed = training_speed(len(tokens) * args.epochs, wall, cpu)
    if not score:
        return speed
    counts = torch.tensor([model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key])
    wv = WordVectors(model.wv.index_to_key, torch.from_numpy(model.wv.vectors.copy()), counts)
    scores = evaluate(wv)
    questions = data.fetch("word-eval/questions-words.txt")
    own, _ = model.wv.evaluate_word_analogies(str(questions), restrict_vocab=30_000)
    return {"vocab_size": len(wv), "vocab_seconds": round(vocab_wall, 2), **speed, **scores,
            "analogy_acc_by_gensims_own_evaluation": float(own)}


def run_ours(tokens: list[str], args, shared_negatives, score: bool = True) -> dict:
    # The vocabulary and the word ids are built first and timed apart, as gensim's build_vocab is, so
    # that both CPU times count training only.
    (vocab, ids), vocab_wall, _ = timed(lambda: _vocab_and_ids(tokens, args.min_count))
    if shared_negatives == "auto" and args.device == "cpu":
        shared_negatives = args.shared_negatives      # the CPU's fastest setting, unless asked otherwise
    wv, _, cpu = timed(lambda: train_word2vec(
        ids, vocab=vocab, dim=args.dim, window=args.window, negatives=args.negatives,
        shared_negatives=shared_negatives, epochs=args.epochs, sample=args.sample, min_count=args.min_count,
        lr=args.lr, batch_size=args.batch_size if args.device == "cpu" else None, threads=args.workers,
        device=args.device, seed=args.seed, progress_bar=False))
    wall = wv.stats["train_seconds"]
    speed = training_speed(len(tokens) * args.epochs, wall, cpu)
    if not score:
        return speed
    return {"vocab_size": len(wv), "vocab_seconds": round(vocab_wall, 2), **speed,
            "shared_negatives": wv.stats["settings"]["shared_negatives"],
            "batch_size": wv.stats["settings"]["batch_size"], **evaluate(wv.to("cpu"))}


def _vocab_and_ids(tokens: list[str], min_count: int):
    vocab = Vocabulary.from_tokens(tokens, min_count)
    return vocab, vocab.encode(tokens)


def compare(tokens: list[str], corpus: str, args) -> dict:
    """Both libraries (and ours with per-pair noise, with ``--per-pair``) at ``args.epochs`` passes."""
    import gensim

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    results = {}
    for name, run in [("gensim", lambda: run_gensim(tokens, args)),
                      ("unsuplab", lambda: run_ours(tokens, args, "auto")),
                      *([("unsuplab_per_pair", lambda: run_ours(tokens, args, None))] if args.per_pair else [])]:
        print(f"training {name}, {args.epochs} epoch(s) ...", flush=True)
        results[name] = run()
        r = results[name]
        print(f"  {name}: {r['words_per_second']:,.0f} words/s ({r['words_per_cpu_second']:,.0f} per CPU-second), "
              f"analogy {r['analogy_acc']:.1%} (semantic {r['analogy_semantic_acc']:.1%}, syntactic "
              f"{r['analogy_syntactic_acc']:.1%}), WS353 {r['wordsim353_spearman']:.3f}, "
              f"SimLex {r['simlex999_spearman']:.3f}, MEN {r['men_spearman']:.3f}", flush=True)
    ours, ref = results["unsuplab"], results["gensim"]
    return {
        "benchmark": "word2vec_vs_gensim", "started": started, "corpus": corpus,
        "corpus_is_text8": corpus == "text8", "raw_words": len(tokens),
        "settings": {k: getattr(args, k) for k in ("epochs", "dim", "window", "negatives", "min_count", "sample",
                                                    "lr", "workers", "device", "seed", "max_words", "batch_size",
                                                    "shared_negatives")},
        "hardware": device_name(torch.device(args.device)), "cpu": device_name(torch.device("cpu")),
        "cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(), "torch": torch.__version__, "gensim": gensim.__version__,
        "speed_ratio_wall": ours["words_per_second"] / ref["words_per_second"],
        "speed_ratio_cpu": ours["words_per_cpu_second"] / ref["words_per_cpu_second"],
        "analogy_difference": ours["analogy_acc"] - ref["analogy_acc"],
        "results": results,
    }


def speed_check(tokens: list[str], args) -> dict:
    """Speed only, robust to a host whose speed drifts: ``args.speed_repeats`` rounds, each training gensim
    and ours for one epoch on the first ``args.speed_words`` words, back to back (the order alternating
    from round to round), and the median over the rounds of ours / gensim. A shared machine can change
    speed by half within minutes at the same load average (measured while this chapter was written), so
    a ratio taken from two long runs minutes apart measures the machine as well as the code."""
    few = tokens[:args.speed_words]
    one = argparse.Namespace(**{**vars(args), "epochs": 1})
    rounds = []
    for r in range(args.speed_repeats):
        runners = [("gensim", lambda: run_gensim(few, one, score=False)),
                   ("unsuplab", lambda: run_ours(few, one, "auto", score=False))]
        result = {name: run() for name, run in (runners if r % 2 == 0 else runners[::-1])}
        result["ratio_wall"] = result["unsuplab"]["words_per_second"] / result["gensim"]["words_per_second"]
        result["ratio_cpu"] = result["unsuplab"]["words_per_cpu_second"] / result["gensim"]["words_per_cpu_second"]
        print(f"  speed round {r + 1}: ours / gensim {result['ratio_wall']:.2f}x wall, {result['ratio_cpu']:.2f}x per "
              f"CPU-second (gensim {result['gensim']['words_per_cpu_second']:,.0f} words per CPU-second)", flush=True)
        rounds.append(result)
    return {"words": len(few), "rounds": rounds,
            "median_ratio_wall": float(np.median([r["ratio_wall"] for r in rounds])),
            "median_ratio_cpu": float(np.median([r["ratio_cpu"] for r in rounds]))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="auto", help="text8, enwiki-17M, ... or auto (text8 if possible)")
    parser.add_argument("--max-words", type=int, default=None, help="only the first N words of the corpus")
    parser.add_argument("--epochs", type=int, nargs="+", default=[5], help="passes; several values: one run each")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-3)
    parser.add_argument("--lr", type=float, default=0.025)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    parser.add_argument("--device", default="cpu", help="device of our model (gensim always runs on the CPU)")
    parser.add_argument("--per-pair", action="store_true", help="also train ours with K noise words per pair")
    parser.add_argument("--batch-size", type=int, default=2_048,
                        help="ours on a CPU: pairs per step (the library's default is 1,024, the lab's too)")
    parser.add_argument("--shared-negatives", type=int, default=32,
                        help="ours on a CPU: noise words shared by a batch (the default load of 16 K would be "
                             "batch_size // 16): skip-gram's fastest setting measured on a CPU at equal accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-repeats", type=int, default=5,
                        help="rounds of the speed check: both libraries, one epoch each, back to back (0: none)")
    parser.add_argument("--speed-words", type=int, default=3_000_000, help="words of the corpus the speed check trains on")
    parser.add_argument("--allow-busy", action="store_true",
                        help="write the file even if the load average exceeds the core count (it says so)")
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "word2vec_vs_gensim-cpu.json"))
    args = parser.parse_args(argv)

    import gensim  # noqa: F401 - fail now, not after tokenising, if it is missing

    def too_busy() -> bool:
        load, cores = os.getloadavg()[0], os.cpu_count()
        if load > cores and not args.allow_busy:
            print(f"the load average is {load:.2f} on {cores} cores: other jobs are running, so the timings "
                  "would measure them too. Nothing is written; wait for an idle machine (or pass --allow-busy).",
                  file=sys.stderr)
            return True
        return False

    if too_busy():
        return 2
    load_at_start = [round(x, 2) for x in os.getloadavg()]    # later runs' loads include our own earlier runs
    corpus = data.english_corpus() if args.corpus == "auto" else args.corpus
    tokens, token_wall, _ = timed(lambda: data.corpus_tokens(corpus, args.max_words))
    print(f"corpus {corpus}: {len(tokens):,} words (tokenised in {token_wall:.0f} s)"
          + ("" if corpus == "text8" else " -- an offline stand-in for text8, not text8"), flush=True)
    runs = {}
    for epochs in args.epochs:
        runs[str(epochs)] = summary = compare(tokens, corpus, argparse.Namespace(**{**vars(args), "epochs": epochs}))
        print(f"{epochs} epoch(s): ours / gensim speed {summary['speed_ratio_wall']:.2f}x on the wall clock, "
              f"{summary['speed_ratio_cpu']:.2f}x per CPU-second; analogy difference "
              f"{100 * summary['analogy_difference']:+.1f} points", flush=True)
    speed = None
    if args.speed_repeats > 0:
        print(f"speed check: {args.speed_repeats} rounds of one epoch each on {min(args.speed_words, len(tokens)):,} words",
              flush=True)
        speed = speed_check(tokens, args)
        print(f"speed check: median ours / gensim {speed['median_ratio_wall']:.2f}x on the wall clock, "
              f"{speed['median_ratio_cpu']:.2f}x per CPU-second", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**summary, "load_average_at_start": load_at_start,
                                "machine_was_busy": load_at_start[0] > os.cpu_count(), "runs": runs,
                                "speed_check": speed}, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
