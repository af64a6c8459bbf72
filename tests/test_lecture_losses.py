"""The lecture's losses (seed 002) and the L2 example of seed 000, reproducing the worked tables.

Numbers reproduced (see also the report of this work):

* residuals (−10, −5, 0, 5, 10):  MAE = 6, RMSE = 7.0711, mean Huber δ=1: 5.6, δ=10: 25
* residuals (−10, −5, 0, 5, 100): MAE = 24, RMSE = 45.056, mean Huber δ=1: 23.6, δ=10: 205
* cross-entropy in bits, summed over the 4 samples: model 1 = 6.9658 (slide: 6.966, right),
  model 2 = 2.7255 (slide: 2.310, wrong — 2.3104 is what one gets by taking data 4's
  probability of the *predicted* class, 0.4, instead of its target class "other", 0.3)
* entropies in bits: (0.4, 0.6) → 0.9710, (0.99, 0.01) → 0.0808, (.1,.15,.5,.15,.1) → 1.9855,
  (.01,.09,.8,.09,.01) → 1.0157, uniform over 5 → 2.3219; self-information −log₂0.4 = 1.3219,
  −log₂0.99 = 0.0145.
"""

import math

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from references import py_cross_entropy_bits, py_entropy_bits, py_huber, py_mae, py_rmse
from tripletlab.functional import (
    cosine_loss,
    cross_entropy,
    distance,
    entropy,
    focal_loss,
    huber_loss,
    information,
    mae_loss,
    mse_loss,
    rmse_loss,
)

RESIDUALS = [-10.0, -5.0, 0.0, 5.0, 10.0]
RESIDUALS_OUTLIER = [-10.0, -5.0, 0.0, 5.0, 100.0]


def residual_tensors(residuals):
    pred = torch.tensor(residuals, dtype=torch.float64)
    return pred, torch.zeros_like(pred)


# ----------------------------------------------------------------- regression tables


@pytest.mark.parametrize(
    ("residuals", "mae", "rmse", "huber1", "huber10", "per_row_huber1", "per_row_huber10"),
    [
        (RESIDUALS, 6.0, 7.07, 5.6, 25.0, [9.5, 4.5, 0, 4.5, 9.5], [50, 12.5, 0, 12.5, 50]),
        (
            RESIDUALS_OUTLIER,
            24.0,
            45.06,
            23.6,
            205.0,
            [9.5, 4.5, 0, 4.5, 99.5],
            [50, 12.5, 0, 12.5, 950],
        ),
    ],
)
def test_lecture_regression_tables(
    residuals, mae, rmse, huber1, huber10, per_row_huber1, per_row_huber10
):
    pred, target = residual_tensors(residuals)
    # the slides' printed numbers (RMSE printed to 2 decimals) ...
    assert mae_loss(pred, target).item() == pytest.approx(mae)
    assert rmse_loss(pred, target).item() == pytest.approx(rmse, abs=5e-3)
    assert huber_loss(pred, target, delta=1.0).item() == pytest.approx(huber1)
    assert huber_loss(pred, target, delta=10.0).item() == pytest.approx(huber10)
    torch.testing.assert_close(
        huber_loss(pred, target, delta=1.0, reduction="none"),
        torch.tensor(per_row_huber1, dtype=torch.float64),
    )
    torch.testing.assert_close(
        huber_loss(pred, target, delta=10.0, reduction="none"),
        torch.tensor(per_row_huber10, dtype=torch.float64),
    )
    # ... and the exact values of the plain-Python reference
    assert rmse_loss(pred, target).item() == pytest.approx(py_rmse(residuals), rel=1e-12)
    assert mae_loss(pred, target).item() == pytest.approx(py_mae(residuals), rel=1e-12)
    assert mse_loss(pred, target, reduction="sum").item() == pytest.approx(
        sum(r * r for r in residuals)
    )
    for delta in (1.0, 10.0):
        want = sum(py_huber(r, delta) for r in residuals) / len(residuals)
        assert huber_loss(pred, target, delta=delta).item() == pytest.approx(want, rel=1e-12)


def test_rmse_exact_values():
    assert rmse_loss(*residual_tensors(RESIDUALS)).item() == pytest.approx(math.sqrt(50))  # 7.0711
    assert rmse_loss(*residual_tensors(RESIDUALS_OUTLIER)).item() == pytest.approx(
        math.sqrt(2030)
    )  # 45.056


def test_residuals_cancel_without_square_or_absolute_value():
    # "Why square or absolute?": targets (0, 1), predictions (100, −99) → residuals −100, +100
    pred, target = torch.tensor([100.0, -99.0]), torch.tensor([0.0, 1.0])
    assert float((target - pred).sum()) == 0.0
    assert mae_loss(pred, target).item() == 100.0 and mse_loss(pred, target).item() == 10000.0


