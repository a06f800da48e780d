"""The private appraisal protocol: who inputs what, what is revealed, what is checked.

Parties: rank 0 is the model owner, rank 1 the data owner (rank 0 plays both in simulated mode,
world size 1); with k data owners (``SessionSpec.blocks``), data owner j is rank j, 1 <= j <= k,
and holds the j-th block of consecutive candidates of the batch (world size k + 1).
``appraisal_party`` is the code every party runs; each receives only its own payload plus the
public ``SessionSpec`` all know. The computation itself is the appraiser's own
``compute`` (explorer.appraisers), the very method that runs in plaintext, here on CrypTensors.

What is encrypted, by whom:

- data owner: the candidate batch, features with a bias column (B, m, d + 1; padding rows are
  all zero) and label targets (B, m, C);
- model owner: whatever the appraiser declares in ``model_owner_shapes`` (theta_hat always; v /
  n_seed for influence; its seed and test sets for fine-tuning and newton; its inverse seed
  Hessian for newton), and the threshold in bit mode.

Checked before anything is encrypted: each party's own inputs against the fixed-point ring and
the model owner's shapes against the appraiser's declaration; already checked by then: that
every process holds the session key (explorer.mpc.keys) and, across machines, that all agree
on the public settings (``public_settings``, explorer.mpc.rendezvous). Revealed to both: the B
appraisal values, or only the B bits ``value > threshold`` (with ``verify``, each twice: from
two independently shared copies, compared by explorer.mpc.runner). With k >= 2 data owners the
model owner's inputs are still entered once and every candidate computed in the one batch, but
the values (or bits) are opened to the model owner (all B) and to each data owner (its own
block only), never to another data owner (explorer.mpc.exchange.reduced_to); each comparison
of the batch takes one adder, each block re-shared between the model owner and its own data
owner (explorer.mpc.owned).

Opened along the way (masked, as Beaver's protocol does): with a dealer, the candidates'
features once per session, sent by the data owner (each data owner its own block) under a mask
it knows, for both copies (explorer.mpc.masked); then only the smaller operands of each
product. The dealer runs this same
function on the spec alone to rehearse the session and deal its triples ahead
(explorer.mpc.dealer); each party draws its own shares ahead when the spec ran before
(explorer.mpc.drawn).

With the public ``Defences`` (explorer.appraisers.reveal) the data owner clips its rows before
encrypting them; one bit, whether the model owner's weights respect the weight bound, is
revealed before anything else is computed (the session ends there if not); each party adds its
own encrypted noise to the values; and a grid reveals only multiples of its step, rounded
stochastically by the local truncation of 2-party CrypTen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from explorer import appraisers
from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.batch import CandidateBatch
from explorer.appraisers.fixed_point import check_dataset, check_fixed_point, ring_limit
from explorer.appraisers.reveal import (
    Defences,
    blur,
    clip_rows,
    grid_units,
    party_noise,
    refuse_weights,
    stochastic_round,
    weight_bound_bit,
)
from explorer.constraints import DEFAULTS
from explorer.errors import ExplorerError
from explorer.mpc.crypten_compat import load_crypten
from explorer.mpc.wire import wire_counter

MODEL_OWNER = 0
DATA_OWNER = 1


@dataclass(frozen=True)
class SessionSpec:
    """Public metadata both parties agree on before the session."""

    public: Public
    reveal: str = "value"  # "value" | "bit"
    precision_bits: int = DEFAULTS["precision_bits"]
    verify: bool = True  # compute every value twice, from independent sharings
    return_shares: bool = False  # tests only: each party returns its shares of the secrets
    defences: Defences = field(default_factory=Defences)  # public grid, noise, their bounds
    # candidates of each data owner, in rank order (consecutive blocks of the batch); () for
    # one data owner holding them all
    blocks: tuple[int, ...] = ()

    @property
    def copies(self) -> int:
        return 2 if self.verify else 1

    @property
    def sellers(self) -> int:
        """The number of data owners, k."""
        return max(len(self.blocks), 1)

    def owners(self, world_size: int) -> tuple[tuple[int, int], ...]:
        """(rank, candidates) of each data owner in a session of ``world_size`` processes
        (simulated mode, world size 1: rank 0 plays them all)."""
        counts = self.blocks or (self.public.n_candidates,)
        if world_size == 1:
            return ((MODEL_OWNER, self.public.n_candidates),)
        return tuple((DATA_OWNER + j, n) for j, n in enumerate(counts))

    def block(self, seller: int) -> slice:
        """Data owner ``seller``'s (1-based, its rank) candidates within the batch."""
        counts = self.blocks or (self.public.n_candidates,)
        start = sum(counts[:seller - 1])
        return slice(start, start + counts[seller - 1])

    def to_plain(self) -> dict:
        """The spec as nested dicts, tuples and Python numbers: what CrypTen's restricted
        unpickler lets a dealer read (it refuses the project's classes and numpy's scalars)."""
        def builtin(x):
            if isinstance(x, dict):
                return {k: builtin(v) for k, v in x.items()}
            if isinstance(x, (tuple, list)):
                return type(x)(builtin(v) for v in x)
            return x.item() if isinstance(x, np.generic) else x

        return builtin(dataclasses.asdict(self))

    @classmethod
    def from_plain(cls, plain: dict) -> SessionSpec:
        """The spec ``to_plain`` gave."""
        public = dict(plain["public"])
        public["params"] = tuple(tuple(pair) for pair in public["params"])
        public["sizes"] = tuple(public["sizes"])
        public["hidden"] = tuple(public.get("hidden", ()))
        return cls(**{**plain, "public": Public(**public),
                      "defences": Defences(**plain["defences"]),
                      "blocks": tuple(plain.get("blocks", ()))})


