"""MLP / ConvNet / build_model / embed_triplets: the lecture's XOR and PCA examples, shapes, and a
short triplet training run on scikit-learn's digits."""

import pytest
import torch
import torch.nn.functional as TF
from scipy.linalg import subspace_angles
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from tripletlab import MLP, ConvNet, build_model, embed_triplets
from tripletlab.functional import triplet_margin_loss


@pytest.fixture(autouse=True)
def one_thread():
    # These runs are many tiny ops: extra intra-op threads only add contention on a busy CI box.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


XOR_X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = torch.tensor([0.0, 1.0, 1.0, 0.0])


def train_xor(net, steps=300):
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(steps):
        loss = TF.binary_cross_entropy_with_logits(net(XOR_X).squeeze(1), XOR_Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ((net(XOR_X).squeeze(1) > 0).float() == XOR_Y).float().mean().item()


def test_mlp_learns_xor_but_a_single_linear_layer_cannot():
    torch.manual_seed(0)
    assert train_xor(MLP(2, (8,), 1, activation="tanh")) == 1.0
    torch.manual_seed(0)
    # "It's impossible to find a single straight line to separate two classes."
    assert train_xor(MLP(2, (), 1, activation=None)) <= 0.75


def test_linear_autoencoder_recovers_the_pca_subspace():
    # Lecture: "PCA is a special case of NN". A linear encoder (MLP without hidden layers or
    # activation) and a linear decoder, trained on MSE reconstruction, span the top-k principal
    # subspace; the data are offset, and the biases absorb the mean.
    g = torch.Generator().manual_seed(0)
    d, k, n = 6, 2, 400
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    std = torch.tensor([3.0, 2.0, 0.7, 0.5, 0.3, 0.2], dtype=torch.float64)
    data = (torch.randn(n, d, generator=g, dtype=torch.float64) * std) @ rotation.T + 5.0
    torch.manual_seed(0)
    encoder = MLP(d, (), k, activation=None).double()
    decoder = torch.nn.Linear(k, d).double()
    params = [*encoder.parameters(), *decoder.parameters()]
    opt = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=400,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = TF.mse_loss(decoder(encoder(data)), data)
        loss.backward()
        return loss

    for _ in range(3):  # LBFGS restarts; the gauge directions converge slowly
        opt.step(closure)
    centered = data - data.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(centered.T @ centered / n)
    top = eigenvectors[:, -k:].numpy()
    decoder_angles = subspace_angles(decoder.weight.detach().numpy(), top)
    encoder_angles = subspace_angles(encoder.layers[0].weight.detach().T.numpy(), top)
    assert decoder_angles.max() < 1e-3  # radians
    assert encoder_angles.max() < 1e-2
    # the reconstruction error is PCA's: the discarded eigenvalues, averaged over d
    pca_error = eigenvalues[:-k].sum().item() / d
    assert closure().item() == pytest.approx(pca_error, rel=1e-5)
    # projectors agree too
    w = torch.linalg.qr(decoder.weight.detach())[0]
    torch.testing.assert_close(w @ w.T, torch.tensor(top @ top.T), atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    ("in_shape", "x_shape"),
    [
        ((1, 28, 28), (5, 1, 28, 28)),
        ((1, 8, 8), (5, 1, 8, 8)),
        ((64,), (5, 64)),
        ((8, 8), (5, 8, 8)),
        ((3, 48, 64), (5, 3, 48, 64)),  # non-square RGB photos
        ((1, 8, 6), (5, 48)),  # flattened non-square input
    ],
)
def test_cnn_shapes(in_shape, x_shape):
    net = build_model("cnn", in_shape, 16)
    assert isinstance(net, ConvNet)
    assert net(torch.randn(x_shape)).shape == (5, 16)


def test_normalize_gives_unit_rows_and_dropout_is_used():
    torch.manual_seed(0)
    for net in (
        build_model("mlp", (1, 8, 8), 16, hidden=(32,), normalize=True),
        build_model("cnn", (1, 8, 8), 16, normalize=True),
        ConvNet(3, 8, 4, normalize=True),
    ):
        channels = 3 if isinstance(net, ConvNet) and net.in_channels == 3 else 1
        out = net(torch.randn(4, channels, 8, 8))
        torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    net = MLP(10, (32, 32), 4, dropout=0.5)
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 2
    x = torch.randn(8, 10)
    net.eval()
    assert torch.equal(net(x), net(x))


def test_mlp_structure_and_activation_choice():
    net = MLP(3, (5, 7), 2, activation="leaky_relu")
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 5), (5, 7), (7, 2)]
    assert sum(type(m).__name__ == "LeakyReLU" for m in net.modules()) == 2
    assert MLP(4, (8,), 2)(torch.randn(3, 2, 2)).shape == (3, 2)  # images are flattened


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: MLP(0, (4,), 2), "in_dim must be a positive integer"),
        (lambda: MLP(3, (4, -1), 2), "hidden must be a positive integer"),
        (lambda: MLP(3, (4,), 2, activation="gelu"), "activation must be one of"),
        (lambda: MLP(3, (4,), 2, dropout=1.0), "dropout"),
        (lambda: ConvNet(1, 2, 8), "image_size"),
        (lambda: build_model("resnet", (1, 8, 8), 8), "model must be one of 'mlp', 'cnn'"),
        (lambda: build_model("cnn", (1, 8, 3), 8), "image_size"),
        (lambda: ConvNet(1, (8, 8, 8), 8), "image_size"),
        (lambda: build_model("cnn", (10,), 8), "in_shape for 'cnn'"),
        (lambda: build_model("mlp", (), 8), "in_shape"),
    ],
)
def test_bad_configuration(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_embed_triplets_is_one_forward_of_the_shared_network():
    net = build_model("cnn", (1, 8, 8), 8)
    calls = []
    net.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    a, p, n = (torch.randn(6, 1, 8, 8) for _ in range(3))
    embed_triplets(net, a, p, n)
    assert calls == [18]  # a single pass over the stacked batch
    net.eval()
    torch.testing.assert_close(torch.cat(embed_triplets(net, a, p, n)), net(torch.cat([a, p, n])))
    torch.testing.assert_close(embed_triplets(net, a, p, n)[1], net(p))
    # the loss's three gradients all reach the one set of weights
    net.train()
    loss = triplet_margin_loss(*embed_triplets(net, a, p, n), margin=10.0)
    loss.backward()
    assert all(prm.grad is not None for prm in net.parameters())
    with pytest.raises(ValueError, match="same shape"):
        embed_triplets(net, a, p[:3], n)


def test_triplet_training_on_digits_improves_nearest_neighbour_accuracy():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    order = torch.argsort(y_train)
    x_train, y_train = x_train[order], y_train[order]
    counts = torch.bincount(y_train, minlength=10)
    starts = torch.cumsum(counts, 0) - counts

    def sample_from(classes, g):
        return starts[classes] + (torch.rand(len(classes), generator=g) * counts[classes]).long()

    def one_nn_accuracy(model):
        model.eval()
        with torch.no_grad():
            train, test = model(x_train).numpy(), model(x_test).numpy()
        model.train()
        return KNeighborsClassifier(1).fit(train, y_train.numpy()).score(test, y_test.numpy())

    torch.manual_seed(0)
    model = MLP(64, (64,), 4)  # a 4-D embedding: random weights keep little class structure
    before = one_nn_accuracy(model)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        anchors = torch.randint(0, len(y_train), (128,), generator=g)
        classes = y_train[anchors]
        other = (classes + torch.randint(1, 10, (128,), generator=g)) % 10
        a, p, n = embed_triplets(
            model,
            x_train[anchors],
            x_train[sample_from(classes, g)],
            x_train[sample_from(other, g)],
        )
        loss = triplet_margin_loss(a, p, n, margin=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = one_nn_accuracy(model)
    assert before < 0.6
    assert after > 0.85 and after - before > 0.3
