"""``newton`` for an ``mlp`` seed model: K safeguarded, preconditioned steps on D_tr ∪ D_a
from theta_hat, then the exact test loss, as the logistic model's (explorer.appraisers.newton):
the same trials, the same soft line search evaluated obliviously, the same public
alpha = n_seed / (n_seed + |D_a|), and no matrix inverted under MPC.

Each step k takes, per trial (t, mu) of ``trials``, the point

    theta_k - alpha * t * (P + mu * s_max I)^-1 grad J_union(theta_k)

with J_union = (CE(D_tr) + CE(D_a)) / n_seed + (lam / 2) sum_l ||W_l[:-1]||^2 and P the
model owner's preconditioner, damped: P = Hhat + delta I, delta = ``damping`` x lam (as
influence's delta, explorer.appraisers.network). The trials' union objectives are blended
with weights softmax(-J / TEMPERATURE); a network's objective is not convex, so J_union is
then evaluated at the blend itself (the same forward pass gives the gradient the next step
needs), and the step is taken only if that lowers J_union: a secret bit under MPC. J_union
never increases. Where the logistic model's convexity makes a rejected step rare, a network's
union can reject every trial of a step (its curvature differs from the seed's more than the
trials' dampings cover), and the same step would be tried again unchanged: so a rejection
shrinks the next step's scale by SHRINK, and an accepted step grows it by GROW, back up to
alpha (a secret scale per candidate). value = L_te(theta_hat) - L_te(theta_K), nats.

On a non-convex loss the steps descend to a stationary point of J_union reached from
theta_hat; the ground truth (explorer.utility) retrains from theta_hat with another optimiser,
which may stop at a different minimum when the candidate moves the model far (measured in
tests/test_network_appraisers.py and the README).

Preconditioners (``preconditioner``), computed in the clear by the model owner from its seed
set, its private inputs:

- "kfac": eigenvalue-corrected Kronecker factors (EK-FAC, George et al. 2018), per layer: the
  eigenbasis U_A of the layer input's second moment E[a a^T] ((in + 1) x (in + 1), the bias
  entry 1 included) and U_G of the logit-Jacobian's output second moment
  E[J_l^T Lambda J_l] (out x out; J_l the logits' Jacobian with respect to the layer's
  pre-activations, Lambda = diag p - p p^T, or p (1 - p) for a sigmoid), with s the diagonal of
  the exact Gauss-Newton matrix of J in the basis U_A ⊗ U_G plus the penalty's lam on the
  weight rows. EK-FAC rather than plain K-FAC because the diagonal is then exact in the
  Kronecker basis (the best diagonal there), and the penalty, which spares the bias row, is
  added as it is instead of being smeared over the factors; the Gauss-Newton matrix rather than
  the Hessian because it is positive semi-definite wherever theta moves. Cross-layer blocks
  are dropped: two small matrices per layer instead of a P x P one.
- "dense": the exact Hessian of J at theta_hat (P x P) in its eigenbasis, eigenvalues clamped
  at 0 (a local minimum's Hessian is positive semi-definite up to the fit's tolerance); for
  networks of at most DENSE_NETWORK_MAX parameters.
- "auto": dense up to 1,000 parameters, else kfac.

The damping delta keeps P invertible where the seed set gives no curvature: dead units'
biases, and directions the seed set does not excite but a candidate does. The softmax's common
shift of the output biases, along which every gradient is zero, keeps a zero inverse, as the
logistic model's does.
"""

from __future__ import annotations

import torch

from explorer import network
from explorer.appraisers.base import Public
from explorer.appraisers.batch import row_mask
from explorer.appraisers.fixed_point import check_fixed_point, ring_limit
from explorer.appraisers.logistic import softmax
from explorer.appraisers.network import (
    forward,
    loss_sums,
    penalty_masks,
    per_candidate,
    squared_weights,
    test_loss_reductions,
    union_loss_and_gradient_sums,
)
from explorer.appraisers.network_union import NetworkUnionAppraiser
from explorer.appraisers.newton import (
    DENSE_PRECONDITIONER_MAX,
    TEMPERATURE,
    TRIALS,
    Newton,
    damped_inverses,
    dense_rotate,
    kronecker_rotate,
)
from explorer.appraisers.tensors import cat, less, like
from explorer.constraints import DEFAULTS, check_params
from explorer.errors import ExplorerError
from explorer.model import probabilities, with_bias
from explorer.seed import NetworkSeed