@dataclass(frozen=True)
class ModelOwnerInput:
    """The model owner's payload: its inputs by name (see the appraiser's declaration) and, in
    bit mode, its threshold."""

    inputs: dict[str, torch.Tensor]
    threshold: float = 0.0


@dataclass(frozen=True)
class PartyReport:
    """What a party returns: the revealed values and its own accounting."""

    # (copies, B) float64 values, or 0/1 bits; a data owner among several: (copies, its B_j)
    values: torch.Tensor
    seconds: float  # encrypted computation, this party's wall time
    bytes: int  # payload bytes this party sent on the wire (explorer.mpc.wire)
    rounds: int  # sequential communication rounds this party waited through
    shares: dict = field(default_factory=dict)  # tests only
    draws: tuple = ()  # what this party drew, in order (public: explorer.mpc.drawn)
    drawn_ahead: int = 0  # elements of it drawn before the clock started
    offline_seconds: float = 0.0  # from the party's start until its clock: the offline phase


def definition(public: Public) -> Appraiser:
    """The appraiser both parties run, rebuilt from the public family, name and
    hyper-parameters."""
    return appraisers.definition(public.family, public.appraiser, **dict(public.params))


def check_model_owner_input(spec: SessionSpec, appraiser: Appraiser, mo: ModelOwnerInput) -> None:
    """The model owner's inputs have the declared shapes and fit the fixed-point ring."""
    declared = appraiser.model_owner_shapes(spec.public)
    given = {k: tuple(v.shape) for k, v in mo.inputs.items()}
    if given != declared:
        raise ExplorerError(f"the model owner's inputs {given} differ from what the "
                            f"{spec.public.appraiser} appraiser declares ({declared}).")
    appraiser.check_fixed_point(mo.inputs, spec.precision_bits)
    if spec.reveal == "bit":
        check_fixed_point("threshold", torch.tensor([mo.threshold]),
                          ring_limit(spec.precision_bits), spec.precision_bits,
                          "compared with the values")


def check_data_owner_input(spec: SessionSpec, batch: CandidateBatch, seller: int = 1,
                           world_size: int = 2) -> None:
    """Data owner ``seller``'s (its rank) batch has the shapes and sizes of its block (the
    whole batch for one data owner, or in simulated mode) and fits the fixed-point ring."""
    public = spec.public
    block = spec.block(seller) if world_size > 1 else slice(0, public.n_candidates)
    sizes = public.sizes[block]
    want = (len(sizes), public.size, public.d1)
    if tuple(batch.A.shape) != want or batch.sizes != sizes:
        raise ExplorerError(f"the candidate batch has shape {tuple(batch.A.shape)} and sizes "
                            f"{batch.sizes}, but the session expects {want} and "
                            f"{sizes}.")
    check_dataset("candidate features", batch.A, spec.precision_bits)


