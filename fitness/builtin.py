"""The built-in tasks, all data made in code or bundled with scikit-learn (no downloads).

The default proxy suite: four small real training problems, each sized so that one candidate's
learning-rate sweep over the whole suite takes seconds on a 2-core CPU. The held-out tasks
(``fitness.tasks.HELDOUT``): a search never trains on them unless a campaign names them;
they are larger, longer or other model families, for replaying and validating what a search
found (does a rule that wins on the proxies win elsewhere?).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fitness.tasks import TaskData


@dataclass(frozen=True)
class BuiltinTask:
    """A proxy task from the registry; ``loss`` is cross-entropy or mean squared error, and the
    validation metric is the same loss on the validation set (lower is better)."""

    name: str
    description: str
    steps: int
    batch_size: int
    objective: str  # "ce" or "mse"
    make_data: Callable[[], TaskData]
    make_model: Callable[[], nn.Module]
    higher_is_better: bool = False

    @property
    def metric(self) -> str:
        return "val cross-entropy" if self.objective == "ce" else "val MSE"

    def data(self) -> TaskData:
        return self.make_data()

    def model(self) -> nn.Module:
        return self.make_model()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.objective == "ce":
            return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
        return (output - target).square().mean()  # F.mse_loss mis-batches under nested vmap

    def score(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(output, target)


def _split(x: np.ndarray, y: np.ndarray, n_val: int, seed: int, y_dtype) -> TaskData:
    order = np.random.RandomState(seed).permutation(len(x))
    x = torch.as_tensor(x[order], dtype=torch.float32)
    y = torch.as_tensor(y[order], dtype=y_dtype)
    return TaskData(x[n_val:], y[n_val:], x[:n_val], y[:n_val])


# --------------------------------------------------------------------------------------- digits


@functools.lru_cache(maxsize=1)
def _digits() -> TaskData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # 8×8 images, pixel values 0..16
    return _split(x, digits.target, n_val=360, seed=0, y_dtype=torch.long)


@functools.lru_cache(maxsize=1)
def _digit_images() -> TaskData:
    d = _digits()
    return TaskData(
        d.x_train.reshape(-1, 1, 8, 8), d.y_train, d.x_val.reshape(-1, 1, 8, 8), d.y_val
    )


def _mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _layer_norm_mlp(sizes: list[int]) -> nn.Module:
    """An MLP whose hidden layers are Linear → LayerNorm → GELU (no batch statistics, so it
    trains under vmap)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.GELU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(-3),
        nn.Linear(16 * 4 * 4, 10),
    )


# -------------------------------------------------------------------------------- breast cancer