# A trial's seed-set pass holds about B x trials x n_seed x width values per tensor: trials are
# evaluated in groups that keep it below this (MNIST, 20 candidates verified twice, 600 seed
# samples, 64 hidden units: two trials at a time).
TRIAL_VALUES = 2**22
# The dense preconditioner's P x P eigenbasis is refused past this many parameters (134 MB in
# the clear, as many again per share under MPC).
DENSE_NETWORK_MAX = 4096
# After a rejected step the next step's scale shrinks by SHRINK; after an accepted one it grows
# by GROW, up to alpha.
SHRINK, GROW = 0.25, 2.0


def kfac_eigenbases(seed: NetworkSeed) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                     torch.Tensor]]:
    """Per layer (U_A (in + 1, in + 1), U_G (out, out), s (in + 1, out), null (in + 1, out)):
    the EK-FAC factors of the module docstring; ``null`` marks the softmax's null column of the
    output layer (where every gradient is 0 and s is set to 0)."""
    arch = seed.architecture
    layers = arch.unflatten(seed.theta)
    A = with_bias(seed.X_train)
    inputs, slopes, Z = forward(layers, A, arch.activation)
    C, n = arch.n_outputs, seed.n_seed
    p = probabilities(Z, C)
    if C == 1:
        columns = (p * (1 - p)).sqrt()[None]  # (1, n, 1)
    else:  # Lambda = S S^T with S = diag(sqrt p) - p sqrt(p)^T; its columns, (C, n, C)
        root = p.sqrt()
        columns = (torch.diag_embed(root) - p[:, :, None] * root[:, None, :]).permute(2, 0, 1)
    factors: list = [None] * len(layers)
    delta = columns
    for i in range(len(layers) - 1, -1, -1):
        a = A if i == 0 else with_bias(inputs[i])
        _, U_A = torch.linalg.eigh(a.T @ a / n)
        eig_G, U_G = torch.linalg.eigh(torch.einsum("knc,knd->cd", delta, delta) / n)
        proj_a = (a @ U_A) ** 2  # (n, in + 1): (u_i . a_n)^2
        proj_g = ((delta @ U_G) ** 2).sum(dim=0)  # (n, out): sum_k (v_j . delta_nk)^2
        s = proj_a.T @ proj_g / n + seed.lam * (U_A[:-1] ** 2).sum(dim=0)[:, None]
        null = torch.zeros_like(s, dtype=torch.bool)
        if i == len(layers) - 1 and C > 1:
            null[:, int(eig_G.abs().argmin())] = True
            s[null] = 0.0
        factors[i] = (U_A, U_G, s, null)
        if i > 0:
            delta = delta @ layers[i][:-1].T * slopes[i - 1]
    return factors


