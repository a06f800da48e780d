"""Greedy acquisition in one private session: K rounds of appraising, buying and refitting.

Each round the model owner appraises the candidates it has not bought with its current model,
buys the one of highest value and refits on its seed set plus everything bought so far
(explorer.utility.absorb, in the clear). One session serves every round (``acquisition_party``,
run by ``run_acquisition``), instead of one whole private session per round:

- the data owner enters its B candidates once: the features opened once under a dealt mask for
  every round and both verification copies (explorer.mpc.masked; encrypted once in simulated
  mode), the labels encrypted once;
- each round the model owner encrypts its inputs for its refitted model (the appraiser's
  ``model_owner_inputs``: for influence theta, weights and unscale), and the appraiser's own
  ``compute`` gives all B values, twice from independent sharings;
- only the values of the candidates not yet bought are revealed, to both parties, each twice
  (the two copies). A bought candidate is computed with the rest, so that the sequence of
  operations, and with it the dealer's deal, depends on the public B and K alone, but its value
  is not revealed: the model owner holds it in the clear and will not buy it again, so its value
  would tell neither party anything it needs, and revealing fewer values is better;
- the model owner picks the highest first copy among those, and sends the pick's position
  among the remaining candidates to the data owner (both keep the same list of them);
- the data owner hands the bought candidate over in the clear: it sends its rows (features and
  label targets, padded to the batch's public m rows; the candidate's size is public) to the
  model owner alone, which refits on them. It holds them in the clear, so this is one message
  on the parties' own group (CrypTen's main group: the dealer is not in it), not
  ``get_plain_text(dst=0)``, which would first have to secret-share them.

What each party learns each round: both, the remaining candidates' values (two copies) and the
pick; the model owner, the bought candidate's rows. The model owner's payload is its own
``SeedModel``: it refits in the clear between rounds, so its inputs of round r > 1 are not known
before the session, but their shapes are. B, K, the sizes and the appraiser are public: the
dealer rehearses the model owner's code on placeholders (picking the first remaining candidate
every round; the shapes are the same whichever is picked) and deals every round's triples
ahead (explorer.mpc.dealer).

Verification: the model owner checks each round's copies (``Appraiser.verified``); a round that
fails is reported, and ``run_acquisition``'s caller repeats the whole session (a wrong pick
would change every later round). Reveal defences (grid, noise, weight and row bounds) and bit
mode are refused: greedy acquisition needs the values themselves, and the defences are
calibrated per appraisal, not per sequence of them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from explorer.appraisers.base import Appraiser
from explorer.appraisers.batch import CandidateBatch, candidate_batch
from explorer.appraisers.reveal import Defences
from explorer.errors import ExplorerError
from explorer.ledger import Ledger
from explorer.mpc.crypten_compat import load_crypten
from explorer.mpc.options import MPCOptions
from explorer.mpc.protocol import (
    DATA_OWNER,
    MODEL_OWNER,
    ModelOwnerInput,
    PartyClock,
    PartyReport,
    SessionSpec,
    _encrypt,
    _reveal,
    candidate_inputs,
    check_data_owner_input,
    check_model_owner_input,
    definition,
)
from explorer.mpc.session import SessionResult, launch_session
from explorer.seed import SeedModel
from explorer.utility import absorb


@dataclass(frozen=True)
class AcquisitionReport(PartyReport):
    """A party's report of an acquisition session: ``values`` (K, copies, B) float64, NaN where
    a candidate was bought in an earlier round (not revealed); ``picks`` (K,) the candidate
    bought each round (index into the batch); ``verified`` (K,) whether the model owner found
    each round's revealed copies in agreement (True on the data owner: it checks nothing)."""

    picks: tuple[int, ...] = ()
    verified: tuple[bool, ...] = ()
    clear_seconds: float = 0.0  # of ``seconds``: the model owner's refits and inputs, in the clear


def _model_owner_round(spec: SessionSpec, current: SeedModel) -> tuple[Appraiser, ModelOwnerInput]:
    """The appraiser fitted to the model owner's current model and its checked inputs."""
    appraiser = definition(spec.public).fit(current)
    mo = ModelOwnerInput(appraiser.model_owner_inputs(spec.public))
    check_model_owner_input(spec, appraiser, mo)
    return appraiser, mo


def _bought(batch: CandidateBatch, b: int) -> torch.Tensor:
    """Candidate b's rows as the data owner hands them over: (m, d + 1 + C) features with the
    bias column and label targets, zero-padded to the batch's m rows."""
    return torch.cat([batch.A[b], batch.Y[b]], dim=-1)


