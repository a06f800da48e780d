"""The private appraisal protocol: what each party inputs, what runs encrypted, what is revealed.

Parties: rank 0 is the model owner, rank 1 the data owner (rank 0 plays both in simulated mode,
world size 1). ``appraisal_party`` is the code every party runs; each receives only its own
payload (``ModelOwnerInput`` or ``DataOwnerInput``) plus the public ``SessionSpec`` both know.

What is encrypted, by whom:

- data owner: the candidates' features with a bias column (B, m, d + 1; padding rows are all zero
  and so contribute nothing) and their labels (B, m, C: one-hot, or the 0/1 label for a sigmoid
  model);
- model owner: theta_hat (d + 1, C); for influence v / n_seed; for gradient norm a public-size
  scale; for fine-tuning its training and test sets and its test loss at theta_hat; the
  threshold in bit mode.

Revealed to both: the B appraisal values, or only the B bits ``value > threshold``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from explorer.errors import ExplorerError
from explorer.mpc.crypten_compat import load_crypten

MODEL_OWNER = 0
DATA_OWNER = 1
# Fixed-point fractional bits; see the README on why not the paper's 24.
DEFAULT_PRECISION_BITS = 16


@dataclass(frozen=True)
class SessionSpec:
    """Public metadata both parties agree on before the session."""

    appraiser: str  # "influence" | "gradient-norm" | "finetune"
    n_features: int  # d
    n_outputs: int  # C
    sizes: tuple[int, ...]  # |D_a| of each candidate (padded to max(sizes))
    reveal: str = "value"  # "value" | "bit"
    precision_bits: int = DEFAULT_PRECISION_BITS
    n_train: int = 0  # fine-tuning: |D_tr| and |D_te|
    n_test: int = 0
    lr: float = 0.1
    steps: int = 16
    lam: float = 0.0
    return_shares: bool = False  # tests only: the data owner returns its shares of the secrets

    @property
    def n_candidates(self) -> int:
        return len(self.sizes)

    @property
    def size(self) -> int:
        return max(self.sizes)


@dataclass(frozen=True)
class ModelOwnerInput:
    theta: torch.Tensor  # (d + 1, C)
    weights: torch.Tensor | None = None  # influence: v / n_seed * weight_scale, (d + 1, C)
    weight_scale: float = 1.0  # a power of two, kept secret; undone inside MPC
    norm_scale: float = 1.0  # gradient norm: ||G|| is computed as scale * ||G / scale||
    threshold: float = 0.0  # bit mode
    X_train: torch.Tensor | None = None  # fine-tuning, (n_train, d)
    y_train: torch.Tensor | None = None
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    test_loss: float = 0.0  # fine-tuning: mean test loss at theta_hat


@dataclass(frozen=True)
class DataOwnerInput:
    X: torch.Tensor  # (B, m, d), rows beyond a candidate's size are ignored
    y: torch.Tensor  # (B, m)


@dataclass(frozen=True)
class PartyReport:
    """What a party returns: the revealed values and its own accounting."""

    values: torch.Tensor  # (B,) float64 values, or 0/1 bits
    seconds: float  # encrypted computation, this party's wall time
    bytes: int  # sent by this party
    rounds: int  # communication rounds of this party
    shares: dict = field(default_factory=dict)  # tests only


def pad_candidates(candidates: list[tuple[torch.Tensor, torch.Tensor]]) -> DataOwnerInput:
    """Candidates [(X (m_b, d), y (m_b,)), ...] -> one zero-padded batch (B, max m_b, d)."""
    m, d = max(len(y) for _, y in candidates), candidates[0][0].shape[1]
    X = torch.zeros(len(candidates), m, d, dtype=torch.float64)
    Y = torch.zeros(len(candidates), m, dtype=torch.int64)
    for b, (Xb, yb) in enumerate(candidates):
        X[b, :len(yb)], Y[b, :len(yb)] = torch.as_tensor(Xb), torch.as_tensor(yb)
    return DataOwnerInput(X, Y)


def ring_limit(precision_bits: int) -> float:
    """Largest magnitude a product may reach before a 64-bit fixed-point ring overflows."""
    return 2.0 ** (62 - 2 * precision_bits)


def check_fixed_point(name: str, tensor: torch.Tensor, bound: float, precision_bits: int,
                      what: str) -> None:
    """Refuse, before encryption, an input whose products could overflow the ring."""
    peak = float(tensor.abs().max()) if tensor.numel() else 0.0
    if not torch.isfinite(tensor).all():
        raise ExplorerError(f"the {name} contain NaN or infinite values; they cannot be "
                            f"encrypted.")
    if peak > bound:
        raise ExplorerError(
            f"the {name} reach {peak:.3g} ({what}), above {bound:.3g}, the most that "
            f"{precision_bits}-bit fixed point can hold without overflow; standardise or clip "
            f"the data, or use fewer precision bits.")


def with_bias(X: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """(B, m, d) -> (B, m, d + 1) with a bias column of ones on real rows, zeros on padding."""
    ones = torch.zeros(*X.shape[:-1], 1, dtype=X.dtype)
    for b, n in enumerate(sizes):
        ones[b, :n] = 1.0
        X[b, n:] = 0.0
    return torch.cat([X, ones], dim=-1)


def label_targets(y: torch.Tensor, n_outputs: int, sizes: tuple[int, ...] | None) -> torch.Tensor:
    """Labels (..., m) -> targets (..., m, C): the 0/1 label for C = 1, else one-hot."""
    if n_outputs == 1:
        Y = y.to(torch.float64)[..., None]
    else:
        Y = torch.nn.functional.one_hot(y.long(), n_outputs).to(torch.float64)
    if sizes is not None:
        for b, n in enumerate(sizes):
            Y[b, n:] = 0.0
    return Y


def data_owner_tensors(spec: SessionSpec, data: DataOwnerInput) -> tuple[torch.Tensor, ...]:
    """The data owner's plaintext tensors, checked against the ring before encryption."""
    A = with_bias(data.X.clone().to(torch.float64), spec.sizes)
    limit = ring_limit(spec.precision_bits)
    # G = A^T R with |R| <= 1: a column's absolute sum bounds every gradient entry
    check_fixed_point("candidate features", A.abs().sum(dim=1), limit, spec.precision_bits,
                      "summed over a candidate's samples")
    check_fixed_point("candidate features", A.norm(dim=-1), limit ** 0.5, spec.precision_bits,
                      "as a row norm, which bounds the logits")
    return A, label_targets(data.y, spec.n_outputs, spec.sizes)


