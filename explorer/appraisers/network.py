"""The ``mlp`` family's pieces that appraisers compute on torch tensors and CrypTensors alike,
and the family's influence and gradient-norm appraisers.

Each layer is a matrix W_l (in + 1, out) with the bias as its last row (explorer.network), one
per candidate (B, in + 1, out) where parameters move (fine-tuning, newton), and one per
candidate and trial (B, T, in + 1, out) for newton's trial steps. Candidates come as the batch
layout of explorer.appraisers.batch: A (B, m, d + 1) with the bias column, Y (B, m, C), and
padding rows all zero. Padding rows are zero only at the first layer's input: the next layers
add their biases, so every sum over rows takes the public row mask. The model owner's seed and
test sets come as one shared (n, d + 1), passed through every candidate's parameters at once.

The hidden activation is computed with its slope (its derivative at the pre-activation), which
the tangent of forward mode and the backward pass both need: for SiLU z s(z) (s the sigmoid)
the slope s + z s (1 - s) reuses the one encrypted sigmoid; for ReLU the slope is the
comparison [z > 0] that ReLU itself needs under MPC, so it costs one comparison and two
products; for the square activation the slope is 2z.
"""

from __future__ import annotations

import numpy as np
import torch

from explorer import network
from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.batch import row_mask
from explorer.appraisers.fixed_point import check_fixed_point, check_parameters
from explorer.appraisers.gradient_norm import possible_norms, squared_norms
from explorer.appraisers.logistic import bounded_probabilities, cross_entropy_sums
from explorer.appraisers.tensors import cat, less, matmul
from explorer.errors import ExplorerError
from explorer.model import penalty_mask, probabilities
from explorer.seed import NetworkSeed


def activation_and_slope(Z, activation: str):
    """(activation(Z), activation'(Z)) elementwise, torch or CrypTen."""
    if activation == "relu":
        slope = less(0.0, Z)
        return Z * slope, slope
    if activation == "silu":  # z sigmoid(z), slope sigmoid(z) (1 + z (1 - sigmoid(z)))
        s = Z.sigmoid()
        H = Z * s
        return H, s + H - H * s
    return Z * Z, Z * 2.0


def input_product(A, W):
    """The first layer's pre-activations: the data A times W (d + 1, k).

    A is either the candidates (B, m, d + 1) (an OpenedOperand too), with W shared (d + 1, k),
    per candidate (B, d + 1, k) or per candidate and trial (B, T, d + 1, k) -> (B, m, k) or
    (B, T, m, k); or one of the model owner's sets (n, d + 1), shared by every parameter set
    W (*batch, d + 1, k) -> (*batch, n, k). Either way one product: per-candidate and
    per-trial matrices are laid side by side, so the candidates' features are multiplied (and,
    under MPC, opened) once."""
    if len(A.shape) == 2:
        if len(W.shape) == 2:
            return A.matmul(W)
        batch, (d1, k) = tuple(W.shape[:-2]), tuple(W.shape[-2:])
        N, n = int(np.prod(batch)), int(A.shape[0])
        side = W.reshape(N, d1, k).permute(1, 0, 2).reshape(d1, N * k)
        return A.matmul(side).reshape(n, N, k).permute(1, 0, 2).reshape(*batch, n, k)
    if len(W.shape) == 4:
        B, T, d1, k = W.shape
        Z = matmul(A, W.permute(0, 2, 1, 3).reshape(B, d1, T * k))
        return Z.reshape(B, Z.shape[1], T, k).permute(0, 2, 1, 3)
    return matmul(A, W)


