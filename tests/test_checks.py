"""Tests of unsuplab.checks: every message a student can see, on small tensors."""

import numpy as np
import pytest
import torch

from unsuplab.checks import CheckFailed, check_close, check_function, check_true


def centre(x):
    """The reference: subtract the column means."""
    return x - x.mean(0)


X = torch.arange(15.0).reshape(5, 3) ** 1.5
CASES = [(X,), (torch.ones(4, 2),)]


def test_success_prints_the_check_line(capsys):
    def my_centre(x):
        return x - x.mean(dim=0, keepdim=True)
    check_function(my_centre, centre, CASES)
    assert capsys.readouterr().out == "✓ my_centre matches the reference on 2 test cases.\n"
    check_function(my_centre, centre, [(X,)], name="centre (exercise 1)")
    assert capsys.readouterr().out == "✓ centre (exercise 1) matches the reference on 1 test case.\n"


def test_float64_result_is_accepted_and_cases_can_be_kwargs(capsys):
    check_function(lambda x: centre(x.double()), centre, [{"x": X}], name="centre")
    assert "✓ centre matches" in capsys.readouterr().out


def test_none_result_says_forgot_return():
    def my_centre(x):
        x - x.mean(0)
    with pytest.raises(CheckFailed, match=r"^✗ my_centre: the result is None — did you forget `return`\?"):
        check_function(my_centre, centre, CASES)


def test_transposed_shape():
    with pytest.raises(CheckFailed) as info:
        check_function(lambda x: centre(x).T, centre, CASES, name="centre")
    assert "expected shape (5, 3), got (3, 5) — did you transpose?" in str(info.value)
    assert "test case 1 of 2: x: tensor of shape (5, 3)" in str(info.value)


def test_wrong_dimension_shape():
    def col_means(x):
        return x.mean(0)
    with pytest.raises(CheckFailed, match=r"expected shape \(3,\), got \(5,\) — check which dimension"):
        check_function(lambda x: x.mean(1), col_means, [(X,)])
    with pytest.raises(CheckFailed, match=r"expected shape \(3,\), got \(1, 3\) — .*keepdim"):
        check_function(lambda x: x.mean(0, keepdim=True), col_means, [(X,)])


def test_wrong_values_give_largest_difference_and_where():
    def off_by_one_cell(x):
        y = centre(x)
        y[2, 1] += 0.31
        return y
    with pytest.raises(CheckFailed) as info:
        check_function(off_by_one_cell, centre, [(X,)], name="centre")
    expected = centre(X)[2, 1].item()
    message = str(info.value)
    assert message.startswith("✗ centre: the result: values differ: largest difference 0.31 at index (2, 1): ")
    assert f"expected {expected:.4f}, got {expected + 0.31:.4f}; the other 14 values match" in message

    def two_cells_off(x):
        y = centre(x)
        y[0, 0] += 1.0
        y[1, 2] -= 0.5
        return y
    with pytest.raises(CheckFailed, match=r"at index \(0, 0\): .*; of the other 14 values, 1 differs too and 13 match"):
        check_function(two_cells_off, centre, [(X,)])


def test_constant_factor_and_sign_are_named():
    with pytest.raises(CheckFailed, match=r"; the other 14 values differ too — every value is off by the same factor 2 "):
        check_function(lambda x: 2 * centre(x), centre, [(X,)])
    with pytest.raises(CheckFailed, match="wrong sign"):
        check_function(lambda x: -centre(x), centre, [(X,)])


def test_numpy_instead_of_tensor_and_back():
    with pytest.raises(CheckFailed, match=r"expected a torch\.Tensor, got numpy\.ndarray"):
        check_function(lambda x: centre(x).numpy(), centre, [(X,)])
    with pytest.raises(CheckFailed, match=r"expected a numpy\.ndarray, got torch\.Tensor — convert with"):
        check_function(lambda a: torch.as_tensor(a - a.mean(0)), lambda a: a - a.mean(0), [(np.ones((2, 2)),)])
    with pytest.raises(CheckFailed, match=r"expected a Python number, got torch\.Tensor .*\.item\(\)"):
        check_function(lambda x: x.sum(), lambda x: x.sum().item(), [(X,)])


def test_integer_result_where_float_expected():
    with pytest.raises(CheckFailed, match=r"expected float values, got integer \(dtype torch\.int64\)"):
        check_function(lambda x: x.long(), lambda x: x.float(), [(torch.ones(3),)])