def _encrypt(crypten, tensor: torch.Tensor | None, shape: tuple[int, ...], src: int, rank: int):
    if rank == src:
        return crypten.cryptensor(tensor.to(torch.float64), src=src)
    # the other party only knows the public shape; CrypTen ignores the placeholder's content
    return crypten.cryptensor(torch.zeros(shape, dtype=torch.float64), src=src)


def _reveal(x, precision_bits: int) -> torch.Tensor:
    """Decrypt to float64 (get_plain_text would round through float32)."""
    return x.reveal().to(torch.float64) / 2.0 ** precision_bits


def candidate_inputs(crypten, batch: CandidateBatch | None, public: Public, copies: int,
                     src: int | tuple[tuple[int, int], ...], rank: int) -> tuple:
    """The data owner's candidates as every party holds them: features A (copies x B, m, d1)
    and label targets Y (copies x B, m, C). Each copy's shares are drawn afresh: a truncation
    failure, which depends on the shares' randomness, almost never strikes both copies alike.
    The features are opened once for all their products and every copy (explorer.mpc.masked)
    when the dealer deals masks. ``batch`` is None on every party but ``src``. With several
    data owners, ``src`` is their (rank, candidates) in order (``SessionSpec.owners``): each
    enters its own consecutive block of the batch, ``batch`` being its own."""
    from explorer.mpc import masked

    B, m, d1, C = public.n_candidates, public.size, public.d1, public.n_outputs
    if not isinstance(src, int):  # several data owners, each its own block
        if masked.opens_once():
            A = masked.opened_input(batch.A if batch else None, (B, m, d1), src, copies)
        else:
            A = crypten.cat([crypten.cat([_encrypt(crypten, batch.A if batch else None,
                                                   (n, m, d1), owner, rank)
                                          for owner, n in src]) for _ in range(copies)])
        Y = crypten.cat([crypten.cat([_encrypt(crypten, batch.Y if batch else None,
                                               (n, m, C), owner, rank) for owner, n in src])
                         for _ in range(copies)])
        return A, Y
    if masked.opens_once():
        A = masked.opened_input(batch.A if batch else None, (B, m, d1), src, copies)
    else:
        A = crypten.cat([_encrypt(crypten, batch.A if batch else None, (B, m, d1), src, rank)
                         for _ in range(copies)])
    Y = crypten.cat([_encrypt(crypten, batch.Y if batch else None, (B, m, C), src, rank)
                     for _ in range(copies)])
    return A, Y


def _revealed_to_owners(x, spec: SessionSpec, rank: int, world_size: int) -> torch.Tensor:
    """Several data owners: ``x`` (copies x B) opened to the model owner whole and to each data
    owner its own block only, in one round (explorer.mpc.exchange.reduced_to); this party's
    part, decoded in float64 ((copies, B) on the model owner, (copies, B_j) on data owner j)."""
    comm = load_crypten().communicator.get()
    share = x._tensor.share.reshape(spec.copies, spec.public.n_candidates)
    parts = [(MODEL_OWNER, share)] + [(owner, share[:, spec.block(owner)])
                                      for owner, _ in spec.owners(world_size)]
    mine = comm.reduced_to(parts)[rank]
    return mine.to(torch.float64) / x.encoder.scale