def _unpack(rows: torch.Tensor, size: int, d: int, n_outputs: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The handed-over rows as the candidate (X (size, d), y (size,)) they came from."""
    X, Y = rows[:size, :d], rows[:size, d + 1:]
    y = Y[:, 0].round() if n_outputs == 1 else Y.argmax(dim=-1).to(torch.float64)
    return X, y


def acquisition_party(rank: int, world_size: int, payload: dict) -> AcquisitionReport | None:
    """The code each party runs. ``payload`` = {"spec": SessionSpec (the public of round 1),
    "rounds": K, "input": its own input}: the model owner's is its SeedModel, the data owner's
    its CandidateBatch (in simulated mode the model owner's payload also has "data": the
    batch). The dealer (rank == world_size) runs it with the spec and K alone, to rehearse."""

    if rank == world_size and payload.get("sequence"):
        from explorer.mpc.dealer import replay

        return replay(payload["sequence"])  # rehearsed before for this very spec and K
    crypten = load_crypten()
    spec: SessionSpec = payload["spec"]
    rounds: int = payload["rounds"]
    public = spec.public
    appraiser = definition(public)
    shapes = appraiser.model_owner_shapes(public)
    do_src = DATA_OWNER if world_size > 1 else MODEL_OWNER
    B, m, d1, C = public.n_candidates, public.size, public.d1, public.n_outputs
    copies = spec.copies
    mine = payload.get("input")
    current: SeedModel | None = mine if rank == MODEL_OWNER else None

    # checks happen before any communication: the batch, and the first round's inputs
    batch: CandidateBatch | None = None
    if rank == do_src:
        batch = payload["data"] if world_size == 1 else mine
        check_data_owner_input(spec, batch)
    fitted, mo = _model_owner_round(spec, current) if current is not None else (None, None)
    # the local dealer rehearses the payload itself, so the deal is asked for without the spec
    clock = PartyClock.open(crypten, rank, world_size, payload, None)
    comm = crypten.communicator.get()

    # the data owner's candidates enter once, for every round and both copies
    A, Y = candidate_inputs(crypten, batch, public, copies, do_src, rank)
    public_copies = dataclasses.replace(public, sizes=public.sizes * copies)

    remaining = list(range(B))
    values = torch.full((rounds, copies, B), float("nan"), dtype=torch.float64)
    picks: list[int] = []
    verified: list[bool] = []
    clear = 0.0
    for r in range(rounds):
        if r > 0 and current is not None:
            started = time.perf_counter()
            fitted, mo = _model_owner_round(spec, current)
            clear += time.perf_counter() - started
        inputs = {name: _encrypt(crypten, mo.inputs[name] if mo else None, shape, MODEL_OWNER,
                                 rank) for name, shape in sorted(shapes.items())}
        value = appraiser.compute(inputs, A, Y, public_copies)  # (copies * B,)
        # only the candidates not yet bought: a local selection of each party's shares
        keep = torch.tensor(remaining, dtype=torch.long)
        shown = _reveal(value.reshape(copies, B).index_select(1, keep), spec.precision_bits)
        values[r][:, keep] = shown
        position = torch.zeros(1, dtype=torch.long)  # the dealer's rehearsal buys the first
        if fitted is not None:  # the model owner, in the clear
            verified.append(bool(fitted.verified(shown.numpy(), False, 0.0,
                                                 spec.precision_bits).all()))
            position[0] = int(torch.argmax(shown[0]))
        else:
            verified.append(True)
        if world_size > 1:
            position = comm.broadcast(position, MODEL_OWNER)
        pick = remaining.pop(int(position.item()))
        picks.append(pick)
        if r == rounds - 1:
            break  # the last purchase needs no refit inside the session
        # the data owner hands the bought candidate over to the model owner, in the clear
        rows = _bought(batch, pick) if batch is not None else \
            torch.zeros(m, d1 + C, dtype=torch.float64)
        if world_size > 1:
            rows = comm.broadcast(rows, DATA_OWNER)  # two parties: to the model owner only
        if current is not None:
            started = time.perf_counter()
            X, y = _unpack(rows, public.sizes[pick], public.n_features, C)
            current = absorb(current, X, y)
            clear += time.perf_counter() - started
    if rank == world_size:  # the dealer's rehearsal ends here
        return None
    return AcquisitionReport(values=values, picks=tuple(picks), verified=tuple(verified),
                             clear_seconds=clear, **clock.close())


@dataclass(frozen=True)
class AcquisitionSession:
    """One acquisition session's outcome: ``picks`` (K,) batch indices in buying order,
    ``values`` (K, copies, B) as revealed (NaN: bought earlier), ``verified`` (K,), and its
    cost as a SessionResult (encrypted seconds, bytes, rounds, wall seconds: all K rounds;
    its encrypted seconds include ``clear_seconds``, the model owner's refits between rounds,
    which the data owner waits through)."""

    picks: tuple[int, ...]
    values: np.ndarray
    verified: tuple[bool, ...]
    result: SessionResult
    clear_seconds: float = 0.0


def acquisition_spec(appraiser: Appraiser, candidates: Sequence[tuple], options: MPCOptions
                     ) -> tuple[SessionSpec, CandidateBatch]:
    """The public spec (the first round's) and the data owner's batch for a fitted appraiser."""
    checked = appraiser.check_candidates(candidates)
    public = appraiser.public([len(y) for _, y in checked])
    spec = SessionSpec(public, reveal=options.reveal, precision_bits=options.precision_bits,
                       verify=options.verify)
    return spec, candidate_batch(checked, public.n_outputs)


def run_acquisition(seed: SeedModel, spec: SessionSpec, batch: CandidateBatch, rounds: int,
                    options: MPCOptions, cancel: threading.Event | None = None,
                    on_wait: Callable[[float, int, int], None] | None = None
                    ) -> AcquisitionSession:
    """One private session of ``rounds`` greedy purchases from ``batch`` by the model owner
    with ``seed`` (module docstring), in real party processes or simulated."""
    result = launch_session(acquisition_party, spec, seed, batch, mode=options.mode,
                            provider=options.provider, timeout=options.timeout, cancel=cancel,
                            on_wait=on_wait, what="acquisition", smaller="buy in fewer rounds",
                            extra={"rounds": rounds})
    mo = result.reports[MODEL_OWNER]  # the pick is broadcast: every party bought the same
    return AcquisitionSession(mo.picks, mo.values.numpy(), mo.verified, result,
                              mo.clear_seconds)


def check_acquisition(appraiser: Appraiser, options: MPCOptions, defences: Defences,
                      rounds: int, n: int) -> None:
    """Refuse settings a private greedy acquisition cannot run (one sentence)."""
    if appraiser.name != "influence":
        # the others enter the seed set itself, whose public size grows with every purchase
        # while the session's public settings are round 1's
        raise ExplorerError(f"private greedy acquisition buys by influence, not "
                            f"{appraiser.name}; appraise with influence.")
    if options.bits:
        raise ExplorerError("greedy acquisition buys the highest value, which a bit cannot "
                            "say; use reveal='value'.")
    if defences.active:
        raise ExplorerError("private greedy acquisition reveals the values without reveal "
                            "defences (grid, noise, weight or row bounds); turn them off.")
    if not 1 <= rounds <= n:
        raise ExplorerError(f"rounds must be between 1 and the number of candidates ({n}), "
                            f"got {rounds}.")


@dataclass(frozen=True)
class Acquisition:
    """A private greedy acquisition: ``picks`` (K,) candidate indices in buying order,
    ``values`` (K, B) each round's verified values (NaN: bought in an earlier round), and the
    cost of every session it took (``totals``: encrypted seconds "private", of which "refits"
    the model owner's refits in the clear between rounds, "bytes", "rounds", wall seconds
    "wall" including process start-up, "prep" seconds in the clear before the session,
    "sessions"; all summed over the K rounds, as one session holds them all)."""

    picks: tuple[int, ...]
    values: np.ndarray
    totals: dict
    sessions: tuple[SessionResult, ...]
    ledger_counts: dict | None = None


def acquire(appraiser: Appraiser, candidates: Sequence[tuple], rounds: int,
            options: MPCOptions, defences: Defences, ledger: tuple[Ledger | None, str],
            retries: int, cancel: threading.Event | None = None,
            on_wait: Callable[[float, int, int], None] | None = None) -> Acquisition:
    """Greedy acquisition of ``rounds`` candidates [(X, y), ...] by the model owner whose seed
    model ``appraiser`` is fitted to, in one private session with these options (called by
    explorer.mpc.runner.PrivateRunner.acquire, which gives its query ledger and counterparty
    and its number of retries). A session in which some round's copies disagree is repeated
    whole (fresh randomness), up to ``retries`` times; then the acquisition fails."""
    candidates = appraiser.check_candidates(candidates)
    check_acquisition(appraiser, options, defences, rounds, len(candidates))
    start = time.perf_counter()
    spec, batch = acquisition_spec(appraiser, candidates, options)
    prep = time.perf_counter() - start
    ledger, counterparty = ledger
    counts = None
    sessions: list[SessionResult] = []
    refits = 0.0
    B = len(candidates)
    for _ in range(retries + 1):
        if ledger is not None:  # both roles are played here: each counts what it reveals
            revealed = sum(B - r for r in range(rounds)) * spec.copies
            for role in ("model owner", "data owner"):
                counts = ledger.spend(role, counterparty, options.budget, values=revealed)
        session = run_acquisition(appraiser.seed_, spec, batch, rounds, options, cancel,
                                  on_wait)
        sessions.append(session.result)
        refits += session.clear_seconds
        if all(session.verified):
            break
    else:
        bad = session.verified.index(False) + 1
        raise ExplorerError(f"the private acquisition's round {bad} could not be verified in "
                            f"{retries + 1} sessions (its two independently shared copies "
                            f"disagreed); use fewer precision bits (16 is the default) or "
                            f"standardised features.")
    totals = {"private": sum(s.private_seconds for s in sessions), "refits": refits,
              "bytes": sum(s.bytes for s in sessions),
              "rounds": sum(s.rounds for s in sessions),
              "wall": sum(s.wall_seconds for s in sessions), "prep": prep,
              "sessions": len(sessions)}
    return Acquisition(session.picks, session.values[:, 0], totals, tuple(sessions), counts)
