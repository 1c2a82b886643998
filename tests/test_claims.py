"""Tests of unsuplab.claims: the registry, the safe evaluator, and the committed results against it.

The test that matters most is ``test_committed_results_keep_every_claim``: re-measuring a lab in a way
that breaks its own lesson (or fixes a known failure without saying so) cannot land silently.
"""

import json
import shutil
from pathlib import Path

import pytest

from unsuplab import bench, claims

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
LABS = sorted(p.stem for p in (ROOT / "solutions").glob("*.ipynb"))


# --------------------------------------------------------------------------- the registry

def test_every_lab_declares_at_least_three_claims():
    assert len(LABS) == 13
    assert sorted(claims.CLAIMS) == LABS
    for lab in LABS:
        assert len(claims.CLAIMS[lab]) >= 3, lab


def test_a_claim_known_to_fail_says_why_and_every_claim_is_a_sentence():
    for lab, lab_claims in claims.CLAIMS.items():
        for claim in lab_claims:
            assert claim.text.endswith("."), (lab, claim.id)
            if claim.expected_to_fail:
                assert len(claim.expected_to_fail) > 20, (lab, claim.id)
                assert set(claim.expected_to_fail_on) <= set(claim.profiles), (lab, claim.id)


def test_cpu_claims_name_metrics_that_the_committed_cpu_runs_record():
    # a misspelt metric would leave a claim "not measured" forever
    for lab, lab_claims in claims.CLAIMS.items():
        path = RESULTS / f"{lab}-cpu.json"
        assert path.exists(), f"{lab} has no committed cpu result"
        metrics = json.loads(path.read_text())["metrics"]
        for claim in lab_claims:
            if "cpu" in claim.profiles:
                holds, shown = claims.measure(claim, metrics)
                assert holds is not None, (lab, claim.id, shown)


# --------------------------------------------------------------------------- the committed results

def test_committed_results_keep_every_claim():
    broken = [f"{v.lab}/{v.claim.id} on {v.profile}: {v.state}, {v.value}"
              for v in claims.check(RESULTS) if v.broken]
    assert not broken, ("committed results break claims (fix the run, or mark the claim "
                        "expected_to_fail with the reason):\n" + "\n".join(broken))


def _doctored_copy(tmp_path, lab, profile, **metrics):
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy, ignore=shutil.ignore_patterns("benchmarks"))
    path = copy / f"{lab}-{profile}.json"
    data = json.loads(path.read_text())
    data["metrics"].update(metrics)
    path.write_text(json.dumps(data))
    return copy


def test_a_result_that_breaks_a_cpu_claim_is_caught(tmp_path, capsys):
    random_acc = json.loads((RESULTS / "07_self_supervised-cpu.json").read_text())["metrics"]["linear_acc_random"]
    copy = _doctored_copy(tmp_path, "07_self_supervised", "cpu", linear_acc_simclr=random_acc + 0.01)
    verdicts = {(v.lab, v.claim.id, v.profile): v for v in claims.check(copy)}
    v = verdicts[("07_self_supervised", "simclr_beats_random", "cpu")]
    assert v.state == claims.FAILS and v.broken and "+1.0 pts" in v.value
    assert bench.main(["claims", "--results-dir", str(copy)]) == 1
    captured = capsys.readouterr()
    assert "07_self_supervised / simclr_beats_random on cpu fails" in captured.err
    assert "✗ FAILS" in captured.out
    # and the unchanged results pass the same command
    assert bench.main(["claims", "--results-dir", str(RESULTS)]) == 0


def test_a_known_failure_that_starts_to_hold_must_be_unmarked(tmp_path):
    copy = _doctored_copy(tmp_path, "06_gan", "cpu", infogan_code_digit_acc=0.9)
    v = claims.verdict("06_gan", "infogan_goal", "cpu", results_dir=copy)
    assert v.state == claims.UNEXPECTED_PASS and v.broken
    assert claims.verdict("06_gan", "infogan_goal", "cpu", results_dir=RESULTS).state == claims.EXPECTED_FAIL