def test_nan_in_output():
    def with_nan(x):
        y = centre(x)
        y[0, 0] = float("nan")
        return y
    with pytest.raises(CheckFailed, match=r"contains 1 NaN value\(s\) out of 15 — a log of 0"):
        check_function(with_nan, centre, [(X,)])


def test_in_place_change_of_input_is_caught_and_caller_data_safe():
    def in_place(x):
        x -= x.mean(0)
        return x
    original = X.clone()
    with pytest.raises(CheckFailed, match=r"your function changed its input x in place \(test case 1\)"):
        check_function(in_place, centre, [(X,)])
    assert torch.equal(X, original)  # the check worked on copies


def test_reference_that_changes_input_excuses_the_student(capsys):
    def ref(x):
        x.mul_(2)
        return x
    check_function(lambda x: x.mul_(2), ref, [(torch.ones(3),)], name="double")
    assert "✓ double" in capsys.readouterr().out


def test_not_implemented_is_explained_and_re_raised(capsys):
    def my_centre(x):
        raise NotImplementedError("TODO: subtract the mean")
    with pytest.raises(NotImplementedError, match="TODO: subtract the mean"):
        check_function(my_centre, centre, CASES)
    assert capsys.readouterr().out == (
        "✗ my_centre is not written yet: replace the `raise NotImplementedError` line in its cell with "
        "your code, run that cell, then this one.\n")

    def helper(x):
        raise NotImplementedError("TODO: write the helper")

    def uses_helper(x):
        return helper(x)
    with pytest.raises(NotImplementedError):
        check_function(uses_helper, centre, CASES)
    assert capsys.readouterr().out.startswith("✗ helper is not written yet (uses_helper calls it): ")


def test_other_exception_becomes_check_failed_naming_inputs():
    def broken(x, k):
        return x @ torch.ones(k)
    with pytest.raises(CheckFailed) as info:
        check_function(broken, lambda x, k: x.sum(1), [(X, 2)], name="broken")
    message = str(info.value)
    assert message.startswith("✗ broken: raised RuntimeError: ")
    assert "on test case 1 (x: tensor of shape (5, 3), k: 2)" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_tuple_outputs_name_the_element():
    def ref(x):
        return x.mean(0), x.std(0)
    with pytest.raises(CheckFailed, match=r"element 1 of the result: values differ"):
        check_function(lambda x: (x.mean(0), x.var(0)), ref, [(X,)])
    with pytest.raises(CheckFailed, match="expected 2 values, got 1"):
        check_function(lambda x: (x.mean(0),), ref, [(X,)])
    with pytest.raises(CheckFailed, match=r"expected a tuple of 2 values, got torch\.Tensor"):
        check_function(lambda x: x.mean(0), ref, [(X,)])