def input_gradient(A, delta):
    """A^T delta, the first layer's summed gradient: candidates A (B, m, d + 1) with delta
    (B, m, k) -> (B, d + 1, k); or a model owner's set (n, d + 1) with delta (*batch, n, k)
    -> (*batch, d + 1, k), one product."""
    if len(A.shape) == 2:
        n, d1 = int(A.shape[0]), int(A.shape[1])
        if len(delta.shape) == 2:
            return A.t().matmul(delta)
        batch, k = tuple(delta.shape[:-2]), int(delta.shape[-1])
        N = int(np.prod(batch))
        side = delta.reshape(N, n, k).permute(1, 0, 2).reshape(n, N * k)
        return A.t().matmul(side).reshape(d1, N, k).permute(1, 0, 2).reshape(*batch, d1, k)
    return matmul(A, delta, transpose=True)


def first_layer(A, matrices: list):
    """A times each of ``matrices`` (see ``input_product``): one product with their
    concatenation, so an OpenedOperand A is opened once for all of them."""
    widths = [int(M.shape[-1]) for M in matrices]
    Z = input_product(A, cat(matrices, dim=-1) if len(matrices) > 1 else matrices[0])
    out, start = [], 0
    for w in widths:
        out.append(Z[..., start:start + w])
        start += w
    return out


def affine(H, W):
    """H (..., n, in) times the weight rows of W (in + 1, out) (or (B, in + 1, out)) plus its
    bias row."""
    return H.matmul(W[..., :-1, :]) + W[..., -1:, :]


def forward_tangent(layers: list, tangents: list, A, activation: str):
    """Logits Z (B, m, C) and their directional derivative Z' along the tangent (the layers'
    directions V_l, shaped like the layers): forward mode, one pass of values and tangents.

    A linear layer maps (h, h') to (W h + b, W h' + V h + c); the activation maps (z, z') to
    (a(z), a'(z) z'); at the first layer h' = 0, so both products are of A."""
    Z, Zt = first_layer(A, [layers[0], tangents[0]])
    for W, V in zip(layers[1:], tangents[1:], strict=True):
        H, slope = activation_and_slope(Z, activation)
        Ht = slope * Zt
        Z, Zt = affine(H, W), Ht.matmul(W[..., :-1, :]) + affine(H, V)
    return Z, Zt


def forward(layers: list, A, activation: str):
    """Each layer's input and each hidden layer's slope, and the logits: (inputs, slopes, Z).
    inputs[0] is A; inputs[l] the activations entering layer l (B, m, in_l)."""
    inputs, slopes = [A], []
    Z = first_layer(A, [layers[0]])[0]
    for W in layers[1:]:
        H, slope = activation_and_slope(Z, activation)
        inputs.append(H)
        slopes.append(slope)
        Z = affine(H, W)
    return inputs, slopes, Z


def residuals(Z, Y, mask, bounded: bool = False):
    """dCE/dZ = probabilities - targets, zero on padding rows (``mask`` (B, m, 1) public, or
    None for the model owner's sets, which have none). ``bounded``: logits clamped first
    (explorer.appraisers.logistic.bounded_probabilities), for parameters that may have moved
    far from theta_hat."""
    C = Z.shape[-1]
    R = (bounded_probabilities(Z, C) if bounded else probabilities(Z, C)) - Y
    return R if mask is None else R * mask


def backward(layers: list, inputs: list, slopes: list, delta) -> list:
    """The summed gradient of each layer (..., in_l + 1, out_l) from ``forward``'s inputs and
    slopes and the residual delta = dCE/dZ at the logits."""
    grads = [None] * len(layers)
    for i in range(len(layers) - 1, 0, -1):
        H = inputs[i]
        grads[i] = cat([H.transpose(-2, -1).matmul(delta), delta.sum(dim=-2, keepdim=True)],
                       dim=-2)
        delta = delta.matmul(layers[i][..., :-1, :].transpose(-2, -1)) * slopes[i - 1]
    grads[0] = input_gradient(inputs[0], delta)  # A carries the bias column
    return grads