@dataclass
class PartyClock:
    """A party's offline phase and clock in one session: its dealt-ahead client (the model
    owner's, with TTP), its draws made ahead or recorded (explorer.mpc.drawn), its wire counter
    (None when one process plays both parties) and when its clock started."""

    dealt: object | None
    draws: object | None
    wire: object | None
    before: dict
    start: float

    @classmethod
    def open(cls, crypten, rank: int, world_size: int, payload: dict,
             deal_spec: dict | None) -> PartyClock:
        """Install the dealt-ahead provider and ask for the deal (``deal_spec``: the public
        spec the dealer rehearses, or None when it rehearses the payload itself), start this
        party's draws, and start the clock: a spec run before has its offline phase (the deal,
        each party's draws) end before the clock starts (the model owner holds the whole deal,
        which the dealer replays fast), and one exchange starts both parties' clocks together;
        else the dealer's generation would compete with the parties for the cores (the wall
        time has it all). A first session streams instead: its dealer rehearses meanwhile."""
        from explorer.mpc import dealt as dealt_ahead
        from explorer.mpc import drawn

        dealt = None
        if crypten.mpc.ttp_required():
            dealt_ahead.install()
            if rank == MODEL_OWNER:
                dealt = dealt_ahead.expect_deal(deal_spec)
        # a party's own shares of the correlated randomness: drawn ahead from the record of an
        # earlier session of this spec (while the deal arrives), or recorded for the next one
        draws = drawn.start(drawn.session_generators(), payload.get("draws")) \
            if world_size > 1 and rank < world_size else None
        # one process plays both parties in simulated mode: nothing goes on a wire. The count
        # is read, not reset, so that whatever else this process counts (a dealer) keeps its own
        wire = wire_counter() if world_size > 1 else None
        if crypten.mpc.ttp_required() and world_size > 1 and rank < world_size:
            if dealt is not None and payload.get("offline"):
                dealt.wait_for_deal()
            crypten.communicator.get().all_reduce(torch.zeros(1, dtype=torch.long))
        before = wire.snapshot() if wire is not None else {"bytes": 0, "rounds": 0}
        return cls(dealt, draws, wire, before, time.perf_counter())

    def close(self) -> dict:
        """Check the deal and the draws were used up exactly; this party's seconds since its
        clock started, bytes and rounds on the wire, and its draws (for the next session)."""
        from explorer.mpc import drawn

        if self.dealt is not None:
            self.dealt.check_used_up()
        if self.draws is not None:
            self.draws.check_used_up()
            drawn.stop()
        seconds = time.perf_counter() - self.start
        after = self.wire.snapshot() if self.wire is not None else self.before
        return {"seconds": seconds, "bytes": after["bytes"] - self.before["bytes"],
                "rounds": after["rounds"] - self.before["rounds"],
                "draws": tuple(self.draws.log) if self.draws is not None else (),
                "drawn_ahead": self.draws.drawn_ahead if self.draws is not None else 0}