def dense_eigenbasis(seed: NetworkSeed) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eigenvectors Q (P, P) and eigenvalues s (P,) of the seed Hessian of J at theta_hat, in
    flat parameter order (explorer.network), and ``null`` (P,) marking the softmax's common
    output-bias shift (s 0 there); s is clamped at 0 elsewhere."""
    arch = seed.architecture
    H = network.hessian(arch, seed.theta, seed.X_train, seed.y_train, seed.lam, seed.n_seed)
    H = (H + H.T) / 2
    u = None
    if arch.n_outputs > 1:
        u = torch.zeros(arch.n_params, dtype=H.dtype)
        u[-arch.n_outputs:] = arch.n_outputs ** -0.5  # the last row of the last layer
        H = H + torch.outer(u, u)
    s, Q = torch.linalg.eigh(H)
    s = s.clamp_min(0.0)
    null = torch.zeros_like(s, dtype=torch.bool)
    if u is not None:
        null[int((Q.T @ u).abs().argmax())] = True
        s[null] = 0.0
    return Q, s, null


def damped(s: torch.Tensor, null: torch.Tensor, delta: float, top: float) -> torch.Tensor:
    """s + delta, and 0 on the null direction (whose inverse stays 0); one sentence when a
    direction outside it has no curvature to invert (below 1e-10 of the largest, ``top``)."""
    out = torch.where(null, torch.zeros_like(s), s + delta)
    flat = (out <= 1e-10 * top) & ~null
    if bool(flat.any()):
        raise ExplorerError(f"the seed model's curvature is 0 along {int(flat.sum())} "
                            f"direction(s) besides the softmax's bias shift (dead units, or a "
                            f"saddle); give newton a positive damping.")
    return out


class NetworkNewton(NetworkUnionAppraiser, Newton):
    """value = L_te(theta_hat) - L_te(theta_K) after K safeguarded, preconditioned steps on
    D_tr ∪ D_a (module docstring), nats."""

    model_owner_data = ("each layer of theta_hat and of its seed set's summed gradient there, "
                        "its seed and test sets with targets, and "
                        "its preconditioner: per layer two Kronecker eigenbases (kfac) or one "
                        "P x P eigenbasis (dense), with the damped inverse eigenvalues")

    def __init__(self, steps: int = DEFAULTS["newton_steps"],
                 preconditioner: str = DEFAULTS["preconditioner"],
                 trials: tuple[tuple[float, float], ...] = TRIALS,
                 damping: float = DEFAULTS["damping"]):
        super().__init__(steps=steps, preconditioner=preconditioner, trials=trials)
        check_params({"damping": damping})
        self.damping = float(damping)

    def params(self) -> dict:
        return {**super().params(), "damping": self.damping}

    def kind(self, n_parameters: int) -> str:
        """The preconditioner actually used: "dense" or "kfac"."""
        if self.preconditioner != "auto":
            return self.preconditioner
        return "dense" if n_parameters <= DENSE_PRECONDITIONER_MAX else "kfac"

    def _setup(self, seed: NetworkSeed) -> None:
        delta = self.delta_ = self.damping * seed.lam
        P = seed.architecture.n_params
        if self.kind(P) == "dense":
            if P > DENSE_NETWORK_MAX:
                raise ExplorerError(f"the dense preconditioner holds a P x P matrix, and this "
                                    f"network has P = {P:,} parameters (at most "
                                    f"{DENSE_NETWORK_MAX:,}); use the kfac (or auto) "
                                    f"preconditioner.")
            Q, s, null = dense_eigenbasis(seed)
            top = float(s.max())
            self.preconditioner_ = {"Q": Q, "inv_s": damped_inverses(
                damped(s, null, delta, top), self.trials)}
            return
        factors = kfac_eigenbases(seed)
        top = max(float(s.max()) for _, _, s, _ in factors)
        self.preconditioner_ = {}
        for i, (U_A, U_G, s, null) in enumerate(factors):
            self.preconditioner_[f"U_A{i}"] = U_A
            self.preconditioner_[f"U_G{i}"] = U_G
            self.preconditioner_[f"inv_s{i}"] = damped_inverses(
                damped(s, null, delta, top), self.trials, top + delta)

    def model_owner_shapes(self, public: Public) -> dict[str, tuple[int, ...]]:
        T = len(self.trials)
        shapes = self.architecture(public).shapes
        P = sum(a * b for a, b in shapes)
        if self.kind(P) == "dense":
            extra = {"Q": (P, P), "inv_s": (T, P)}
        else:
            extra = {}
            for i, (a, b) in enumerate(shapes):
                extra.update({f"U_A{i}": (a, a), f"U_G{i}": (b, b), f"inv_s{i}": (T, a, b)})
        return {**NetworkUnionAppraiser.model_owner_shapes(self, public), **extra}

    def model_owner_inputs(self, public: Public) -> dict[str, torch.Tensor]:
        return {**NetworkUnionAppraiser.model_owner_inputs(self, public),
                **self.preconditioner_}

    def check_fixed_point(self, inputs: dict[str, torch.Tensor], precision_bits: int) -> None:
        NetworkUnionAppraiser.check_fixed_point(self, inputs, precision_bits)
        for name, value in inputs.items():
            if name.startswith("inv_s"):
                check_fixed_point("inverse seed Hessian", value, ring_limit(precision_bits) ** 0.5,
                                  precision_bits, "which multiplies gradient entries")

    def work_per_row(self) -> int:
        return NetworkUnionAppraiser.work_per_row(self) * (len(self.trials) + 1)

    # -- the computation, on torch tensors or CrypTensors -------------------------------

    def compute(self, inputs: dict, A, Y, public: Public):
        activation = public.activation
        B, T = public.n_candidates, len(self.trials)
        n_seed = float(public.n_seed)
        alpha = (n_seed / (n_seed + public.sizes_tensor()))[:, None, None, None]
        layers = self.layers(inputs, public)
        masks = penalty_masks(layers)
        mask = row_mask(public.sizes)
        A_tr, Y_tr = inputs["A_train"], inputs["Y_train"]

        def union_objective(params, gradient: bool):
            """J_union (B,) at per-candidate (or shared) params, and its gradient per layer."""
            ce, G = union_loss_and_gradient_sums(params, A_tr, Y_tr, A, Y, mask, activation,
                                                 gradient)
            J = ce * (1.0 / n_seed) + squared_weights(per_candidate(params), masks) \
                * (public.lam / 2)
            if G is None:
                return J, None
            return J, [g * (1.0 / n_seed) + W * (M * public.lam)
                       for g, W, M in zip(G, params, masks, strict=True)]

        theta = layers  # shared by every candidate until the first step
        ce, G = self.start_gradient_sums(inputs, A, Y, public, loss=True)
        objective = ce * (1.0 / n_seed) + squared_weights(per_candidate(theta), masks) \
            * (public.lam / 2)
        grad = [g * (1.0 / n_seed) + W * (M * public.lam) for g, W, M in zip(G, theta, masks,
                                                                            strict=True)]
        # the step's scale per candidate: alpha, shrunk after a rejected step (a secret once
        # a comparison set it, so kept in the objective's encoding from the start)
        reach = like(objective, alpha.reshape(B))
        for k in range(self.steps):
            steps = self._directions(inputs, grad, public)  # (B, T, in + 1, out) per layer
            tried = [(W.unsqueeze(0) if len(W.shape) == 2 else W.unsqueeze(1))
                     - D * reach.reshape(B, 1, 1, 1)
                     for W, D in zip(theta, steps, strict=True)]
            values = self._trial_objectives(tried, A_tr, Y_tr, A, Y, mask, masks, public)
            # a soft minimum over the trials (as the logistic newton's), then the objective at
            # the blend itself: the safeguard needs no convexity
            weights = softmax(values * (-1.0 / TEMPERATURE)).reshape(B, T, 1, 1)
            blend = [(W * weights).sum(dim=1) for W in tried]
            last = k == self.steps - 1
            at_blend, grad_blend = union_objective(blend, gradient=not last)
            move = less(at_blend, objective)  # a secret bit per candidate
            turn = move.reshape(B, 1, 1)
            theta = [W + (V - W) * turn for W, V in zip(theta, blend, strict=True)]
            objective = objective + (at_blend - objective) * move
            if not last:
                grad = [g + (h - g) * turn for g, h in zip(grad, grad_blend, strict=True)]
                # a rejected step would be tried again unchanged: shrink the next one instead,
                # and let an accepted step grow back towards alpha
                shrunk = reach * SHRINK
                reach = shrunk + (reach * GROW - shrunk) * move
                reach = reach - (reach - alpha.reshape(B)).relu()
        return test_loss_reductions(inputs["A_test"], inputs["Y_test"], layers, theta,
                                    activation)

    def _directions(self, inputs: dict, grad: list, public: Public) -> list:
        """Each trial's preconditioned gradient, t (P + mu s_max I)^-1 grad per layer
        (B, T, in + 1, out), from grad (B, in + 1, out) per layer."""
        B, T = public.n_candidates, len(self.trials)
        shapes = [tuple(int(x) for x in g.shape[-2:]) for g in grad]
        if "Q" in inputs:
            flat = cat([g.reshape(B, a * b) for g, (a, b) in zip(grad, shapes, strict=True)],
                       dim=1)
            P = flat.shape[-1]
            rotated = dense_rotate(inputs["Q"], flat, inverse=False).unsqueeze(1) \
                * inputs["inv_s"]
            back = dense_rotate(inputs["Q"], rotated.reshape(B * T, P), inverse=True)
            out, start = [], 0
            for a, b in shapes:
                out.append(back[:, start:start + a * b].reshape(B, T, a, b))
                start += a * b
            return out
        out = []
        for i, (g, (a, b)) in enumerate(zip(grad, shapes, strict=True)):
            U_A, U_G = inputs[f"U_A{i}"], inputs[f"U_G{i}"]
            rotated = kronecker_rotate(U_A, U_G, g, inverse=False).unsqueeze(1) \
                * inputs[f"inv_s{i}"]
            back = kronecker_rotate(U_A, U_G, rotated.reshape(B * T, a, b), inverse=True)
            out.append(back.reshape(B, T, a, b))
        return out

    def _trial_objectives(self, tried: list, A_tr, Y_tr, A, Y, mask, masks: list,
                          public: Public):
        """J_union at each trial point, tried (B, T, in + 1, out) per layer -> (B, T), the
        trials in groups of at most TRIAL_VALUES values per hidden tensor."""
        activation = public.activation
        B, T = public.n_candidates, len(self.trials)
        width = max(*public.hidden, public.n_outputs)
        rows = max(public.n_seed, public.size)
        group = max(1, min(T, TRIAL_VALUES // max(B * rows * width, 1)))
        parts = []
        for t0 in range(0, T, group):
            part = [W[:, t0:t0 + group] for W in tried]
            seed = loss_sums(part, A_tr, Y_tr, None, activation)
            own = loss_sums(part, A, Y.unsqueeze(1), mask.unsqueeze(1), activation)
            parts.append((seed + own) * (1.0 / public.n_seed)
                         + squared_weights(part, masks) * (public.lam / 2))
        return parts[0] if len(parts) == 1 else cat(parts, dim=1)

