"""Activations of the lecture (seed 002): values, stated maximum errors, modules and the factory.

Maximum errors measured here (float32 implementation vs an exact float64 reference from Python's
``math`` on x ∈ [−10, 10], step 0.01): sigmoid, tanh, LeakyReLU, ELU, SELU ≤ 2 float32 ulps
(relative error ≤ 2.4e-7); ReLU, ReLU6 exact. The fast sigmoid vs the exact sigmoid: max
absolute error 0.02764 at |x| ≈ 0.539 (dense grid on [−20, 20], step 1e-4), plus jumps of
−2.2e-5 at |x| = 3.4 and +1.1e-4 at |x| = 5.8 where the lecture's pieces meet.
"""

import math

import pytest
import torch

import tripletlab.functional.activations as A
from tripletlab.nn import (
    ELU,
    SELU,
    FastSigmoid,
    LeakyReLU,
    PReLU,
    ReLU,
    ReLU6,
    RReLU,
    Sigmoid,
    Tanh,
    get_activation,
)

SELU_ALPHA_LECTURE = "1.6732632423543772848170429916717"
SELU_SCALE_LECTURE = "1.0507009873554804934193349852946"

EXACT = {
    "sigmoid": lambda v: 1 / (1 + math.exp(-v)),
    "tanh": math.tanh,
    "relu": lambda v: max(0.0, v),
    "relu6": lambda v: min(max(0.0, v), 6.0),
    "leaky_relu": lambda v: v if v > 0 else 0.1 * v,
    "elu": lambda v: v if v > 0 else math.expm1(v),
    "selu": lambda v: (
        float(SELU_SCALE_LECTURE) * (v if v > 0 else float(SELU_ALPHA_LECTURE) * math.expm1(v))
    ),
}
#: stated maximum relative error of the float32 implementation against the exact function
MAX_RELATIVE_ERROR = {
    "sigmoid": 2.4e-7,
    "tanh": 2.4e-7,
    "relu": 0.0,
    "relu6": 0.0,
    "leaky_relu": 2.4e-7,
    "elu": 2.4e-7,
    "selu": 2.4e-7,
}


def lecture_fast_sigmoid(x: float) -> float:
    """The lecture's Python code, transcribed (indentation repaired) for one float."""
    x = 0.5 * x
    flag_neg = 0
    if x < 0:
        x = -x
        flag_neg = 1
    if x < 1.7:
        z = 1.5 * x / (1 + x)
    elif x < 2.9:
        z = 0.9444 + 0.0459 * (x - 1.7)
    else:
        z = 0.9997
    if flag_neg == 1:
        z = -z
    return 0.5 * (z + 1.0)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_max_error_against_the_exact_function(name):
    grid = torch.arange(-1000, 1001, dtype=torch.float32) / 100
    got = getattr(A, name)(grid).double()
    want = torch.tensor([EXACT[name](v) for v in grid.tolist()], dtype=torch.float64)
    relative = ((got - want).abs() / want.abs().clamp_min(1e-300)).max().item()
    assert relative <= MAX_RELATIVE_ERROR[name]


def test_fast_sigmoid_is_the_lecture_code():
    grid = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    want = torch.tensor([lecture_fast_sigmoid(v) for v in grid.tolist()], dtype=torch.float64)
    torch.testing.assert_close(A.fast_sigmoid(grid), want, rtol=0, atol=1e-15)


def test_fast_sigmoid_max_error_on_a_dense_grid():
    x = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    err = (A.fast_sigmoid(x) - torch.sigmoid(x)).abs()
    worst = err.max().item()
    assert 0.0276 <= worst <= 0.0277
    assert abs(x[err.argmax()].abs().item() - 0.539) < 1e-3
    # float32 adds nothing noticeable
    err32 = (A.fast_sigmoid(x.float()).double() - torch.sigmoid(x)).abs().max().item()
    assert err32 <= 0.0277


def test_fast_sigmoid_shape_symmetry_and_jumps():
    x = torch.linspace(-30, 30, 6001, dtype=torch.float64)
    y = A.fast_sigmoid(x)
    torch.testing.assert_close(A.fast_sigmoid(-x), 1 - y)  # odd around 1/2
    assert y.min().item() == pytest.approx(0.5 * (1 - 0.9997))
    assert y.max().item() == pytest.approx(0.5 * (1 + 0.9997))
    eps = 1e-9
    for at, jump in ((3.4, -2.2e-5), (5.8, 1.1e-4)):
        step = A.fast_sigmoid(torch.tensor([at + eps, at - eps], dtype=torch.float64))
        assert (step[0] - step[1]).item() == pytest.approx(jump, rel=0.02)