def _standardised(data: TaskData, targets: bool = False) -> TaskData:
    """``data`` with its inputs (and its targets, when ``targets``) standardised by the training
    split's mean and deviation."""

    def scaled(train: torch.Tensor, val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = train.mean(0), train.std(0)
        return (train - mean) / std, (val - mean) / std

    x_train, x_val = scaled(data.x_train, data.x_val)
    y_train, y_val = scaled(data.y_train, data.y_val) if targets else (data.y_train, data.y_val)
    return TaskData(x_train, y_train, x_val, y_val)


@functools.lru_cache(maxsize=1)
def _breast_cancer() -> TaskData:
    """scikit-learn's bundled Wisconsin breast-cancer table (569 × 30), standardised with the
    training split's mean and deviation."""
    from sklearn.datasets import load_breast_cancer

    table = load_breast_cancer()
    return _standardised(_split(table.data, table.target, n_val=169, seed=0, y_dtype=torch.long))


@functools.lru_cache(maxsize=1)
def _diabetes() -> TaskData:
    """scikit-learn's bundled diabetes table (442 × 10 → disease progression), inputs and target
    standardised with the training split's statistics."""
    from sklearn.datasets import load_diabetes

    table = load_diabetes()
    data = _split(table.data, table.target[:, None], n_val=102, seed=0, y_dtype=torch.float32)
    return _standardised(data, targets=True)


# ---------------------------------------------------------------------------- image patches

PATCH = 8


@functools.lru_cache(maxsize=1)
def _image_patches() -> TaskData:
    """8×8 grey patches at fixed random places of scikit-learn's two bundled photographs (a
    temple in China, a flower), pixel values in [0, 1]; each patch is its own target."""
    from sklearn.datasets import load_sample_images

    rng = np.random.RandomState(3)
    grey = [image.mean(-1) / 255.0 for image in load_sample_images().images]
    patches = []
    for _ in range(2560):
        image = grey[rng.randint(len(grey))]
        row = rng.randint(image.shape[0] - PATCH)
        col = rng.randint(image.shape[1] - PATCH)
        patches.append(image[row : row + PATCH, col : col + PATCH].reshape(-1))
    x = torch.as_tensor(np.array(patches), dtype=torch.float32)
    return TaskData(x[512:], x[512:], x[:512], x[:512])


# ------------------------------------------------------------------------------ teacher–student


@functools.lru_cache(maxsize=1)
def _teacher_student() -> TaskData:
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(2560, 16, generator=gen)
    w1 = torch.randn(16, 32, generator=gen) / 4.0
    w2 = torch.randn(32, 1, generator=gen) / math.sqrt(32)
    y = torch.tanh(x @ w1) @ w2 + 0.1 * torch.randn(2560, 1, generator=gen)
    return TaskData(x[512:], y[512:], x[:512], y[:512])


# ------------------------------------------------------------------------------ ill-conditioned


@functools.lru_cache(maxsize=1)
def _ill_conditioned() -> TaskData:
    """Noisy linear least squares whose feature scales span 100× (Hessian condition 10⁴)."""
    gen = torch.Generator().manual_seed(99)
    scales = torch.logspace(0, -2, 32)
    x = torch.randn(1536, 32, generator=gen) * scales
    w = torch.randn(32, 1, generator=gen) / scales.unsqueeze(1) / 8.0
    y = x @ w + 0.05 * torch.randn(1536, 1, generator=gen)
    return TaskData(x[512:], y[512:], x[:512], y[:512])


def _zero_linear(inputs: int, outputs: int) -> nn.Module:
    """A linear model starting from zero (the classic start of a least-squares problem: a seed
    then changes only the order of the batches, not the distance to the solution)."""
    model = nn.Linear(inputs, outputs)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    return model


# ----------------------------------------------------------------------- sequence language model

VOCAB, CONTEXT = 16, 16


def _markov_sequences(concentration: float) -> TaskData:
    """Next-token prediction on an order-2 Markov chain with random transitions drawn from a
    Dirichlet(``concentration``): the smaller, the sparser and more learnable the transitions."""
    rng = np.random.RandomState(7)
    table = rng.dirichlet(np.full(VOCAB, concentration), size=(VOCAB, VOCAB)).cumsum(-1)
    n = 1280
    seq = np.zeros((n, CONTEXT + 1), dtype=np.int64)
    seq[:, :2] = rng.randint(VOCAB, size=(n, 2))
    for i in range(2, CONTEXT + 1):
        u = rng.random_sample(n)[:, None]
        rows = table[seq[:, i - 2], seq[:, i - 1]]
        seq[:, i] = np.minimum((u > rows).sum(-1), VOCAB - 1)
    tokens = torch.as_tensor(seq)
    x, y = tokens[:, :-1], tokens[:, 1:]
    return TaskData(x[256:], y[256:], x[:256], y[:256])


@functools.lru_cache(maxsize=1)
def _sparse_markov() -> TaskData:
    """``markov_lm``'s chain: sparse transitions (Dirichlet 0.05), so that learning them pays
    within the budget (with 0.2 every optimizer stopped on the same plateau: docs/fitness.md)."""
    return _markov_sequences(0.05)


@functools.lru_cache(maxsize=1)
def _dense_markov() -> TaskData:
    """``markov_lm_long``'s chain: denser transitions (Dirichlet 0.2), other data than the
    suite's."""
    return _markov_sequences(0.2)


class TinyTransformer(nn.Module):
    """One pre-norm causal self-attention block (single head) and an MLP, for token sequences."""

    def __init__(self, vocab: int = VOCAB, context: int = CONTEXT, width: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(0.02 * torch.randn(context, width))
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = _mlp([width, 2 * width, width], nn.GELU)
        self.head = nn.Linear(width, vocab)
        mask = torch.ones(context, context, dtype=torch.bool).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position
        q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        att = att.masked_fill(self.mask, float("-inf")).softmax(-1)
        h = h + self.proj(att @ v)
        h = h + self.mlp(self.norm2(h))
        return self.head(h)


# ------------------------------------------------------------------------------- the suite


def digits_mlp() -> BuiltinTask:
    """MLP 64-64-10 classifying scikit-learn's 8×8 digits."""
    return BuiltinTask(
        "digits_mlp",
        "MLP 64-64-10, sklearn digits",
        steps=200,
        batch_size=64,
        objective="ce",
        make_data=_digits,
        make_model=lambda: _mlp([64, 64, 10]),
    )


def markov_lm() -> BuiltinTask:
    """One-block causal transformer language model on a sparse order-2 Markov chain."""
    return BuiltinTask(
        "markov_lm",
        "1-block transformer LM, sparse order-2 Markov chain",
        steps=150,
        batch_size=16,
        objective="ce",
        make_data=_sparse_markov,
        make_model=TinyTransformer,
    )


def teacher_student() -> BuiltinTask:
    """Student MLP 16-64-1 regressing a random tanh teacher with label noise."""
    return BuiltinTask(
        "teacher_student",
        "MLP 16-64-1 fits a random tanh teacher",
        steps=200,
        batch_size=64,
        objective="mse",
        make_data=_teacher_student,
        make_model=lambda: _mlp([16, 64, 1]),
    )


def ill_conditioned() -> BuiltinTask:
    """Linear least squares with condition number 10⁴, from zero (a cheap test of
    preconditioning; large batches, so that the seed's batch order barely matters)."""
    return BuiltinTask(
        "ill_conditioned",
        "linear least squares from zero, condition number 1e4",
        steps=200,
        batch_size=256,
        objective="mse",
        make_data=_ill_conditioned,
        make_model=lambda: _zero_linear(32, 1),
    )


# ---------------------------------------------------------------------------- held-out tasks


def digits_cnn() -> BuiltinTask:
    """Two-layer CNN on the same digits, as images (held out since protocol 3: its baseline's
    seed-to-seed noise, 17 % even with the anytime metric, is too large for selection)."""
    return BuiltinTask(
        "digits_cnn",
        "CNN 8-16 channels, sklearn digits as 8x8 images",
        steps=150,
        batch_size=32,
        objective="ce",
        make_data=_digit_images,
        make_model=_cnn,
    )


def breast_cancer_logreg() -> BuiltinTask:
    """Logistic regression (a convex problem) on scikit-learn's breast-cancer table."""
    return BuiltinTask(
        "breast_cancer_logreg",
        "logistic regression 30-2, sklearn breast cancer",
        steps=200,
        batch_size=32,
        objective="ce",
        make_data=_breast_cancer,
        make_model=lambda: nn.Linear(30, 2),
    )


def diabetes_mlp() -> BuiltinTask:
    """A small MLP regressing disease progression on scikit-learn's diabetes table (tabular
    regression with few, noisy examples: another family than the suite's)."""
    return BuiltinTask(
        "diabetes_mlp",
        "MLP 10-32-1 regression, sklearn diabetes",
        steps=200,
        batch_size=32,
        objective="mse",
        make_data=_diabetes,
        make_model=lambda: _mlp([10, 32, 1]),
    )


def patch_autoencoder() -> BuiltinTask:
    """An autoencoder 64-32-8-32-64 reconstructing 8×8 patches of photographs (unsupervised,
    through a bottleneck: another family than the suite's)."""
    return BuiltinTask(
        "patch_autoencoder",
        "autoencoder 64-32-8-32-64 (GELU), 8x8 patches of sklearn's sample photos",
        steps=300,
        batch_size=64,
        objective="mse",
        make_data=_image_patches,
        make_model=lambda: _mlp([64, 32, 8, 32, 64], nn.GELU),
    )


def digits_mlp_layernorm() -> BuiltinTask:
    """A deeper, wider MLP with LayerNorm and GELU on the digits, trained longer."""
    return BuiltinTask(
        "digits_mlp_layernorm",
        "MLP 64-128-128-10 with LayerNorm + GELU, sklearn digits",
        steps=300,
        batch_size=64,
        objective="ce",
        make_data=_digits,
        make_model=lambda: _layer_norm_mlp([64, 128, 128, 10]),
    )


def digits_mlp_large_batch() -> BuiltinTask:
    """``digits_mlp``'s model at 8× its batch size (Lion's gain over AdamW grows with the
    batch size, so a rule tuned at small batches may rank differently here)."""
    return BuiltinTask(
        "digits_mlp_large_batch",
        "MLP 64-64-10, sklearn digits, batch 512",
        steps=100,
        batch_size=512,
        objective="ce",
        make_data=_digits,
        make_model=lambda: _mlp([64, 64, 10]),
    )


def markov_lm_long() -> BuiltinTask:
    """``markov_lm``'s transformer trained 2.7× longer on 2× larger batches, on a denser chain
    (other data than the suite's)."""
    return BuiltinTask(
        "markov_lm_long",
        "1-block transformer LM, dense order-2 Markov chain, 400 x 32",
        steps=400,
        batch_size=32,
        objective="ce",
        make_data=_dense_markov,
        make_model=TinyTransformer,
    )