def test_python_scalars(capsys):
    check_function(lambda n: n * (n + 1) // 2, lambda n: sum(range(n + 1)), [(4,), (10,)], name="triangle")
    assert "✓ triangle matches the reference on 2 test cases." in capsys.readouterr().out
    with pytest.raises(CheckFailed, match=r"^✗ <lambda>: the result: values differ: largest difference 1: expected 0.5000, got 1.5000 \(tol"):
        check_function(lambda p: p + 1, lambda p: p, [(0.5,)])
    with pytest.raises(CheckFailed, match=r"expected integer values, got float"):
        check_function(lambda n: n / 2, lambda n: n // 2, [(4,)])


def test_seed_makes_random_functions_comparable(capsys):
    def reparam(mu, logvar):
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    state = torch.get_rng_state()
    check_function(reparam, reparam, [(torch.zeros(3), torch.zeros(3))], seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the notebook's random stream is untouched
    assert "✓ reparam" in capsys.readouterr().out


def test_check_close(capsys):
    check_close("mean of x", torch.tensor(0.52), 0.5, atol=0.05)
    assert capsys.readouterr().out == "✓ mean of x = 0.52 (expected 0.5 ± 0.05)\n"
    with pytest.raises(CheckFailed, match=r"^✗ mean of x = 0.21, expected 0.52 \(± 0.01\)\. did you centre\?$"):
        check_close("mean of x", 0.21, 0.52, atol=0.01, hint="did you centre?")
    with pytest.raises(CheckFailed, match=r"1 of 3 values are off; the worst at index \(2,\): expected 3, got 4"):
        check_close("v", np.array([1.0, 2.0, 4.0]), [1.0, 2.0, 3.0], atol=1e-3)
    with pytest.raises(CheckFailed, match="NaN or infinite"):
        check_close("loss", float("nan"), 1.0, atol=1)
    check_close("v", np.array([1.0, 2.0]), torch.tensor([1.0, 2.0]), atol=1e-6)
    assert "✓ v matches the expected values" in capsys.readouterr().out


def test_check_close_prints_no_digits_below_its_tolerance(capsys):
    # float noise differs between CPUs; a stored output of a passing check must not
    for noise in (1.788e-07, 2.384e-07, -1.2e-07):
        check_close("largest difference", noise, 0.0, atol=1e-5)
        assert capsys.readouterr().out == "✓ largest difference = 0 (expected 0 ± 1e-05)\n"
    check_close("mean", 0.50123, 0.5, atol=0.02)
    assert capsys.readouterr().out == "✓ mean = 0.501 (expected 0.5 ± 0.02)\n"
    check_close("v", np.array([1.0, 2.0 + 3e-7]), [1.0, 2.0], atol=1e-5)
    assert capsys.readouterr().out == "✓ v matches the expected values (largest difference 0)\n"


def test_check_true(capsys):
    check_true("weights are positive", torch.ones(3) > 0, "some weights are negative")
    assert capsys.readouterr().out == "✓ weights are positive\n"
    with pytest.raises(CheckFailed, match=r"^✗ loss went down: the loss rose from 1.0 to 2.0$"):
        check_true("loss went down", 2.0 < 1.0, "the loss rose from 1.0 to 2.0")


# --------------------------------------------------------------------------- a model's inputs in [0, 1]

def test_check_unit_interval_says_what_to_do():
    from unsuplab.checks import check_unit_interval

    check_unit_interval(torch.rand(4, 1, 28, 28), "images")  # good data passes silently
    check_unit_interval(torch.zeros(0, 3), "images")
    with pytest.raises(ValueError, match=r"got values in \[0, 255\]: did you forget to divide 8-bit images by 255"):
        check_unit_interval(torch.tensor([[0.0, 255.0]]), "images")
    with pytest.raises(ValueError, match=r"got dtype torch.uint8: divide uint8 images by 255 first"):
        check_unit_interval(torch.zeros(2, 2, dtype=torch.uint8), "images")
    with pytest.raises(ValueError, match=r"\[-1, 1\].*\(x \+ 1\) / 2"):
        check_unit_interval(torch.tensor([-1.0, 0.3, 1.0]), "images")
    with pytest.raises(ValueError, match=r"standardised.*Normalize"):
        check_unit_interval(torch.tensor([-2.5, 0.3, 3.0]), "images")
    with pytest.raises(ValueError, match="NaN"):
        check_unit_interval(torch.tensor([0.5, float("nan")]), "images")
    with pytest.raises(ValueError, match=r"in \[0, 1\] \(a Bernoulli likelihood\)"):
        check_unit_interval(torch.tensor([2.0]), "x", why="a Bernoulli likelihood")


def _models():
    from unsuplab.models import autoencoder, rbm, vae
    from unsuplab.models.mnist_classifier import MNISTClassifier

    return {
        "autoencoder": lambda x: autoencoder.autoencoder_loss(autoencoder.Autoencoder(784, (16,), 4), x),
        "autoencoder (reconstruction_loss)":
            lambda x: autoencoder.reconstruction_loss(autoencoder.Autoencoder(784, (16,), 4), x),
        "VAE": lambda x: vae.VAE((1, 28, 28), (16,), 2).loss(x),
        "VQ-VAE": lambda x: vae.VQVAE((1, 28, 28), channels=4, code_dim=2, n_codes=4).loss(x),
        "RBM": lambda x: rbm.RBM(784, 4).free_energy(x),
        "MNIST classifier": lambda x: MNISTClassifier(4, 6)(x),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_models_whose_loss_reads_pixels_as_probabilities_refuse_0_255_and_uint8(name):
    run = _models()[name]
    pixels = torch.randint(0, 256, (3, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    run(pixels.float() / 255)  # the right input works
    with pytest.raises(ValueError, match=r"got values in \[0, 255\]: did you forget to divide 8-bit images by 255"):
        run(pixels.float())
    if name != "RBM":  # an RBM takes 0/1 integers as they are
        with pytest.raises(ValueError, match="got dtype torch.uint8: divide uint8 images by 255 first"):
            run(pixels.to(torch.uint8))