def test_fast_sigmoid_gradient():
    x = torch.tensor([0.0, 1.0, 4.0, 10.0], dtype=torch.float64, requires_grad=True)
    A.fast_sigmoid(x).sum().backward()
    # d/dx ½(1.5·(x/2)/(1+|x/2|) + 1) = 0.375/(1 + |x|/2)² in the first piece
    torch.testing.assert_close(
        x.grad, torch.tensor([0.375, 0.375 / 1.5**2, 0.5 * 0.5 * 0.0459, 0.0], dtype=torch.float64)
    )


def test_selu_constants_are_the_lectures():
    assert float(SELU_ALPHA_LECTURE) == A.SELU_ALPHA
    assert float(SELU_SCALE_LECTURE) == A.SELU_SCALE
    x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    assert (A.selu(x) - torch.selu(x)).abs().max().item() <= 1e-15


def test_relu_family_defaults():
    x = torch.tensor([-2.0, -0.5, 0.0, 3.0, 7.0])
    torch.testing.assert_close(A.relu(x), torch.tensor([0.0, 0.0, 0.0, 3.0, 7.0]))
    torch.testing.assert_close(A.relu6(x), torch.tensor([0.0, 0.0, 0.0, 3.0, 6.0]))
    torch.testing.assert_close(A.leaky_relu(x), torch.tensor([-0.2, -0.05, 0.0, 3.0, 7.0]))
    torch.testing.assert_close(LeakyReLU()(x), A.leaky_relu(x))
    torch.testing.assert_close(A.elu(x), torch.where(x > 0, x, torch.expm1(x)))


def test_prelu_init_and_learning():
    module = PReLU()
    assert module.weight.item() == 0.25
    x = torch.tensor([-4.0, 2.0])
    out = module(x)
    torch.testing.assert_close(out, torch.tensor([-1.0, 2.0]))
    out.sum().backward()
    assert module.weight.grad.item() == -4.0  # ∂(a·x)/∂a = x for the negative input
    per_channel = PReLU(num_parameters=3)
    y = per_channel(-torch.ones(2, 3, 4))
    assert y.shape == (2, 3, 4) and bool((y == -0.25).all())
    with pytest.raises(ValueError, match="num_parameters"):
        PReLU(num_parameters=0)


def test_rrelu_random_slope_in_training_mean_slope_in_eval():
    module = RReLU()
    x = -torch.ones(100_000)
    module.eval()
    torch.testing.assert_close(module(x), torch.full_like(x, -(1 / 8 + 1 / 3) / 2))
    module.train()
    torch.manual_seed(0)
    slopes = -module(x)
    assert slopes.min().item() >= 1 / 8 and slopes.max().item() <= 1 / 3
    assert slopes.mean().item() == pytest.approx(11 / 48, abs=2e-3)
    assert slopes.std().item() == pytest.approx((1 / 3 - 1 / 8) / math.sqrt(12), abs=2e-3)
    positive = torch.arange(1.0, 5.0)
    torch.testing.assert_close(module(positive), positive)
    with pytest.raises(ValueError, match="lower must be <= upper"):
        RReLU(lower=0.5, upper=0.1)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("sigmoid", Sigmoid),
        ("fast_sigmoid", FastSigmoid),
        ("tanh", Tanh),
        ("relu", ReLU),
        ("relu6", ReLU6),
        ("leaky_relu", LeakyReLU),
        ("prelu", PReLU),
        ("rrelu", RReLU),
        ("elu", ELU),
        ("selu", SELU),
    ],
)
def test_factory_and_modules_match_functions(name, cls):
    module = get_activation(name)
    assert isinstance(module, cls)
    assert get_activation(name) is not module  # a fresh module each call
    module.eval()
    x = torch.linspace(-5, 5, 101)
    functional = {
        "prelu": lambda v: A.prelu(v, torch.tensor([0.25])),
        "rrelu": lambda v: A.rrelu(v, training=False),
    }.get(name, getattr(A, name))
    torch.testing.assert_close(module(x), functional(x))


def test_factory_identity_and_errors():
    x = torch.randn(3)
    for name in (None, "none", "linear", "identity"):
        assert torch.equal(get_activation(name)(x), x)
    with pytest.raises(ValueError, match=r"activation must be one of .*'selu'.*got 'swish'"):
        get_activation("swish")