def test_gradient_descent_table_mse_converges_mae_oscillates():
    # Lecture: x⁰ = 2, r = 0.3; f = x² shrinks by 0.4 per step, f = |x| ends up bouncing
    # between −0.1 and 0.2 (MAE's gradient has the same size however close to the optimum).
    trajectories = {}
    for name, loss_fn in (("mse", mse_loss), ("mae", mae_loss)):
        x = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
        path = []
        for _ in range(20):
            loss = loss_fn(x, torch.zeros(1, dtype=torch.float64))
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x -= 0.3 * grad
            path.append(x.item())
        trajectories[name] = path
    assert trajectories["mse"][:4] == pytest.approx([0.8, 0.32, 0.128, 0.0512])
    assert trajectories["mse"][-1] == pytest.approx(2 * 0.4**20)
    assert trajectories["mae"][:7] == pytest.approx([1.7, 1.4, 1.1, 0.8, 0.5, 0.2, -0.1])
    assert trajectories["mae"][7:] == pytest.approx([0.2, -0.1] * 6 + [0.2])


def test_huber_agrees_with_torch_and_interpolates_mse_and_mae():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(100, generator=g) * 5, torch.randn(100, generator=g)
    for delta in (0.5, 1.0, 3.0):
        torch.testing.assert_close(
            huber_loss(pred, target, delta), TF.huber_loss(pred, target, delta=delta)
        )
    torch.testing.assert_close(huber_loss(pred, target, delta=1e6), 0.5 * mse_loss(pred, target))
    small = 1e-3
    torch.testing.assert_close(
        huber_loss(pred, target, delta=small) / small,
        mae_loss(pred, target) - small / 2,
        rtol=1e-4,
        atol=1e-3,
    )
    torch.testing.assert_close(mse_loss(pred, target), TF.mse_loss(pred, target))
    torch.testing.assert_close(mae_loss(pred, target), TF.l1_loss(pred, target))


def test_rmse_gradient_is_zero_not_nan_at_a_perfect_fit():
    pred = torch.ones(4, requires_grad=True)
    rmse_loss(pred, torch.ones(4)).backward()
    assert bool((pred.grad == 0).all())


# ----------------------------------------------------------------- seed 000's L2 example


def test_seed_000_l2_example():
    p = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    q = torch.tensor([[1.1, 2.0, 3.3]], dtype=torch.float64)
    assert distance(p, q, "euclidean").item() == pytest.approx(0.3162277660, abs=1e-10)
    assert distance(p, q, "sqeuclidean").item() == pytest.approx(0.10)  # "L2-norm loss"
    assert mse_loss(p, q).item() == pytest.approx(0.10 / 3)  # MSE divides by N = 3


# ----------------------------------------------------------------- cross-entropy


MODEL_1 = [[0.4, 0.3, 0.3], [0.3, 0.4, 0.3], [0.5, 0.2, 0.3], [0.8, 0.1, 0.1]]
MODEL_2 = [[0.7, 0.1, 0.2], [0.1, 0.8, 0.1], [0.9, 0.1, 0.0], [0.4, 0.3, 0.3]]
TARGETS = [0, 1, 0, 2]  # male, female, male, other


@pytest.mark.parametrize(
    ("probabilities", "want_total", "printed_total", "printed_is_right"),
    [(MODEL_1, 6.9658, 6.966, True), (MODEL_2, 2.7255, 2.310, False)],
)
def test_lecture_cross_entropy_in_bits(probabilities, want_total, printed_total, printed_is_right):
    probs = torch.tensor(probabilities, dtype=torch.float64)
    target = torch.tensor(TARGETS)
    total = cross_entropy(probs, target, base=2, reduction="sum").item()
    assert total == pytest.approx(sum(py_cross_entropy_bits(probabilities, TARGETS)), rel=1e-12)
    assert total == pytest.approx(want_total, abs=5e-5)
    assert (abs(total - printed_total) < 1e-3) == printed_is_right
    # one-hot targets give the same numbers as class indices
    one_hot = TF.one_hot(target, 3).double()
    assert cross_entropy(probs, one_hot, base=2, reduction="sum").item() == pytest.approx(total)
    # both models make the same single mistake: error rate 1/4
    assert (probs.argmax(1) != target).double().mean().item() == 0.25


def test_the_slides_model_2_total_used_the_predicted_class_for_data_4():
    wrong = -math.log2(0.7) - math.log2(0.8) - math.log2(0.9) - math.log2(0.4)
    assert round(wrong, 3) == pytest.approx(2.310, abs=1e-3)