def model_owner_checks(spec: SessionSpec, mo: ModelOwnerInput) -> None:
    limit = ring_limit(spec.precision_bits)
    check_fixed_point("model parameters", mo.theta.norm(dim=0), limit ** 0.5,
                      spec.precision_bits, "as a column norm, which bounds the logits")
    if mo.weights is not None:
        check_fixed_point("influence weights v / n_seed", mo.weights, 1.0, spec.precision_bits,
                          "after scaling, times gradient entries up to the ring's limit")
    for name, X in (("training features", mo.X_train), ("test features", mo.X_test)):
        if X is not None:
            check_fixed_point(f"model owner's {name}", X.abs().sum(dim=0) + len(X), limit,
                              spec.precision_bits, "summed over samples")


def _encrypt(crypten, tensor: torch.Tensor | None, shape: tuple[int, ...], src: int, rank: int):
    if rank == src:
        return crypten.cryptensor(tensor.to(torch.float64), src=src)
    # the other party only knows the public shape; CrypTen ignores the placeholder's content
    return crypten.cryptensor(torch.zeros(shape, dtype=torch.float64), src=src)


def _probabilities(Z, n_outputs: int):
    return Z.sigmoid() if n_outputs == 1 else Z.softmax(dim=-1)


def _gradient_sums(A, Y, theta, n_outputs: int):
    """Summed CE gradient of each candidate at theta: (B, m, d1), (B, m, C), (d1, C) -> (B, d1, C)
    (theta may also be per candidate, (B, d1, C))."""
    R = _probabilities(A.matmul(theta), n_outputs) - Y
    return A.transpose(1, 2).matmul(R)


