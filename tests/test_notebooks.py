"""Every solution runs end to end in the smoke profile; every lab stops at its first exercise stub;
the labs are up to date; nbval checks the committed outputs that must not drift."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from unsuplab import bench, labs

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
LABS = sorted((ROOT / "labs").glob("*.ipynb"))
COURSE_ORDER = ["01_baselines", "02_sparse_coding", "03_rbm_dbn", "04_autoencoders", "05_vae", "06_gan",
                "07_self_supervised", "07_pretext_tasks", "08_word2vec", "08_bert", "09_unsupervised_translation",
                "10_energy_based_models", "10_few_labels"]

# What a smoke run of each solution must at least record (smoke sizes are small, so the bars are low
# but still fail on a broken pipeline: chance is 10% for MNIST's ten classes).
SMOKE_EXPECTATIONS = {
    "01_baselines": {"knn_acc_raw": 0.80, "linear_acc_raw": 0.75, "knn_acc_pca50": 0.80, "linear_acc_kmeans": 0.70,
                     "kmeans10_cluster_accuracy": 0.35, "kmeans10_nmi": 0.25},
    # random Gaussian atoms have a coherence near 0.2; the noisy and holed images score about 20 and 5 dB
    "02_sparse_coding": {"atom_coherence": 0.45, "psnr_denoised": 25.0, "psnr_inpainted": 26.0,
                         "linear_acc_codes": 0.70, "knn_acc_codes": 0.60},
    # log-likelihoods in nats per digit: an untrained VAE scores about -543 (784 log 1/2), a smoke run about
    # -215; the importance-weighted estimate must lie above the ELBO of the same digits (gap >= 0).
    "05_vae": {"test_log_px_iw": -320.0, "test_elbo_iw_digits": -330.0, "iw_gap": 0.0},
    # smoke trains each GAN for a few steps only: the bars check the pipeline, not the samples; the VAE row
    # must be recorded and be a number (a NaN fails >= 0)
    "06_gan": {"feature_net_test_acc": 0.20, "toy_grad_ratio_ns_over_sat": 10.0,
               "fd_vae": 0.0, "vae_class_entropy": 0.0},
    # smoke trains for a few dozen updates: the RBMs stay near the independent-pixel model (about -202
    # nats), so the floors catch a broken AIS or free energy (NaN, or hundreds of nats off), not learning.
    "03_rbm_dbn": {"rbm_pcd_test_logprob": -230.0, "rbm_cd1_test_logprob": -230.0, "dbn_test_acc": 0.25,
                   "mlp_test_acc": 0.2, "digits_acc_raw": 0.6, "digits_acc_rbm_unsuplab": 0.3,
                   "digits_acc_rbm_sklearn": 0.3},
    # BERT in smoke: 12 steps of a tiny model, so the MLM accuracy is about the unigram one (7%) and the
    # fine-tuned models are at chance (17%); TF-IDF and the probe show that the data and labels are sound.
    "08_bert": {"unigram_acc": 0.03, "mlm_acc": 0.03, "nsp_acc": 0.3, "tfidf_acc": 0.4, "probe_acc_pretrained": 0.25},
    # one epoch on 1,000 digits: the codes must carry some class information (chance is 10%)
    "04_autoencoders": {"knn_acc_pca": 0.6, "linear_acc_pca": 0.55, "knn_acc_ae": 0.2, "linear_acc_ae": 0.25,
                        "cluster_acc_kmeans_pixels": 0.3, "cluster_acc_dec": 0.2},
    # CIFAR-10 (JPEG copy offline), 320 training images, 3 steps per method: only the baselines and the
    # shortcut are above chance for sure (smoke run: raw k-NN 0.20, random linear 0.30, shortcut 0.91).
    "07_self_supervised": {"knn_acc_raw": 0.14, "linear_acc_random": 0.18, "knn_acc_random": 0.14,
                           "linear_acc_simclr": 0.14, "linear_acc_supervised": 0.14,
                           "shortcut_acc_touching": 0.6, "dc_clusters_used_fixed": 1.0},
    # 100,000 words, one pass: too little for analogies, but the loss must fall (by about 0.6) and the
    # evaluation sets must find their words (coverage about 4% of the analogies, 34% of WordSim-353).
    # Section 11 trains the four variants on the same 100,000 words: the Huffman tree's mean path (9.0 nodes
    # in a smoke run) must be recorded, and CBOW's pass must take time (a broken loop takes none).
    "08_word2vec": {"corpus_words": 100_000, "vocab_size": 2_000, "loss_drop": 0.2, "analogy_coverage": 0.02,
                    "wordsim353_coverage": 0.2, "hs_mean_code_length": 4.0, "variants_vocab_size": 2_000,
                    "cbow_hs_train_seconds": 0.0},
    # chapter 9: refinement from 50 known pairs and the similarity start both recover a hidden rotation (100 %
    # even in smoke; a broken Procrustes, CSLS or signature gives ~0 %); word-by-word translation of 10 test
    # sentences with MUSE's dictionary scores BLEU about 4 (en->fr) and 5 (fr->en), 0 when the dictionary or
    # the vocabulary is broken (the smoke run's unsupervised dictionary is too poor to test anything).
    "09_unsupervised_translation": {"hidden_rotation_p1_seed50": 0.9, "hidden_rotation_p1_similarity_start": 0.9,
                                    "muse_wbw_bleu_en_fr": 1.5, "muse_wbw_bleu_fr_en": 1.5},
    # ten updates of a tiny CNN do not make digits: the bars check the pipeline (a broken grid log Z or
    # Fréchet distance gives NaN or nonsense). Held-out log-likelihoods in a smoke run: the true density
    # -2.13 nats per point, a single Gaussian -4.00, the EBM after 100 updates -3.95. Section 6 in smoke: the
    # flow after 50 steps -3.99, its density sums to 0.95 over the grid (a wrong log-determinant does not sum
    # to 1); on binary digits independent pixels -202 nats, MADE and the VAE after 16 steps about -290 and -280
    # (an untrained model: -543); bits per dimension are positive (NaN fails), 1.7 to 3.1.
    "10_energy_based_models": {"toy_ll_true": -2.3, "toy_ll_gaussian": -4.2, "toy_ll_ebm": -6.0, "fd_floor": 0.0,
                               "fd_noise": 0.0, "toy_ll_flow": -6.0, "toy_flow_mass_on_grid": 0.9,
                               "binary_ll_independent": -230.0, "binary_ll_made": -545.0, "binary_ll_vae_iw": -545.0,
                               "bpd_independent": 0.0, "bpd_gaussian": 0.0, "bpd_flow": 0.0},
    # 2,000 digits and a few dozen steps: a smoke run's pixel probe reaches 66% with 100 labels, label propagation
    # 68% with 10 and 84% with 100, the CNN 37% with 100; on 512 CIFAR-10 images the random trunk's probe
    # reaches 19% with 100 labels (chance is 10%). A broken graph, probe or training loop falls to chance.
    "10_few_labels": {"mnist_acc_probe_pixels_100": 0.5, "mnist_acc_propagation_10": 0.4,
                      "mnist_acc_propagation_100": 0.6, "mnist_acc_scratch_100": 0.2,
                      "cifar10_acc_probe_random_100": 0.12},
}

pytestmark = pytest.mark.notebook


def test_there_are_notebooks_in_course_order():
    stems = [p.stem for p in SOLUTIONS]
    assert stems, "no solution notebooks found"
    assert all(s in COURSE_ORDER for s in stems), f"unexpected notebook names {stems}; expected {COURSE_ORDER}"
    assert [p.stem for p in LABS] == stems


def test_labs_are_generated_from_solutions():
    problems = labs.check(ROOT)
    assert problems == [], "\n".join(problems) + "\nrun `python -m unsuplab.labs build`"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_runs_in_smoke_profile(solution, tmp_path):
    result = bench.run(solution, "smoke", results_dir=tmp_path, output_notebook=tmp_path / solution.name)
    assert result["profile"] == "smoke" and result["wall_seconds"] > 0
    written = json.loads((tmp_path / f"{solution.stem}-smoke.json").read_text())
    assert written["metrics"] == result["metrics"]
    for name, floor in SMOKE_EXPECTATIONS.get(solution.stem, {}).items():
        assert name in result["metrics"], f"{solution.stem} did not record {name}"
        assert result["metrics"][name] >= floor, f"{solution.stem}: {name} = {result['metrics'][name]} < {floor}"
    # every self-check in the solution passed
    executed = nbformat.read(tmp_path / solution.name, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "✗" not in text
    assert text.count("✓") >= 1
    # figures are part of the lesson: a kernel that shows none (e.g. under MPLBACKEND=Agg) is a failure
    images = sum("image/png" in o.get("data", {}) for c in executed.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
    assert images >= 3, f"{solution.stem} showed only {images} figures in its smoke run"


def first_stub_message(lab_path):
    nb = nbformat.read(lab_path, as_version=4)
    for cell in nb.cells:
        m = re.search(r'raise NotImplementedError\("(.*)"\)', cell.source) if cell.cell_type == "code" else None
        if m:
            return m.group(1)
    return None


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.stem)
def test_lab_stops_at_its_first_stub(lab, tmp_path):
    stub = first_stub_message(lab)
    assert stub and stub.startswith("TODO"), f"{lab.name} has no exercise stub"
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(lab), str(tmp_path / lab.name), parameters={"profile": "smoke"},
                                   cwd=str(lab.parent), progress_bar=False, kernel_name="python3")
    assert err.value.ename == "NotImplementedError", f"{lab.name} failed with {err.value.ename}: {err.value.evalue}"
    assert err.value.evalue == stub


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_committed_outputs_do_not_drift(solution):
    nb = nbformat.read(solution, as_version=4)
    checked = [c for c in nb.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked, f"{solution.name} marks no cell with # NBVAL_CHECK_OUTPUT"
    assert all(c.outputs for c in checked), (
        f"{solution.name} has checked cells without stored outputs: run "
        f"`python -m unsuplab.bench run {solution.relative_to(ROOT)} --profile full --save-outputs`")
    env = {**os.environ, "UNSUPLAB_PROFILE": "smoke", "UNSUPLAB_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
                           str(solution)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