def test_a_missing_results_file_or_metric_is_not_measured(tmp_path):
    copy = _doctored_copy(tmp_path, "01_baselines", "cpu")
    (copy / "01_baselines-cpu.json").unlink()
    v = claims.verdict("01_baselines", "pca_compresses", "cpu", results_dir=copy)
    assert v.state == claims.NOT_MEASURED and not v.broken
    claim = claims.CLAIMS["01_baselines"][0]
    assert claims.measure(claim, {}) == (None, "pca_components_for_90pct not recorded")


# --------------------------------------------------------------------------- the evaluator

@pytest.mark.parametrize("check", [
    "__import__('os').system('true')", "x.__class__", "(lambda: 1)()", "[a for a in b]",
    "open('f')", "min(a, key=b)", "a if b else c",
])
def test_checks_cannot_run_code(check):
    with pytest.raises(ValueError, match="claim check"):
        claims.compile_check(check)


def test_the_check_language_on_exact_cases():
    def holds(check, **metrics):
        return claims.measure(claims.Claim("t", "A test.", check), metrics)

    assert holds("a - b >= 0.15", a=0.6, b=0.4, ) == (True, "0.2 (needs ≥ 0.15)")
    assert holds("a - b >= 0.15", a=0.5, b=0.4)[0] is False
    assert holds("min(x[0], x[-1]) > 1 and name == 'queen'", x=[2, 5, 3], name="queen") == (True, "true")
    assert holds("not flag or abs(a) <= 1", flag=True, a=-0.5)[0] is True
    assert holds("len(x) == 3 and all(x)", x=[1, 1, 1])[0] is True
    shown = claims.measure(claims.Claim("t", "A test.", "a - b >= 0.04", unit="pts"), {"a": 0.5, "b": 0.41})[1]
    assert shown == "+9.0 pts (needs ≥ +4.0 pts)"
    with pytest.raises(ValueError, match="cannot be evaluated"):
        holds("x[5] > 0", x=[1])


def test_a_claim_with_a_bad_profile_or_check_fails_at_definition():
    with pytest.raises(ValueError, match="profiles"):
        claims.Claim("t", "A test.", "a > 0", profiles=("gpu",))
    with pytest.raises(ValueError, match="not a valid expression"):
        claims.Claim("t", "A test.", "a >")


# --------------------------------------------------------------------------- what the book and labs show

def test_markdown_table_has_a_row_per_claim_and_the_reasons_of_known_failures():
    text = claims.markdown("07_self_supervised", RESULTS)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "claim |" not in line]
    assert len(rows) == len(claims.CLAIMS["07_self_supervised"])
    m = json.loads((RESULTS / "07_self_supervised-cpu.json").read_text())["metrics"]
    lead = min(m["linear_acc_simclr"] - m["linear_acc_random"], m["knn_acc_simclr"] - m["knn_acc_random"])
    assert f"✓ {100 * lead:+.1f} pts" in text  # SimCLR against the random trunk, from the committed cpu result
    assert "Known to fail" not in text  # every claim of lab 7 holds on the committed cpu result
    assert "Known to fail on `cpu`: issue 18" in claims.markdown("06_gan", RESULTS)  # the reason is shown


def test_show_checks_this_kernels_recorded_metrics(capsys):
    bench.record(mlm_acc=0.2, unigram_acc=0.05, mlm_ppl=100.0, unigram_ppl=500.0)
    text = claims.show("08_bert", profile="cpu")
    assert "| +15.0 pts (needs ≥ +5.0 pts) | ✓" in text
    assert "finetune_acc_pretrained not recorded | –" in text
    smoke = claims.show("08_bert", profile="smoke")
    assert "only proves that the code runs" in smoke
    with pytest.raises(KeyError, match="no claims"):
        claims.show("99_nothing")