def gradient_sums(layers: list, A, Y, mask: torch.Tensor | None, activation: str,
                  bounded: bool = False) -> list:
    """Summed cross-entropy gradient per candidate, one (B, in_l + 1, out_l) per layer, by one
    forward and one backward pass. ``mask`` (B, m, 1) is the public row mask (None for a
    model owner's set, A (n, d + 1), whose layers are (B, in_l + 1, out_l): one parameter set
    per candidate)."""
    inputs, slopes, Z = forward(layers, A, activation)
    return backward(layers, inputs, slopes, residuals(Z, Y, mask, bounded))


def loss_and_gradient_sums(layers: list, A, Y, mask: torch.Tensor | None, activation: str,
                           gradient: bool = True):
    """Summed cross-entropy (B,) and, with ``gradient``, its gradient per layer (as
    ``gradient_sums``, bounded) from one forward pass; else (sums, None)."""
    inputs, slopes, Z = forward(layers, A, activation)
    losses = cross_entropy_sums(Z, Y, mask)
    if not gradient:
        return losses, None
    return losses, backward(layers, inputs, slopes, residuals(Z, Y, mask, bounded=True))


def per_candidate(layers: list) -> list:
    """Layers shared by every candidate (in + 1, out) as one parameter set (1, in + 1, out);
    per-candidate layers as they are."""
    return [W.unsqueeze(0) if len(W.shape) == 2 else W for W in layers]


def union_loss_and_gradient_sums(layers: list, A_train, Y_train, A, Y, mask: torch.Tensor,
                                 activation: str, gradient: bool = True):
    """Summed cross-entropy over D_tr ∪ D_a (B,) and, with ``gradient``, its gradient per layer
    (B, in_l + 1, out_l), each candidate at its own parameters.

    ``layers`` are per candidate (B, in_l + 1, out_l) or shared (in_l + 1, out_l): then the
    seed set's pass runs once for all candidates. The seed set A_train (n, d + 1), Y_train
    (n, C) is the model owner's; A (B, m, d + 1), Y (B, m, C), mask (B, m, 1) the
    candidates."""
    seed_loss, seed_grads = loss_and_gradient_sums(per_candidate(layers), A_train, Y_train,
                                                   None, activation, gradient)
    own_loss, own_grads = loss_and_gradient_sums(layers, A, Y, mask, activation, gradient)
    if not gradient:
        return seed_loss + own_loss, None
    return seed_loss + own_loss, [a + b for a, b in zip(seed_grads, own_grads, strict=True)]


def union_gradient_sums(layers: list, A_train, Y_train, A, Y, mask: torch.Tensor,
                        activation: str) -> list:
    """The summed cross-entropy gradient over D_tr ∪ D_a per layer (B, in_l + 1, out_l), as
    ``union_loss_and_gradient_sums`` without the loss."""
    seed = gradient_sums(per_candidate(layers), A_train, Y_train, None, activation,
                         bounded=True)
    own = gradient_sums(layers, A, Y, mask, activation, bounded=True)
    return [a + b for a, b in zip(seed, own, strict=True)]


def loss_sums(layers: list, A, Y, mask: torch.Tensor | None, activation: str):
    """Summed cross-entropy (*batch,) of the samples A at each parameter set (layers
    (*batch, in_l + 1, out_l)): the forward pass alone."""
    return cross_entropy_sums(forward(layers, A, activation)[2], Y, mask)


def squared_weights(layers: list, masks: list[torch.Tensor]):
    """sum_l ||W_l[:-1]||^2 per parameter set (*batch,): ``masks`` are 1 on the weight rows,
    0 on the bias row."""
    total = None
    for W, M in zip(layers, masks, strict=True):
        part = (W * W * M).sum(dim=-1).sum(dim=-1)
        total = part if total is None else total + part
    return total