def _reveal(crypten, x, precision_bits: int) -> torch.Tensor:
    """Decrypt to float64 (get_plain_text would round through float32)."""
    return x.reveal().to(torch.float64) / 2.0 ** precision_bits


def appraisal_party(rank: int, world_size: int, payload: dict) -> PartyReport:
    """The code each party runs. ``payload`` = {"spec": SessionSpec, "input": its own input}."""
    crypten = load_crypten()
    spec: SessionSpec = payload["spec"]
    do_src = DATA_OWNER if world_size > 1 else MODEL_OWNER
    mine = payload.get("input")
    mo = mine if rank == MODEL_OWNER else None
    B, m, d1, C = spec.n_candidates, spec.size, spec.n_features + 1, spec.n_outputs

    # checks and plaintext preparation happen before any communication
    A_plain = Y_plain = None
    if rank == do_src:
        data = payload["data"] if world_size == 1 else mine
        A_plain, Y_plain = data_owner_tensors(spec, data)
    if mo is not None:
        model_owner_checks(spec, mo)

    comm = crypten.communicator.get()
    if world_size > 1:
        _check_same_spec(comm, spec, rank)
    comm.reset_communication_stats()
    start = time.perf_counter()

    A = _encrypt(crypten, A_plain, (B, m, d1), do_src, rank)
    Y = _encrypt(crypten, Y_plain, (B, m, C), do_src, rank)
    theta = _encrypt(crypten, mo.theta if mo else None, (d1, C), MODEL_OWNER, rank)
    shares = {}

    if spec.appraiser == "influence":
        weights = _encrypt(crypten, mo.weights if mo else None, (d1, C), MODEL_OWNER, rank)
        unscale = _encrypt(crypten, torch.tensor([1.0 / mo.weight_scale]) if mo else None,
                           (1,), MODEL_OWNER, rank)
        G = _gradient_sums(A, Y, theta, C)
        value = G.reshape(B, d1 * C).matmul(weights.reshape(d1 * C)) * unscale
        if spec.return_shares:
            shares = {"theta": theta.share.clone(), "weights": weights.share.clone()}
    elif spec.appraiser == "gradient-norm":
        G = _gradient_sums(A, Y, theta, C)
        scale = mo.norm_scale if mo else 0.0
        inv_scale = _encrypt(crypten, torch.tensor([1.0 / scale]) if mo else None, (1,),
                             MODEL_OWNER, rank)
        scale_enc = _encrypt(crypten, torch.tensor([scale]) if mo else None, (1,), MODEL_OWNER,
                             rank)
        scaled = G.reshape(B, d1 * C) * inv_scale
        value = (scaled * scaled).sum(dim=1).sqrt() * scale_enc
    elif spec.appraiser == "finetune":
        value = _private_finetune(crypten, spec, A, Y, theta, mo, rank)
    else:
        raise ExplorerError(f"unknown private appraiser {spec.appraiser!r}.")

    if spec.reveal == "bit":
        threshold = _encrypt(crypten, torch.tensor([mo.threshold]) if mo else None, (1,),
                             MODEL_OWNER, rank)
        revealed = (value > threshold).get_plain_text().to(torch.float64).round()
    else:
        revealed = _reveal(crypten, value, spec.precision_bits)
    seconds = time.perf_counter() - start
    stats = comm.get_communication_stats()
    return PartyReport(values=revealed.reshape(B), seconds=seconds, bytes=int(stats["bytes"]),
                       rounds=int(stats["rounds"]), shares=shares)