def test_lecture_per_sample_cross_entropy():
    probs = torch.tensor(MODEL_1, dtype=torch.float64)
    per_sample = cross_entropy(probs, torch.tensor(TARGETS), base=2, reduction="none")
    assert per_sample[0].item() == pytest.approx(1.3219, abs=1e-4)  # data 1: −log₂0.4
    assert per_sample[3].item() == pytest.approx(3.3219, abs=1e-4)  # data 4: −log₂0.1


def test_cross_entropy_from_logits_agrees_with_torch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 5, (16,), generator=g)
    torch.testing.assert_close(
        cross_entropy(logits, target, from_logits=True), TF.cross_entropy(logits, target)
    )
    soft = torch.softmax(torch.randn(16, 5, generator=g, dtype=torch.float64), 1)
    torch.testing.assert_close(
        cross_entropy(logits, soft, from_logits=True), TF.cross_entropy(logits, soft)
    )
    torch.testing.assert_close(
        cross_entropy(logits, target, from_logits=True, base=2),
        TF.cross_entropy(logits, target) / math.log(2),
    )
    torch.testing.assert_close(
        cross_entropy(torch.softmax(logits, 1), target), TF.cross_entropy(logits, target)
    )


def test_cross_entropy_of_a_certain_mistake_is_finite():
    probs = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = cross_entropy(probs, torch.tensor([1]))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 80 and bool(torch.isfinite(probs.grad).all())


# ----------------------------------------------------------------- entropy


@pytest.mark.parametrize(
    ("p", "want"),
    [
        ([0.4, 0.6], 0.971),
        ([0.99, 0.01], 0.081),
        ([0.1, 0.15, 0.5, 0.15, 0.1], 1.985),
        ([0.01, 0.09, 0.8, 0.09, 0.01], 1.016),
        ([0.2] * 5, 2.322),
        ([0.5, 0.5], 1.0),
        ([1.0, 0.0], 0.0),
    ],
)
def test_lecture_entropies_in_bits(p, want):
    got = entropy(torch.tensor(p, dtype=torch.float64)).item()
    assert got == pytest.approx(want, abs=5e-4)
    assert got == pytest.approx(py_entropy_bits(p), abs=1e-12)


def test_lecture_information_and_entropy_maximum():
    assert information(torch.tensor(0.4, dtype=torch.float64)).item() == pytest.approx(
        1.322, abs=5e-4
    )
    assert information(torch.tensor(0.99, dtype=torch.float64)).item() == pytest.approx(
        0.0145, abs=5e-5
    )
    p = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    h = entropy(torch.stack([p, 1 - p], dim=1))
    assert p[h.argmax()].item() == pytest.approx(0.5)  # "p = 0.5 has the largest entropy"
    assert entropy(torch.tensor([0.5, 0.5]), base=math.e).item() == pytest.approx(math.log(2))


# ----------------------------------------------------------------- focal loss


def test_focal_loss_by_hand():
    p = torch.tensor([0.9, 0.1, 0.9, 0.1], dtype=torch.float64)
    y = torch.tensor([1, 1, 0, 0])
    got = focal_loss(p, y, gamma=2.0, alpha=0.25, reduction="none")
    p_t = torch.tensor([0.9, 0.1, 0.1, 0.9], dtype=torch.float64)
    alpha_t = torch.tensor([0.25, 0.25, 0.75, 0.75], dtype=torch.float64)
    torch.testing.assert_close(got, -alpha_t * (1 - p_t) ** 2 * torch.log(p_t))


def test_focal_loss_special_cases():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(50, generator=g, dtype=torch.float64) * 3
    y = (torch.rand(50, generator=g) < 0.3).long()
    bce = TF.binary_cross_entropy_with_logits(logits, y.double(), reduction="none")
    # γ = 0 and no α: binary cross-entropy, from logits or from probabilities
    torch.testing.assert_close(
        focal_loss(logits, y, gamma=0, alpha=None, from_logits=True, reduction="none"), bce
    )
    torch.testing.assert_close(
        focal_loss(torch.sigmoid(logits), y, gamma=0, alpha=None, reduction="none"), bce
    )
    # the modulating factor only ever lowers the loss, most for well-classified examples
    fl = focal_loss(logits, y, gamma=2.0, alpha=None, from_logits=True, reduction="none")
    assert bool((fl <= bce + 1e-15).all())
    p_t = torch.where(y.bool(), torch.sigmoid(logits), 1 - torch.sigmoid(logits))
    torch.testing.assert_close(fl, (1 - p_t) ** 2 * bce)


