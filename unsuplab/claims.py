"""What each lab claims, as inequalities over the numbers it records, checked against its runs.

A sentence in the book that states a result ("SimCLR's features beat a random network") is only as
good as the run behind it. Each lab declares its headline claims here: a short sentence, a check over
the metric names the notebook records with :func:`unsuplab.bench.record`, and the profiles on which it
must hold. The book, the labs and the tests read this one registry::

    python -m unsuplab.bench claims            # every claim against every results/*.json
    ul.claims.show("07_self_supervised")       # in a lab: the claims against this run's numbers

A check is a Python expression over metric names, numbers and strings, with ``+ - * /``, comparisons,
``and``/``or``/``not``, indexing of list metrics (``iw_bounds[-1]``) and the functions ``min``,
``max``, ``abs``, ``len``, ``all``, ``any``. Nothing else is evaluated: a check cannot call code.

A claim that does not hold today stays in the registry, marked ``expected_to_fail`` with the reason;
it is shown as failing in the book, and the test suite fails if it starts to hold without the mark being
removed (or if any other claim fails on a committed result).
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

PROFILES = ("cpu", "full")  # the profiles a claim can be made for; smoke only proves the code runs

HOLDS, FAILS, EXPECTED_FAIL, UNEXPECTED_PASS, NOT_MEASURED = (
    "holds", "fails", "fails (expected)", "holds (unexpected)", "not measured")
MARKS = {HOLDS: "✓", FAILS: "✗", EXPECTED_FAIL: "✗", UNEXPECTED_PASS: "✓", NOT_MEASURED: "–"}


@dataclass(frozen=True)
class Claim:
    """One headline result of a lab: ``text`` is what the book says, ``check`` what must be true.

    ``unit`` says how the left-hand side of the check is shown: ``"pts"`` (a difference of accuracies,
    in percentage points), ``"%"`` (an accuracy), or any other word (nats, BLEU, dB) for plain numbers.
    ``expected_to_fail`` is the reason a claim does not hold today on the profiles in
    ``expected_to_fail_on``; it is never a way to hide the failure, only to say why it is known.
    """

    id: str
    text: str
    check: str
    profiles: tuple[str, ...] = PROFILES
    unit: str = ""
    expected_to_fail: str = ""
    expected_to_fail_on: tuple[str, ...] = ("cpu",)

    def __post_init__(self):
        unknown = set(self.profiles) - set(PROFILES)
        if unknown:
            raise ValueError(f"claim {self.id!r}: profiles must be among {PROFILES}, got {sorted(unknown)}")
        compile_check(self.check)  # a typo fails at import, not in the book build


# --------------------------------------------------------------------------- the evaluator

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_SYMBOL = {ast.Lt: "<", ast.LtE: "≤", ast.Gt: ">", ast.GtE: "≥", ast.Eq: "=", ast.NotEq: "≠"}
_FUNCTIONS = {"min": min, "max": max, "abs": abs, "len": len, "all": all, "any": any}


class MissingMetric(KeyError):
    """A check names a metric that the run did not record."""


def compile_check(check: str) -> ast.Expression:
    """Parse ``check`` and refuse anything but the small language described in the module docstring."""
    try:
        tree = ast.parse(check, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"claim check {check!r} is not a valid expression: {err.msg}") from None
    allowed = (ast.Expression, ast.Name, ast.Load, ast.Constant, ast.BinOp, ast.UnaryOp, ast.USub,
               ast.UAdd, ast.Not, ast.BoolOp, ast.And, ast.Or, ast.Compare, ast.Call, ast.Subscript,
               ast.List, ast.Tuple, *_BINARY, *_COMPARE)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise ValueError(f"claim check {check!r} uses {type(node).__name__}, which checks may not: "
                             "use metric names, numbers, + - * /, comparisons, and/or/not, [i] and "
                             f"{', '.join(_FUNCTIONS)}.")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                                               and not node.keywords):
            raise ValueError(f"claim check {check!r} calls something other than {', '.join(_FUNCTIONS)}.")
    return tree


def _eval(node: ast.AST, metrics: dict) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, metrics)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _FUNCTIONS:
            return _FUNCTIONS[node.id]
        if node.id not in metrics:
            raise MissingMetric(node.id)
        return metrics[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(item, metrics) for item in node.elts]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, metrics), _eval(node.right, metrics))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, metrics)
        return not value if isinstance(node.op, ast.Not) else (-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BoolOp):
        values = [bool(_eval(v, metrics)) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, metrics)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, metrics)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return _eval(node.func, metrics)(*[_eval(a, metrics) for a in node.args])
    if isinstance(node, ast.Subscript):
        return _eval(node.value, metrics)[_eval(node.slice, metrics)]
    raise ValueError(f"cannot evaluate {type(node).__name__}")  # compile_check() stops this earlier


def _format(value: Any, unit: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if unit == "pts":
        return f"{100 * value:+.1f} pts"
    if unit == "%":
        return f"{100 * value:.1f}%"
    text = f"{value:.4g}" if isinstance(value, float) else f"{value:,}"
    return f"{text} {unit}".rstrip()


def measure(claim: Claim, metrics: dict) -> tuple[bool | None, str]:
    """Evaluate ``claim`` on ``metrics``: (True/False, or None when a metric is missing, and the shown value).

    The value is the left-hand side of a single comparison with its bound ("+11.5 pts (needs ≥ +15.0
    pts)"); for a compound check it is the truth of each part.
    """
    tree = compile_check(claim.check)
    try:
        holds = bool(_eval(tree, metrics))
        body = tree.body
        if isinstance(body, ast.Compare) and len(body.ops) == 1:
            left, right = _eval(body.left, metrics), _eval(body.comparators[0], metrics)
            shown = f"{_format(left, claim.unit)} (needs {_SYMBOL[type(body.ops[0])]} {_format(right, claim.unit)})"
        else:
            shown = "true" if holds else "false"
    except MissingMetric as missing:
        return None, f"{missing.args[0]} not recorded"
    except (TypeError, IndexError, ZeroDivisionError) as err:
        raise ValueError(f"claim {claim.id!r} ({claim.check}) cannot be evaluated on these metrics: {err}") from None
    return holds, shown


# --------------------------------------------------------------------------- the registry
# One section per lab, in the book's order. Each claim is the chapter's lesson, stated against an
# honest baseline measured in the same run (raw pixels, PCA, a random network, chance, a bag of words).

def _claims(*claims: Claim) -> tuple[Claim, ...]:
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claim ids must be unique within a lab: {ids}")
    return claims


CLAIMS: dict[str, tuple[Claim, ...]] = {
    "01_baselines": _claims(
        Claim("pca_compresses", "PCA keeps 90% of the variance of MNIST in fewer than 100 of its 784 "
              "directions.", "pca_components_for_90pct < 100"),
        Claim("kmeans_finds_digits", "K-means with 10 clusters groups the test digits far better than "
              "chance (10%), with no label used.", "kmeans10_cluster_accuracy >= 0.4", unit="%"),
        Claim("kmeans_features_beat_pixels", "A linear probe on K-means features beats one on raw "
              "pixels by at least 3 points.", "linear_acc_kmeans - linear_acc_raw >= 0.03", unit="pts"),
        Claim("pca_keeps_neighbours", "50 PCA components keep the k-NN accuracy of the 784 pixels "
              "(within 1 point).", "knn_acc_pca50 - knn_acc_raw >= -0.01", unit="pts"),
    ),
    "02_sparse_coding": _claims(
        Claim("fista_faster", "FISTA is at least 10 times closer to the optimum than ISTA after 100 steps.",
              "ista_gap_100 / fista_gap_100 >= 10", unit="×"),
        Claim("atoms_are_edges", "Learned atoms are oriented, edge-like patterns: their orientation "
              "coherence is at least 0.3 above that of random atoms.",
              "atom_coherence - random_atom_coherence >= 0.3"),
        Claim("denoising_beats_blur", "Sparse coding over the learned dictionary denoises better than "
              "the best Gaussian blur (by at least 1 dB PSNR).", "psnr_denoised - psnr_blur >= 1", unit="dB"),
        Claim("inpainting_beats_local_mean", "Sparse coding fills missing pixels better than a local mean "
              "(by at least 1 dB PSNR).", "psnr_inpainted - psnr_local_mean >= 1", unit="dB"),
        Claim("codes_help_linear_probe", "A linear probe on sparse codes of MNIST beats one on pixels by "
              "at least 3 points.", "linear_acc_codes - linear_acc_raw >= 0.03", unit="pts"),
    ),
    "03_rbm_dbn": _claims(
        Claim("ais_is_accurate", "Annealed importance sampling estimates log Z of an RBM small enough to "
              "enumerate within 0.5 nats.", "abs(small_rbm_log_z_ais - small_rbm_log_z_exact) <= 0.5",
              unit="nats"),
        Claim("pcd_beats_cd1", "PCD-1 learns a better density model than CD-1 (test log-likelihood at "
              "least 5 nats higher).", "rbm_pcd_test_logprob - rbm_cd1_test_logprob >= 5", unit="nats"),
        Claim("rbm_beats_base_rate", "The PCD-trained RBM beats the independent-pixels base-rate model by "
              "at least 50 nats.", "rbm_pcd_test_logprob - base_rate_test_logprob >= 50", unit="nats"),
        Claim("dbn_beats_2006_baseline", "Greedy pretraining beats the 2006 baseline: the same sigmoid "
              "network trained from random init by plain SGD on the same budget.",
              "mlp_test_error - dbn_test_error >= 0.01", unit="pts"),
        Claim("rbm_features_beat_pixels", "On scikit-learn's digits, RBM features beat raw pixels under a "
              "logistic regression by at least 10 points.",
              "digits_acc_rbm_unsuplab - digits_acc_raw >= 0.1", unit="pts"),
        Claim("dbn_error_goal", "The fine-tuned DBN reaches at most 2% test error on MNIST.",
              "dbn_test_error <= 0.02", unit="%", profiles=("cpu",)),
        Claim("rbm_pipeline_as_fast_as_sklearn", "On scikit-learn's digits, the course's RBM pipeline is at least as "
              "fast as scikit-learn's BernoulliRBM, on the same thread count and settings, at the same accuracy "
              "(no lower than one standard error of the test accuracy, the spread of either pipeline over seeds).",
              "digits_seconds_rbm_unsuplab <= digits_seconds_rbm_sklearn and "
              "digits_acc_rbm_unsuplab >= digits_acc_rbm_sklearn - digits_acc_se", profiles=("cpu",)),
        Claim("pcd_loglik_goal", "The PCD-trained RBM reaches a test log-likelihood of at least −105 nats.",
              "rbm_pcd_test_logprob >= -105", unit="nats", profiles=("cpu",)),
        Claim("modern_baseline_needs_no_pretraining", "Today's recipe without pretraining (ReLU units, He "
              "initialisation, Adam) reaches a test error at least as low as the pretrained DBN's, on the same "
              "layers, data and epochs.", "relu_test_error <= dbn_test_error", unit="%", profiles=("cpu",)),
    ),
    "04_autoencoders": _claims(
        Claim("linear_ae_is_pca", "A linear autoencoder finds PCA's subspace: its error is within 2% of "
              "PCA's at the same code size.", "linear_ae_test_sq_error / pca16_test_sq_error <= 1.02"),
        Claim("ae_beats_pca", "A non-linear autoencoder reconstructs better than PCA at every code size "
              "tried.", "ae_beats_pca_at_every_k == True"),
        Claim("conv_beats_mlp", "A convolutional autoencoder reconstructs better than an MLP one with "
              "fewer parameters.", "conv_test_sq_error < mlp_test_sq_error and conv_parameters < mlp_parameters"),
        Claim("ae_2d_beats_pca_2d", "With a 2-d code, the autoencoder separates digits better than PCA "
              "(k-NN accuracy at least 10 points higher).", "knn_acc_ae_2d - knn_acc_pca_2d >= 0.1", unit="pts"),
        Claim("ae_detects_anomalies", "Reconstruction error flags unseen digits better with the autoencoder "
              "than with PCA (mean AUROC at least 0.03 higher).",
              "anomaly_mean_auroc_ae - anomaly_mean_auroc_pca >= 0.03"),
        Claim("masking_teaches_robustness", "Training with masking noise (ν = 0.5) lowers the error on "
              "half-masked test digits below the plain autoencoder's.",
              "dae_mask_test_sq_error_masked50[2] < dae_mask_test_sq_error_masked50[0]"),
        Claim("dec_beats_kmeans_on_codes", "DEC's clustering loss raises K-means' cluster accuracy on the same "
              "autoencoder codes by at least 3 points.", "cluster_acc_dec - cluster_acc_kmeans_ae >= 0.03", unit="pts"),
        Claim("dec_beats_kmeans_on_pixels", "DEC clusters the test digits better than chapter 1's K-means on pixels, by "
              "at least 5 points of cluster accuracy.", "cluster_acc_dec - cluster_acc_kmeans_pixels >= 0.05", unit="pts"),
    ),
    "05_vae": _claims(
        Claim("iw_bound_tightens", "The importance-weighted bound tightens with more samples: from k = 1 to "
              "the largest k it rises by at least 1 nat.", "iw_bounds[-1] - iw_bounds[0] >= 1", unit="nats"),
        Claim("beta_disentangles", "β = 4 disentangles the sprites' factors better than β = 1 (MIG at "
              "least 0.03 higher).", "mig_beta4 - mig_beta1 >= 0.03"),
        Claim("vq_uses_its_codebook", "The VQ-VAE uses at least 16 of its codes (no codebook collapse).",
              "vq_codes_used >= 16"),
        Claim("vq_restarts_fill_the_codebook", "With dead codes restarted, the VQ-VAE uses at least 90% of its "
              "codes, and more than the same model trained without restarts.",
              "vq_codes_used >= 0.9 * vq_n_codes and vq_codes_used > vq_codes_used_no_restarts"),
        Claim("vae_loglik_goal", "The VAE's importance-weighted test log-likelihood is at least −97 nats.",
              "test_log_px_iw >= -97", unit="nats", profiles=("cpu",)),
    ),
    "06_gan": _claims(
        Claim("nonsaturating_gradients", "At the start of training the non-saturating generator loss gives "
              "gradients at least 10 times larger than the saturating one.",
              "toy_grad_ratio_ns_over_sat >= 10", unit="×"),
        Claim("dcgan_covers_digits", "The DCGAN covers at least 9 of the 10 digits (no mode collapse).",
              "dcgan_digits_covered >= 9"),
        Claim("gan_sharper_than_vae", "The DCGAN's samples are closer to real digits than the VAE's "
              "(lower Fréchet distance).", "fd_dcgan < fd_vae"),
        Claim("cycle_beats_identity", "Trained without a single pair, CycleGAN's translation to bold digits "
              "lands closer to the true bold digit than the untranslated input does.",
              "cycle_mse_ab < cycle_mse_identity"),
        Claim("cycle_keeps_digit", "CycleGAN translation keeps the digit at least 90% of the time.",
              "cycle_digit_kept_acc >= 0.9", unit="%"),
        Claim("cgan_obeys_label", "A conditional GAN draws the digit it is asked for: the course's MNIST "
              "classifier reads the asked digit in at least 90% of its samples (its own accuracy on real test "
              "digits is the ceiling).", "cgan_label_accuracy >= 0.9", unit="%"),
        Claim("cgan_obeys_every_digit", "The conditional GAN obeys every one of the 10 labels: for each digit, "
              "the classifier reads it in at least 75% of the samples that asked for it.",
              "min(cgan_per_class_acc) >= 0.75", unit="%"),
        Claim("cgan_label_beats_infogan_code", "Given the labels, the conditional GAN controls the digit better "
              "than InfoGAN's code learned without them: its label accuracy is above InfoGAN's code-digit "
              "accuracy, even though the code is first matched to the digits.",
              "cgan_label_accuracy > infogan_code_digit_acc", unit="%"),
        Claim("cgan_fd_near_floor", "The conditional GAN's samples are also varied and realistic: their Fréchet "
              "distance is within 3 times the real-data floor.", "fd_cgan_ratio_to_floor <= 3", unit="×",
              profiles=("cpu",)),
        Claim("infogan_code_finds_digits", "InfoGAN's categorical code, learned without labels, predicts "
              "the digit for at least half of the samples (chance: 10%).", "infogan_code_digit_acc >= 0.5", unit="%"),
        Claim("fd_near_floor", "The DCGAN's Fréchet distance is within 3 times the real-data floor.",
              "fd_ratio_to_floor <= 3", unit="×", profiles=("cpu",)),
        Claim("infogan_goal", "InfoGAN's categorical code matches the digit at least 80% of the time (the paper: "
              "about 95%).", "infogan_code_digit_acc >= 0.8", unit="%", profiles=("cpu",),
              expected_to_fail="issue 18: InfoGAN's fully connected layers in G and in D's shared trunk (Chen et al. "
                               "2016) took the lab's code-digit match from 27% to 66%, and its curve is flat after "
                               "400 steps (14, 59, 60, 66, 66% at 200 to 1,000 steps); trials on this host gave 63-85% "
                               "by seed (seed 1: 84% after 1,000 steps; seed 2: 63%), and batch 128 reached 84% on "
                               "seed 0 after 1,200 steps, about four minutes more than lab 6 can spend on a slow run "
                               "of this host (the lab took 430 s there before the change, 200 s in today's run)"),
    ),
    "07_self_supervised": _claims(
        Claim("random_trunk_beats_pixels", "A randomly initialised network is already a strong baseline: its "
              "features beat raw pixels by at least 5 points on the linear probe and on k-NN.",
              "min(linear_acc_random - linear_acc_raw, knn_acc_random - knn_acc_raw) >= 0.05", unit="pts"),
        Claim("supervised_upper_bound", "Supervised training of the same trunk on the same images, the upper "
              "bound, stays above SimCLR on the linear probe and on k-NN.",
              "min(linear_acc_supervised - linear_acc_simclr, knn_acc_supervised - knn_acc_simclr) > 0", unit="pts"),
        Claim("simclr_beats_random", "SimCLR's features beat the randomly initialised trunk by at least "
              "4 points on the linear probe and on k-NN.",
              "min(linear_acc_simclr - linear_acc_random, knn_acc_simclr - knn_acc_random) >= 0.04", unit="pts"),
        Claim("rotnet_beats_random", "RotNet's features beat the random trunk by at least 4 points "
              "(linear and k-NN).",
              "min(linear_acc_rotnet - linear_acc_random, knn_acc_rotnet - knn_acc_random) >= 0.04", unit="pts"),
        Claim("color_beats_random", "Colorization's features beat the random trunk by at least 4 points "
              "(linear and k-NN).",
              "min(linear_acc_color - linear_acc_random, knn_acc_color - knn_acc_random) >= 0.04", unit="pts"),
        Claim("relpos_beats_random", "Relative-position features beat the random trunk by at least 4 points "
              "(linear and k-NN).",
              "min(linear_acc_relpos - linear_acc_random, knn_acc_relpos - knn_acc_random) >= 0.04", unit="pts"),
        Claim("npid_beats_random", "NPID's features beat the random trunk by at least 4 points "
              "(linear and k-NN).",
              "min(linear_acc_npid - linear_acc_random, knn_acc_npid - knn_acc_random) >= 0.04", unit="pts"),
        Claim("deepcluster_beats_random", "DeepCluster's features beat the random trunk by at least 4 points "
              "(linear and k-NN).",
              "min(linear_acc_deepcluster - linear_acc_random, knn_acc_deepcluster - knn_acc_random) >= 0.04",
              unit="pts"),
        Claim("simclr_closes_gap", "SimCLR closes at least 60% of the gap between the random trunk and "
              "supervised training of the same trunk on the same images.",
              "(linear_acc_simclr - linear_acc_random) / (linear_acc_supervised - linear_acc_random) >= 0.6",
              unit="%"),
        Claim("deepcluster_fixes_matter", "With its other two guards down (K-means on features that are not "
              "whitened, started from the last round's centroids), DeepCluster without its fixes loses at least half "
              "of its clusters for good in the run that trains the features, while with them it keeps every one.",
              "dc_guard_clusters_used_naive <= 0.5 and dc_guard_clusters_used_fixed == 1"),
        Claim("deepcluster_collapse_grows_a_giant", "In the same runs, the largest cluster ends at least twice as "
              "big without the fixes as with them.",
              "dc_guard_largest_share_naive >= 2 * dc_guard_largest_share_fixed", unit="%"),
        Claim("deepcluster_collapse_costs_features", "And the frozen features of the run without the fixes are "
              "at least 2 points worse, on the linear probe and on k-NN.",
              "min(linear_acc_dc_guard_fixed - linear_acc_dc_guard_naive, knn_acc_dc_guard_fixed - "
              "knn_acc_dc_guard_naive) >= 0.02", unit="pts"),
        Claim("paper_guards_keep_clusters_alive", "With the paper's whitening and K-means restarted every round, "
              "no cluster is left empty even without the fixes: at this scale the fixes are insurance.",
              "dc_empty_naive == 0"),
        Claim("balanced_sampling_defuses_trap", "In the synthetic trap, class-balanced sampling stops one "
              "giant cluster from swallowing the predictions.",
              "dc_trap_predicted_giant_uniform - dc_trap_predicted_giant_balanced >= 0.5", unit="pts"),
        Claim("gap_removes_shortcut", "A gap and jitter between patches remove the relative-position "
              "shortcut: a network trained on touching patches loses at least 20 points on them.",
              "shortcut_acc_touching - shortcut_acc_gap_jitter >= 0.2", unit="pts"),
    ),
    "07_pretext_tasks": _claims(
        Claim("exemplar_beats_random", "Exemplar-CNN's features beat the randomly initialised trunk by at least 4 "
              "points on the linear probe and on k-NN.",
              "min(linear_acc_exemplar - linear_acc_random, knn_acc_exemplar - knn_acc_random) >= 0.04", unit="pts"),
        Claim("jigsaw_gets_solved", "On the paper's 3 x 3 grid of 9-pixel tiles, the jigsaw is solved ever better: "
              "at least 10 points more test puzzles after the last pass over the images than after the first.",
              "jigsaw_pretext_acc - jigsaw_pretext_acc_first >= 0.1", unit="pts"),
        Claim("jigsaw_features_do_not_follow", "Meanwhile the linear probe on the same network's features gains less "
              "than 1 point from the first pass to the last: solving the puzzle better does not make better features.",
              "linear_acc_jigsaw - jigsaw_linear_first < 0.01", unit="pts"),
        Claim("big_tiles_beat_random", "On a 2 x 2 grid of 14-pixel tiles, the jigsaw's features beat the random "
              "trunk by at least 3 points on the linear probe and on k-NN.",
              "min(linear_acc_jigsaw2x2 - linear_acc_random, knn_acc_jigsaw2x2 - knn_acc_random) >= 0.03", unit="pts"),
        Claim("context_encoder_beats_random", "The context encoder's features beat the random trunk by at least 3 "
              "points on the linear probe and on k-NN.",
              "min(linear_acc_context - linear_acc_random, knn_acc_context - knn_acc_random) >= 0.03", unit="pts"),
        Claim("nat_beats_random", "Noise as targets' features beat the random trunk by at least 3 points on the "
              "linear probe and on k-NN.",
              "min(linear_acc_nat - linear_acc_random, knn_acc_nat - knn_acc_random) >= 0.03", unit="pts"),
        Claim("exemplar_strongest", "Exemplar-CNN is the strongest of the lab's four label-free methods on the "
              "linear probe and on k-NN.",
              "min(linear_acc_exemplar - max(linear_acc_jigsaw, linear_acc_jigsaw2x2, linear_acc_context, "
              "linear_acc_nat), knn_acc_exemplar - max(knn_acc_jigsaw, knn_acc_jigsaw2x2, knn_acc_context, "
              "knn_acc_nat)) > 0", unit="pts"),
        Claim("supervised_upper_bound", "Supervised training of the same trunk, the upper bound, stays above "
              "Exemplar-CNN on the linear probe and on k-NN.",
              "min(linear_acc_supervised - linear_acc_exemplar, knn_acc_supervised - knn_acc_exemplar) > 0", unit="pts"),
    ),
    "08_word2vec": _claims(
        Claim("king_queen", "king − man + woman lands nearest to queen.", "king_minus_man_plus_woman == 'queen'"),
        Claim("analogies_far_above_chance", "Skip-gram vectors solve at least 15% of the analogy questions "
              "they cover (chance is below 0.01%).", "analogy_acc >= 0.15", unit="%"),
        Claim("similarity_matches_people", "Cosine similarity agrees with human similarity judgments "
              "(WordSim-353 Spearman ρ ≥ 0.5).", "wordsim353_spearman >= 0.5"),
        Claim("analogy_goal", "The cpu profile reaches gensim's 5-epoch quality: at least 38% analogy accuracy.",
              "analogy_acc >= 0.38", unit="%", profiles=("cpu",)),
        Claim("trains_in_five_minutes", "The cpu profile's training takes at most 5 minutes on a 2-core CPU.",
              "train_seconds <= 300", unit="s", profiles=("cpu",)),
        Claim("cbow_trains_faster", "CBOW trains faster per pass than skip-gram, with either output layer: one "
              "example per position instead of one per (center, context) pair.",
              "cbow_ns_train_seconds < sg_ns_train_seconds and cbow_hs_train_seconds < sg_hs_train_seconds"),
        Claim("huffman_paths_short", "Frequent words get short Huffman codes: averaged over the corpus's tokens, a "
              "word's path in the hierarchical softmax passes fewer inner nodes than log2 V.",
              "hs_mean_code_length < hs_log2_vocab", unit="nodes"),
        Claim("hs_ahead_after_one_pass", "After one pass over the first 2 M words, the hierarchical softmax's vectors "
              "agree better with people than negative sampling's, with either architecture (WordSim-353 Spearman ρ "
              "at least 0.05 higher).",
              "min(sg_hs_wordsim353_spearman - sg_ns_wordsim353_spearman, "
              "cbow_hs_wordsim353_spearman - cbow_ns_wordsim353_spearman) >= 0.05", profiles=("cpu",)),
    ),
    "08_bert": _claims(
        Claim("mlm_beats_unigram", "Masked-token prediction learns context: its accuracy beats the unigram "
              "baseline by at least 5 points.", "mlm_acc - unigram_acc >= 0.05", unit="pts"),
        Claim("mlm_perplexity_below_unigram", "The masked language model's perplexity is below the unigram "
              "model's.", "mlm_ppl < unigram_ppl"),
        Claim("mlm_doubles_unigram", "Masked-token accuracy on held-out text is at least twice the unigram "
              "baseline's.", "mlm_acc >= 2 * unigram_acc", unit="%", profiles=("cpu",)),
        Claim("nsp_learns", "Next-sentence prediction is learned: at least 60% on held-out pairs, where "
              "guessing scores 50%.", "nsp_acc >= 0.60", unit="%", profiles=("cpu",)),
        Claim("pretraining_pays_off", "With the fewest labels (4 per class), fine-tuning from the pretrained "
              "weights beats fine-tuning from random weights by at least 5 points (mean of the label draws, "
              "each at its better learning rate).", "finetune_acc_pretrained - finetune_acc_random >= 0.05",
              unit="pts"),
        Claim("probe_agrees", "With the fewest labels, a linear probe on the frozen pretrained encoder beats one "
              "on a frozen random encoder.", "probe_acc_pretrained - probe_acc_random > 0", unit="pts"),
        Claim("gain_shrinks_with_labels", "The gain from pretraining is largest with the fewest labels: with the "
              "most labels it is smaller.", "pretraining_gain - pretraining_gain_most_labels > 0", unit="pts",
              profiles=("cpu",)),
        Claim("bag_of_words_is_strong", "On this topic task, a TF-IDF bag of words beats the small BERT "
              "(either initialisation), even with the fewest labels.",
              "tfidf_acc > max(finetune_acc_pretrained, finetune_acc_random)"),
    ),
    "09_unsupervised_translation": _claims(
        Claim("procrustes_recovers_rotation", "With 50 seed pairs, Procrustes recovers a hidden rotation of "
              "real word vectors (P@1 ≥ 95%).", "hidden_rotation_p1_seed50 >= 0.95", unit="%"),
        Claim("adversarial_recovers_rotation", "With no dictionary at all, the adversarial game and "
              "Procrustes refinement recover a hidden rotation of real word vectors (P@1 ≥ 95%).",
              "hidden_rotation_p1_refined >= 0.95", unit="%"),
        Claim("similarity_start_recovers_rotation", "Without a dictionary and without the game, similarity "
              "signatures and self-learning recover the same hidden rotation (P@1 ≥ 95%).",
              "hidden_rotation_p1_similarity_start >= 0.95", unit="%"),
        Claim("csls_beats_nn", "CSLS retrieval beats nearest-neighbour retrieval for the supervised mapping.",
              "sup_p1_csls - sup_p1_nn > 0", unit="pts"),
        Claim("unsupervised_holds_on_halves", "On two halves of the same English novels, the similarity start "
              "and self-learning (no dictionary, no shared spelling used) reach at least 90% of the supervised "
              "map's P@1.", "curve_en_halves_similarity_start - 0.9 * curve_en_halves_supervised >= 0", unit="pts"),
        Claim("isomorphism_breaks_across_languages", "Between English and French novels of 3 million words each, "
              "the spaces are far less isomorphic than two English halves (relational similarity) and even the "
              "supervised map finds under half of the test words.",
              "curve_en_fr_novels_relational_similarity < curve_en_halves_relational_similarity "
              "and curve_en_fr_novels_supervised < 0.5", unit="", profiles=("cpu",)),
        Claim("identical_seeds_help", "Between English and French novels, the identical-strings seed keeps at "
              "least half of the supervised map's P@1, while the similarity start, which relies on the shape alone, "
              "keeps less than a fifth.",
              "curve_en_fr_novels_identical_strings >= 0.5 * curve_en_fr_novels_supervised "
              "and curve_en_fr_novels_similarity_start < 0.2 * curve_en_fr_novels_supervised", unit=""),
        Claim("unmt_beats_word_by_word", "Started from a dictionary induced without any bilingual resource, "
              "denoising and back-translation beat word-by-word translation with that dictionary by at least "
              "5 BLEU in both directions.",
              "min(unmt_gain_over_wbw_en_fr, unmt_gain_over_wbw_fr_en) >= 5", unit="BLEU"),
        Claim("supervised_upper_bound", "The supervised model trained on the parallel sentences stays "
              "above the unsupervised one (the upper bound).",
              "min(sup_bleu_en_fr - unmt_bleu_en_fr, sup_bleu_fr_en - unmt_bleu_fr_en) > 0", unit="BLEU"),
    ),
    "10_energy_based_models": _claims(
        Claim("langevin_bias_matches_theory", "Langevin dynamics with a finite step samples a wider distribution than "
              "p, as the theory of the discretised chain predicts: at step size 1 on a unit Gaussian energy the "
              "measured variance is within 5% of 1 / (1 - 1/4).",
              "abs(langevin_variance[3] / langevin_variance_theory[3] - 1) <= 0.05", unit=""),
        Claim("toy_ebm_beats_gaussian", "On the ring of 8 Gaussians, the energy network's exact held-out "
              "log-likelihood beats the best single Gaussian by at least 1 nat per point.",
              "toy_ll_ebm - toy_ll_gaussian >= 1", unit="nats"),
        Claim("toy_ebm_closes_gap", "It closes at least four fifths of the gap between the single Gaussian and the "
              "true density.", "toy_gap_closed >= 0.8", unit="%"),
        Claim("toy_samples_reach_modes", "Its persistent Langevin chains reach all 8 modes.",
              "toy_modes_covered >= 8"),
        Claim("digit_samples_leave_noise", "Short-run Langevin chains of the digits' energy, started from uniform "
              "noise, end at least twice as close to the test digits (Fréchet distance) as the noise they "
              "started from.", "fd_short_run_ratio_to_noise <= 0.5", unit="×"),
        Claim("buffer_covers_digits", "The persistent chains of the replay buffer hold at least 9 of the 10 digits "
              "(each at least 2% of the samples, as the classifier reads them).", "buffer_digits_covered >= 9"),
        Claim("toy_flow_beats_gaussian", "On the same ring, a RealNVP flow's exact held-out log-likelihood, which "
              "needs no grid, beats the best single Gaussian by at least 1 nat per point.",
              "toy_ll_flow - toy_ll_gaussian >= 1", unit="nats"),
        Claim("toy_flow_closes_gap", "The flow closes at least four fifths of the gap between the single Gaussian "
              "and the true density.", "toy_flow_gap_closed >= 0.8", unit="%"),
        Claim("digit_flow_beats_gaussian", "On dequantized MNIST, the flow's bits per dimension (with the "
              "dequantization correction) are at least 0.02 below those of one full-covariance Gaussian on the "
              "same logits.", "bpd_gaussian - bpd_flow >= 0.02", unit="bits"),
        Claim("digit_flow_short_of_independent_pixels", "At the cpu profile's budget, the same flow stays at least "
              "0.1 bits per dimension above (worse than) independent pixels, each a 256-sided die.",
              "bpd_flow - bpd_independent >= 0.1", profiles=("cpu",), unit="bits"),
        Claim("made_beats_independent_pixels", "On lab 5's binary test digits, MADE's exact log-likelihood beats "
              "independent pixels by at least 50 nats per digit.", "binary_ll_made - binary_ll_independent >= 50",
              unit="nats"),
        Claim("made_beats_vae_bound", "Trained by the same loop for the cpu profile's few epochs, MADE's exact "
              "log-likelihood of those digits is at least 5 nats per digit above the VAE's importance-weighted "
              "bound (not claimed for the full profile's longer training, which has not been measured).",
              "binary_made_minus_vae >= 5", profiles=("cpu",), unit="nats"),
    ),
    "10_few_labels": _claims(
        Claim("propagation_beats_scratch_at_10", "With 10 labelled digits, label propagation over the PCA graph "
              "(with class mass normalisation) beats the CNN trained from scratch on them by at least 30 points "
              "(mean of the label draws).", "mnist_acc_propagation_10 - mnist_acc_scratch_10 >= 0.3", unit="pts"),
        Claim("gap_shrinks_with_labels", "The lead of label propagation over training from scratch shrinks as the "
              "labels grow: with 1,000 labels it is at least 25 points smaller than with 10.",
              "(mnist_acc_propagation_10 - mnist_acc_scratch_10) - (mnist_acc_propagation_1000 - mnist_acc_scratch_1000)"
              " >= 0.25", unit="pts"),
        Claim("class_mass_normalisation_matters", "With 10 labels, class mass normalisation (eq. 10.7) beats the plain "
              "argmax of the same propagated scores by at least 10 points.",
              "mnist_acc_propagation_10 - mnist_acc_propagation_plain_10 >= 0.1", unit="pts"),
        Claim("autoencoder_beats_pixels", "A probe on the autoencoder's 32-number codes beats a probe on the 784 raw "
              "pixels by at least 2 points, with 10 and with 100 labels.",
              "min(mnist_acc_probe_ae_10 - mnist_acc_probe_pixels_10, mnist_acc_probe_ae_100 - mnist_acc_probe_pixels_100)"
              " >= 0.02", unit="pts"),
        Claim("standardised_pca_hurts_a_small_probe", "A probe on the 50 standardised PCA components falls at least 3 "
              "points below a probe on the raw pixels, with 10 and with 100 labels.",
              "min(mnist_acc_probe_pixels_10 - mnist_acc_probe_pca_10, mnist_acc_probe_pixels_100 - mnist_acc_probe_pca_100)"
              " >= 0.03", unit="pts"),
        Claim("pseudo_labels_help_at_10", "With 10 labels, three rounds of pseudo-labels add at least 2 points to the "
              "probe on the autoencoder's codes they start from.",
              "mnist_acc_pseudo_ae_10 - mnist_acc_probe_ae_10 >= 0.02", unit="pts"),
        Claim("simclr_beats_random_trunk", "On CIFAR-10, a probe on the briefly trained SimCLR trunk beats a probe on the "
              "same trunk with random weights by at least 5 points, with 100 and with 1,000 labels.",
              "min(cifar10_acc_probe_simclr_100 - cifar10_acc_probe_random_100, "
              "cifar10_acc_probe_simclr_1000 - cifar10_acc_probe_random_1000) >= 0.05", unit="pts"),
        Claim("cifar_propagation_beats_scratch", "On CIFAR-10, label propagation over the SimCLR graph beats the trunk "
              "trained from scratch with 10 and with 100 labels.",
              "min(cifar10_acc_propagation_10 - cifar10_acc_scratch_10, "
              "cifar10_acc_propagation_100 - cifar10_acc_scratch_100) > 0", unit="pts"),
    ),
}


# --------------------------------------------------------------------------- checking runs

@dataclass(frozen=True)
class Verdict:
    """A claim measured on one run (or not measured): the state, its mark and the value shown."""

    lab: str
    claim: Claim
    profile: str
    state: str
    value: str

    @property
    def mark(self) -> str:
        return MARKS[self.state]

    @property
    def broken(self) -> bool:
        """True when this verdict should stop a commit: a failure or an unannounced success."""
        return self.state in (FAILS, UNEXPECTED_PASS)


def judge(lab: str, claim: Claim, profile: str, metrics: dict | None) -> Verdict:
    """The verdict of ``claim`` on the ``metrics`` of a ``profile`` run (``None``: no such run)."""
    if metrics is None:
        return Verdict(lab, claim, profile, NOT_MEASURED, "no results file")
    holds, shown = measure(claim, metrics)
    if holds is None:
        return Verdict(lab, claim, profile, NOT_MEASURED, shown)
    expected_fail = bool(claim.expected_to_fail) and profile in claim.expected_to_fail_on
    if holds:
        state = UNEXPECTED_PASS if expected_fail else HOLDS
    else:
        state = EXPECTED_FAIL if expected_fail else FAILS
    return Verdict(lab, claim, profile, state, shown)


def _results_by_key(results_dir: str | Path) -> dict[tuple[str, str], dict]:
    from .bench import load_results

    return {(r["lab"], r["profile"]): r for r in load_results(results_dir)}


def check(results_dir: str | Path = "results", labs: Iterable[str] | None = None) -> list[Verdict]:
    """Every claim of every lab (or of ``labs``) on each profile it is made for, against ``results_dir``."""
    results = _results_by_key(results_dir)
    labs = list(CLAIMS) if labs is None else list(labs)
    unknown = [lab for lab in labs if lab not in CLAIMS]
    if unknown:
        raise KeyError(f"no claims for {unknown}: the labs with claims are {', '.join(CLAIMS)}")
    verdicts = []
    for lab in labs:
        for claim in CLAIMS[lab]:
            for profile in claim.profiles:
                run = results.get((lab, profile))
                verdicts.append(judge(lab, claim, profile, None if run is None else run.get("metrics", {})))
    return verdicts


def _state_text(v: Verdict) -> str:
    if v.state == EXPECTED_FAIL:
        return f"✗ expected: {v.claim.expected_to_fail}"
    if v.state == UNEXPECTED_PASS:
        return "✓ now holds: remove expected_to_fail from the claim"
    if v.state == FAILS:
        return "✗ FAILS"
    return f"{v.mark} {v.state}"


def table(verdicts: list[Verdict]) -> str:
    """A plain-text table for the terminal: lab, claim, profile, value, ✓/✗/–."""
    rows = [(v.lab, v.claim.id, v.profile, v.value, _state_text(v)) for v in verdicts]
    header = ("lab", "claim", "profile", "value", "")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header[:4], widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    return "\n".join(lines) + "\n"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(lab: str, results_dir: str | Path = "results", profiles: Iterable[str] = PROFILES) -> str:
    """A Markdown table of ``lab``'s claims: one row per claim, one column per profile (value and ✓/✗),
    and the reason of each claim that is known to fail. The book's pages show it."""
    profiles = tuple(profiles)
    results = _results_by_key(results_dir)
    header = ["claim", *[f"`{p}` profile" for p in profiles]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for claim in CLAIMS[lab]:
        cells = [claim.text]
        for profile in profiles:
            if profile not in claim.profiles:
                cells.append("not claimed")
                continue
            run = results.get((lab, profile))
            v = judge(lab, claim, profile, None if run is None else run.get("metrics", {}))
            cells.append("not measured" if v.state == NOT_MEASURED else f"{v.mark} {v.value}")
            if v.state == EXPECTED_FAIL:
                notes.append(f"{claim.text} Known to fail on `{profile}`: {claim.expected_to_fail}.")
            if v.state == UNEXPECTED_PASS:
                notes.append(f"{claim.text} Now holds on `{profile}`, although marked as failing.")
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- ✗ {n}" for n in notes) + "\n"
    return text


def verdict(lab: str, claim_id: str, profile: str = "cpu", results_dir: str | Path = "results") -> Verdict:
    """The verdict of one claim on one profile's committed result, for a sentence in the book.

    A page reads the verdict instead of typing it::

        v = claims.verdict("07_self_supervised", "simclr_beats_random")
        glue("simclr_verdict", "holds" if v.state == claims.HOLDS else "does not hold")
    """
    matches = [c for c in CLAIMS.get(lab, ()) if c.id == claim_id]
    if not matches:
        raise KeyError(f"lab {lab!r} has no claim {claim_id!r}; its claims are "
                       f"{[c.id for c in CLAIMS.get(lab, ())]}")
    run = _results_by_key(results_dir).get((lab, profile))
    return judge(lab, matches[0], profile, None if run is None else run.get("metrics", {}))


def holds(lab: str, claim_id: str, profile: str = "cpu", results_dir: str | Path = "results") -> bool:
    """True when the claim holds on the committed ``profile`` result (the expected or not)."""
    return verdict(lab, claim_id, profile, results_dir).state in (HOLDS, UNEXPECTED_PASS)


def show(lab: str, profile: str | None = None, metrics: dict | None = None):
    """In a lab: the lab's claims checked against this run's numbers (everything recorded with
    :func:`unsuplab.bench.record` in this kernel, or ``metrics``). Returns the Markdown table, and
    displays it in a notebook. In the ``smoke`` profile the numbers prove only that the code runs, so
    the claims are checked for information, not expected to hold."""
    from . import bench

    if lab not in CLAIMS:
        raise KeyError(f"no claims for {lab!r}: the labs with claims are {', '.join(CLAIMS)}")
    metrics = bench.recorded() if metrics is None else metrics
    checked_as = profile if profile in PROFILES else "cpu"
    lines = ["| claim | this run | |", "|---|---|---|"]
    for claim in CLAIMS[lab]:
        v = judge(lab, claim, checked_as, metrics)
        note = f"known: {claim.expected_to_fail}" if v.state == EXPECTED_FAIL else ""
        lines.append(f"| {_md(claim.text)} | {_md(v.value)} | {v.mark} {_md(note)} |")
    text = "\n".join(lines) + "\n"
    if profile not in PROFILES:
        text = (f"_This run used the `{profile}` profile, which only proves that the code runs: the claims "
                "are made for the `cpu` and `full` profiles._\n\n" + text)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:
        print(text, end="")
    return text


__all__ = ["Claim", "CLAIMS", "Verdict", "MissingMetric", "check", "judge", "measure", "markdown", "table", "verdict",
           "holds", "show", "compile_check", "HOLDS", "FAILS", "EXPECTED_FAIL", "UNEXPECTED_PASS",
           "NOT_MEASURED"]