def test_loss_reductions(A_test, Y_test, layers: list, moved: list, activation: str):
    """Mean test cross-entropy at the layers of theta_hat minus at each candidate's moved
    layers (B, in_l + 1, out_l): (B,), nats, > 0 = better. Both go through the same
    computation, one batch of B + 1 parameter sets, so under MPC the logarithm's error
    largely cancels in the difference."""
    every = [cat([W.unsqueeze(0), V], dim=0) for W, V in zip(layers, moved, strict=True)]
    losses = loss_sums(every, A_test, Y_test, None, activation) * (1.0 / A_test.shape[0])
    return losses[0] - losses[1:]


def penalty_masks(layers: list) -> list[torch.Tensor]:
    """Per layer (in_l + 1, out_l): 1 on the weight rows, 0 on the unpenalised bias row."""
    return [penalty_mask(int(W.shape[-2]), int(W.shape[-1])) for W in layers]


def layer_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def network_public(appraiser: Appraiser, sizes) -> Public:
    """The public metadata of an appraiser whose seed model is a network (the mlp and
    last-layer families): the Public of the logistic model plus the architecture."""
    s = appraiser._fitted()
    arch = s.architecture
    return Public(appraiser=appraiser.name, params=tuple(sorted(appraiser.params().items())),
                  n_features=s.n_features, n_outputs=arch.n_outputs,
                  sizes=tuple(int(n) for n in sizes), n_seed=s.n_seed, n_test=len(s.y_test),
                  lam=s.lam, family=appraiser.family, hidden=arch.hidden,
                  activation=arch.activation)


def public_architecture(public: Public) -> network.Architecture:
    """The network architecture the public metadata describes."""
    return network.Architecture(n_features=public.n_features, hidden=public.hidden,
                                n_outputs=public.n_outputs, activation=public.activation)


class NetworkAppraiser(Appraiser):
    """Base of the ``mlp`` family's appraisers: the seed model is an explorer.seed.NetworkSeed
    and the public metadata carries its architecture."""

    family = "mlp"
    seed_type = NetworkSeed

    def public(self, sizes) -> Public:
        return network_public(self, sizes)

    architecture = staticmethod(public_architecture)

    def layer_shapes(self, public: Public, prefix: str = "layer") -> dict[str, tuple]:
        shapes = self.architecture(public).shapes
        return dict(zip(layer_names(prefix, len(shapes)), shapes, strict=True))

    def layer_inputs(self, prefix: str = "layer") -> dict[str, torch.Tensor]:
        s = self.seed_
        layers = s.architecture.unflatten(s.theta)
        return dict(zip(layer_names(prefix, len(layers)), layers, strict=True))

    def layers(self, inputs: dict, public: Public, prefix: str = "layer") -> list:
        return [inputs[n] for n in layer_names(prefix, len(public.hidden) + 1)]

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        for name, value in inputs.items():
            if name.startswith("layer"):
                check_parameters(value, precision_bits)

    def work_per_row(self) -> int:
        arch = self.seed_.architecture
        return int(sum(arch.hidden) + arch.n_outputs) * 4