def _check_same_spec(comm, spec: SessionSpec, rank: int) -> None:
    """Both parties must run the same session: exchange the public metadata and compare."""
    mine = dataclasses.asdict(spec)
    owner, data = (comm.broadcast_obj(mine if rank == r else None, r)
                   for r in (MODEL_OWNER, DATA_OWNER))
    differ = sorted(k for k in owner if owner[k] != data.get(k))
    if differ:
        raise ExplorerError(
            "the parties disagree on the session's public metadata ("
            + ", ".join(f"{k}: model owner {owner[k]!r}, data owner {data.get(k)!r}"
                        for k in differ) + "); start both with the same options.")


def _private_finetune(crypten, spec: SessionSpec, A, Y, theta, mo: ModelOwnerInput | None,
                      rank: int):
    """``steps`` full-batch gradient steps on D_tr ∪ D_a for every candidate, then the test-loss
    reduction (B,). The D_tr term of all B candidates is one matmul: theta is (d1, B * C)."""
    B, d1, C = spec.n_candidates, spec.n_features + 1, spec.n_outputs
    n_tr, n_te = spec.n_train, spec.n_test

    def plain(X, y, n):
        if mo is None:
            return None, None
        return (torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], dim=1),
                label_targets(y, C, None))

    A_tr_p, Y_tr_p = plain(mo.X_train, mo.y_train, n_tr) if mo else (None, None)
    A_te_p, Y_te_p = plain(mo.X_test, mo.y_test, n_te) if mo else (None, None)
    A_tr = _encrypt(crypten, A_tr_p, (n_tr, d1), MODEL_OWNER, rank)
    Y_tr = _encrypt(crypten, Y_tr_p, (n_tr, C), MODEL_OWNER, rank)
    A_te = _encrypt(crypten, A_te_p, (n_te, d1), MODEL_OWNER, rank)
    Y_te = _encrypt(crypten, Y_te_p, (n_te, C), MODEL_OWNER, rank)
    loss_before = _encrypt(crypten, torch.tensor([mo.test_loss]) if mo else None, (1,),
                           MODEL_OWNER, rank)

    totals = torch.tensor([n_tr + n for n in spec.sizes], dtype=torch.float64)  # public
    inv_n = (1.0 / totals)[:, None, None]
    decay = (spec.lam * n_tr / totals)[:, None, None] * torch.cat(
        [torch.ones(d1 - 1, C), torch.zeros(1, C)]).to(torch.float64)
    # every candidate starts from theta_hat: (B, d1, C)
    thetas = theta.unsqueeze(0).expand(B, d1, C) if hasattr(theta, "expand") else \
        crypten.stack([theta] * B)
    for _ in range(spec.steps):
        flat = thetas.permute(1, 0, 2).reshape(d1, B * C)
        P_tr = _probabilities(A_tr.matmul(flat).reshape(n_tr, B, C), C)
        R_tr = (P_tr - Y_tr.unsqueeze(1)).reshape(n_tr, B * C)
        G_tr = A_tr.t().matmul(R_tr).reshape(d1, B, C).permute(1, 0, 2)
        G_a = _gradient_sums(A, Y, thetas, C)
        thetas = thetas - ((G_tr + G_a) * inv_n + thetas * decay) * spec.lr

    flat = thetas.permute(1, 0, 2).reshape(d1, B * C)
    Z_te = A_te.matmul(flat).reshape(n_te, B, C)
    if C == 1:  # CE = -log_softmax([0, z])[y]
        Z_te = crypten.cat([Z_te * 0, Z_te], dim=2)
        Y_te = crypten.cat([1 - Y_te, Y_te], dim=1)
    log_p = Z_te.log_softmax(dim=2)
    loss_after = -(log_p * Y_te.unsqueeze(1)).sum(dim=2).sum(dim=0) / n_te  # (B,)
    return loss_before - loss_after