def appraisal_party(rank: int, world_size: int, payload: dict) -> PartyReport | None:
    """The code each party runs. ``payload`` = {"spec": SessionSpec, "input": its own input}
    (in simulated mode also "data": the candidate batch). The dealer (rank == world_size) runs
    it with the spec alone: its rehearsal of the model owner's part (explorer.mpc.dealer)."""

    from explorer.mpc.owned import owned_rows

    entered = time.perf_counter()
    if rank == world_size and payload.get("sequence"):
        from explorer.mpc.dealer import replay

        return replay(payload["sequence"])  # rehearsed before for this very spec
    crypten = load_crypten()
    spec: SessionSpec = payload["spec"]
    public = spec.public
    appraiser = definition(public)
    shapes = appraiser.model_owner_shapes(public)
    do_src = DATA_OWNER if world_size > 1 else MODEL_OWNER
    owners = spec.owners(world_size)
    several = len(owners) > 1  # data owners, each learning its own block only
    if several and spec.defences.grid > 0:
        raise ExplorerError("the grid rounds by two-party CrypTen's local truncation, which "
                            "several data owners do not have; drop the grid.")
    if world_size > 1 and world_size != len(owners) + 1:
        raise ExplorerError(f"the session has {len(owners)} data owner"
                            f"{'s' if len(owners) > 1 else ''}, so it runs with world size "
                            f"{len(owners) + 1}, not {world_size}.")
    mine = payload.get("input")
    mo: ModelOwnerInput | None = mine if rank == MODEL_OWNER else None
    B = public.n_candidates

    # checks happen before any communication
    batch: CandidateBatch | None = None
    if any(rank == owner for owner, _ in owners):
        batch = payload["data"] if world_size == 1 else mine
        check_data_owner_input(spec, batch, rank, world_size)
        batch = dataclasses.replace(batch, A=clip_rows(batch.A, spec.defences.row_bound))
    if mo is not None:
        check_model_owner_input(spec, appraiser, mo)
    clock = PartyClock.open(crypten, rank, world_size, payload, spec.to_plain())

    copies = spec.copies
    A, Y = candidate_inputs(crypten, batch, public, copies, owners if several else do_src,
                            rank)
    inputs = {name: _encrypt(crypten, mo.inputs[name] if mo else None, shape, MODEL_OWNER, rank)
              for name, shape in sorted(shapes.items())}
    defences = spec.defences
    if defences.weight_bound is not None:
        bit = weight_bound_bit(appraiser, inputs, public, defences.weight_bound).get_plain_text()
        # the dealer's rehearsal (rank == world_size) opens placeholders: only the parties decide
        if rank < world_size and bit.item() != 1:
            raise refuse_weights(defences.weight_bound)  # one bit, before any value exists
    # several data owners: each block's comparisons between the model owner and its owner
    with owned_rows(owners, copies) if several else contextlib.nullcontext():
        value = appraiser.compute(inputs, A, Y,
                                  dataclasses.replace(public, sizes=public.sizes * copies))
    if defences.noise > 0:
        # each party's own draw, entered as its own input; both copies carry the same noise
        # (several data owners: each draws the noise of its own block)
        sources = (MODEL_OWNER, DATA_OWNER) if world_size > 1 else (MODEL_OWNER, MODEL_OWNER)
        noises = [_encrypt(crypten, party_noise(B, defences.noise) if rank == src else None,
                           (B,), src, rank) for src in sources[:1 if several else 2]]
        if several:
            noises.append(crypten.cat([_encrypt(
                crypten, party_noise(n, defences.noise) if rank == owner else None, (n,),
                owner, rank) for owner, n in owners]))
        value = blur(value, [crypten.cat([n] * copies) for n in noises])

    if several:  # each data owner learns its own block only (no grid: MPCOptions)
        if spec.reveal == "bit":
            threshold = _encrypt(crypten, torch.tensor([mo.threshold]) if mo else None, (1,),
                                 MODEL_OWNER, rank)
            with owned_rows(owners, copies):
                value = value > threshold
        if rank == world_size:  # the dealer's rehearsal ends here: an opening needs no deal
            return None
        revealed = _revealed_to_owners(value, spec, rank, world_size)
        if spec.reveal == "bit":
            revealed = revealed.round()
    elif defences.grid > 0:  # value mode only (MPCOptions)
        y = grid_units(value, defences.grid)
        if world_size > 1:
            # the shares' local truncation by 2^b is stochastic rounding to an integer
            k = y.div(2 ** spec.precision_bits).reveal().to(torch.float64)
        else:
            # one process plays both parties: it draws the same rounding itself
            k = stochastic_round(_reveal(y, spec.precision_bits))
        revealed = k * defences.grid
    elif spec.reveal == "bit":
        threshold = _encrypt(crypten, torch.tensor([mo.threshold]) if mo else None, (1,),
                             MODEL_OWNER, rank)
        revealed = (value > threshold).get_plain_text().to(torch.float64).round()
    else:
        revealed = _reveal(value, spec.precision_bits)
    if rank == world_size:  # the dealer's rehearsal ends here
        return None
    shares = {k: v.share.clone() for k, v in inputs.items()} if spec.return_shares else {}
    return PartyReport(values=revealed.reshape(copies, -1), shares=shares,
                       offline_seconds=clock.start - entered, **clock.close())


def public_settings(spec: SessionSpec) -> dict:
    """The spec as one level of names (the public fields and the appraiser's hyper-parameters),
    which parties on separate machines compare before computing."""
    def flat(d: dict) -> dict:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v))
            elif k == "params":
                out.update(dict(v))
            elif k != "return_shares":
                out[k] = v
        return out

    return flat(dataclasses.asdict(spec))