class NetworkInfluence(NetworkAppraiser):
    """value = v · G(D_a) / n_seed, nats of mean test loss, with v = (H + delta I)^-1 g_te.

    G(D_a) · v is the directional derivative of the candidate's summed loss along v, computed by
    forward mode (explorer.appraisers.network.forward_tangent): one pass of values and tangents,
    no backward pass. v is the model owner's, solved in the clear by conjugate gradient on exact
    Hessian-vector products (explorer.network.solve_damped); ``damping`` sets delta = damping x
    lam, which keeps H + delta I positive definite where the seed model's Hessian is singular
    (dead units' biases, the softmax's common bias shift)."""

    name = "influence"
    model_owner_data = ("each layer of theta_hat and the same layers of v / n_seed, scaled by a "
                        "secret power of two")

    _beyond_test_loss = ("linearisation broken: predicts a larger reduction than the seed's "
                         "whole test loss")

    def __init__(self, damping: float = 0.1):
        if isinstance(damping, bool) or not isinstance(damping, (int, float)) \
                or not np.isfinite(damping) or damping < 0:
            raise ExplorerError(f"the influence damping must be a non-negative number, got "
                                f"{damping!r}.")
        self.damping = float(damping)

    def params(self) -> dict:
        return {"damping": self.damping}

    def _setup(self, seed: NetworkSeed) -> None:
        arch = seed.architecture
        g_te = network.grad_sum(arch, seed.theta, seed.X_test, seed.y_test) / len(seed.y_test)
        solve = network.solve_damped(arch, seed.theta, seed.X_train, seed.y_train, seed.lam,
                                     seed.n_seed, g_te, self.damping * seed.lam)
        self.solve_ = solve
        self.delta_ = solve.delta
        self.weights_ = solve.v / seed.n_seed

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        return {**self.layer_shapes(public), **self.layer_shapes(public, "tangent"),
                "unscale": (1,)}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        # as for the logistic model: v / n_seed sits below fixed-point resolution; scale it by
        # a power of two to a largest entry near 1 and undo that after the sum
        peak = float(self.weights_.abs().max())
        scale = 2.0 ** -np.ceil(np.log2(peak)) if peak > 0 else 1.0
        arch = self.seed_.architecture
        tangents = arch.unflatten(self.weights_ * scale)
        return {**self.layer_inputs(),
                **dict(zip(layer_names("tangent", len(tangents)), tangents, strict=True)),
                "unscale": torch.tensor([1.0 / scale], dtype=torch.float64)}

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        super().check_fixed_point(inputs, precision_bits)
        for name, value in inputs.items():
            if name.startswith("tangent"):
                check_fixed_point("influence directions v / n_seed", value, 1.0,
                                  precision_bits, "after scaling")

    def compute(self, inputs: dict, A, Y, public: Public):
        layers = self.layers(inputs, public)
        tangents = self.layers(inputs, public, "tangent")
        Z, Zt = forward_tangent(layers, tangents, A, public.activation)
        R = residuals(Z, Y, row_mask(public.sizes))
        return (R * Zt).sum(dim=-1).sum(dim=-1) * inputs["unscale"]


class NetworkGradientNorm(NetworkAppraiser):
    """value = ||sum over D_a of the loss gradient at theta_hat||_2, every layer's entries
    together, computed as s ||G / s|| (as the logistic model's gradient norm,
    explorer.appraisers.gradient_norm) with s the median candidate size times the mean
    per-sample gradient norm over the model owner's test set. Not the norm of the test set's
    mean gradient, which nearly vanishes at a network's minimum: ||G / s||² must stay inside
    the range where CrypTen's inverse square root converges (below about 200)."""

    name = "gradient-norm"
    model_owner_data = "each layer of theta_hat and a public-size scale s with its inverse"

    def possible(self, values: np.ndarray) -> np.ndarray:
        return possible_norms(values, getattr(self, "scale_", None))

    def diagnose(self, values) -> list[str]:
        return [""] * len(values)

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        return {**self.layer_shapes(public), "scale": (1,), "inv_scale": (1,)}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        s = self.seed_
        per_sample = network.mean_gradient_norm(s.architecture, s.theta, s.X_test, s.y_test)
        scale = max(per_sample * float(np.median(public.sizes)), 1e-3)
        self.scale_ = scale
        return {**self.layer_inputs(), "scale": torch.tensor([scale], dtype=torch.float64),
                "inv_scale": torch.tensor([1.0 / scale], dtype=torch.float64)}

    def compute(self, inputs: dict, A, Y, public: Public):
        grads = gradient_sums(self.layers(inputs, public), A, Y, row_mask(public.sizes),
                              public.activation)
        B = public.n_candidates
        total = None
        for G in grads:
            part = squared_norms(G.reshape(B, -1) * inputs["inv_scale"])
            total = part if total is None else total + part
        return total.sqrt() * inputs["scale"]