def test_focal_loss_gradient_is_finite_for_extreme_logits():
    logits = torch.tensor([-80.0, 80.0], requires_grad=True)
    loss = focal_loss(logits, torch.tensor([1, 0]), from_logits=True)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(logits.grad).all())


# ----------------------------------------------------------------- cosine loss


def test_cosine_loss_values_and_torch_agreement():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(
        cosine_loss(x, y, reduction="none"), torch.tensor([0.0, 1.0, 2.0, 1.0])
    )
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(20, 6, generator=g), torch.randn(20, 6, generator=g)
    torch.testing.assert_close(
        cosine_loss(a, b), TF.cosine_embedding_loss(a, b, torch.ones(20)), rtol=1e-5, atol=1e-6
    )


# ----------------------------------------------------------------- properties and bad input


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 20),
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6]),
    delta=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**16),
)
def test_regression_losses_are_nonnegative_and_ordered(n, scale, delta, seed):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, generator=g, dtype=torch.float64) * scale
    target = torch.randn(n, generator=g, dtype=torch.float64) * scale
    mae, mse, rmse = mae_loss(pred, target), mse_loss(pred, target), rmse_loss(pred, target)
    huber = huber_loss(pred, target, delta=delta)
    assert min(mae.item(), mse.item(), rmse.item(), huber.item()) >= 0
    assert rmse.item() >= mae.item() * (1 - 1e-12)  # RMSE ≥ MAE (power-mean inequality)
    assert huber.item() <= 0.5 * mse.item() * (1 + 1e-12)  # Huber ≤ ½r² everywhere
    assert huber.item() <= delta * mae.item() * (1 + 1e-12)  # and ≤ δ|r|
    perm = torch.randperm(n, generator=g)
    assert huber_loss(pred[perm], target[perm], delta=delta).item() == pytest.approx(huber.item())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: mse_loss(torch.zeros(3), torch.zeros(4)),
            ValueError,
            "target must have the shape of pred",
        ),
        (
            lambda: mae_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3)),
            TypeError,
            "pred must be a floating",
        ),
        (
            lambda: huber_loss(torch.zeros(3), torch.zeros(3), delta=0),
            ValueError,
            "delta must be > 0",
        ),
        (
            lambda: huber_loss(torch.zeros(3), torch.zeros(3), reduction="mean_active"),
            ValueError,
            "reduction",
        ),
        (
            lambda: cross_entropy(torch.ones(2, 3), torch.tensor([0, 1])),
            ValueError,
            "input must hold probabilities",
        ),
        (
            lambda: cross_entropy(torch.full((2, 3), 1 / 3), torch.tensor([0, 3])),
            ValueError,
            "target class indices",
        ),
        (lambda: cross_entropy(torch.full((2, 3), 1 / 3), torch.tensor([0])), ValueError, "target"),
        (
            lambda: cross_entropy(torch.full((3,), 1 / 3), torch.tensor([0])),
            ValueError,
            "input must have 2 dimensions",
        ),
        (
            lambda: cross_entropy(torch.full((2, 3), 1 / 3), torch.tensor([0, 1]), base=1),
            ValueError,
            "base",
        ),
        (
            lambda: focal_loss(torch.rand(3), torch.tensor([0, 1, 2])),
            ValueError,
            "target must contain only 0/1",
        ),
        (lambda: focal_loss(torch.rand(3), torch.tensor([0, 1, 1]), gamma=-1), ValueError, "gamma"),
        (
            lambda: focal_loss(torch.rand(3), torch.tensor([0, 1, 1]), alpha=1.5),
            ValueError,
            "alpha",
        ),
        (lambda: entropy(torch.tensor([0.5, float("nan")])), ValueError, "p contains NaN"),
        (
            lambda: cosine_loss(torch.zeros(2, 3), torch.zeros(3, 3)),
            ValueError,
            "y must have the shape of x",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_regression_losses_return_the_input_dtype(dtype):
    pred, target = residual_tensors(RESIDUALS_OUTLIER)
    for fn, want in ((mae_loss, 24.0), (rmse_loss, math.sqrt(2030)), (huber_loss, 23.6)):
        got = fn(pred.to(dtype), target.to(dtype))
        assert got.dtype == dtype
        assert got.item() == pytest.approx(want, rel=1e-2)
    # squares are taken in float32: RMSE of 300 is exact in float16 although 300² = 90000 exceeds
    # float16's maximum 65504 (the MSE itself, returned in float16, is inf)
    big = torch.tensor([300.0], dtype=torch.float16)
    assert mse_loss(big, torch.zeros_like(big), reduction="sum").item() == float("inf")
    assert rmse_loss(big, torch.zeros_like(big)).item() == 300.0
