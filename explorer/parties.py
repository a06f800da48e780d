"""Each party on its own machine: model owner, data owner and dealer started separately with
CrypTen's environment variables (RENDEZVOUS=tcp://host:port, WORLD_SIZE=2, RANK=0|1|2); with k
data owners, WORLD_SIZE=k+1, data owner j runs as RANK=j and the dealer as RANK=k+1.

The data owner never sees the model owner's data, only its public *encoding*: feature names and
order, the standardisation (mean and scale per feature), the classes, the sizes fine-tuning needs,
and the seed model's family and architecture (the data owner rebuilds the appraiser's definition
from them; parties on separate machines compare them before computing). The model owner writes it
with ``write_encoding``; the data owner reads it to bring its own raw features to the model's scale
before encrypting them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.batch import CandidateBatch, candidate_batch
from explorer.constraints import (
    ACTIVATIONS,
    CONSTRAINTS,
    DEFAULTS,
    MODELS,
    check_params,
    is_real,
    is_whole,
)
from explorer.errors import ExplorerError
from explorer.ledger import Ledger, fingerprint
from explorer.model import n_outputs
from explorer.mpc.keys import SessionKeyError, new_session_key
from explorer.mpc.options import MPCOptions
from explorer.mpc.protocol import (
    ModelOwnerInput,
    PartyReport,
    SessionSpec,
    appraisal_party,
    public_settings,
)
from explorer.mpc.rendezvous import run_dealer_from_env, run_party_from_env
from explorer.mpc.runner import PrivateRunner
from explorer.mpc.runs import LaunchError, role
from explorer.mpc.session import mpc_config
from explorer.output import write_atomic
from explorer.seed import AnySeed, SeedModel
from explorer.tasks import Task

# 2: the seed model's family, hidden widths and activation
ENCODING_FORMAT = "appraisal-explorer encoding 2"
ENV = ("RENDEZVOUS", "WORLD_SIZE", "RANK")


def encoding(task: Task, seed: AnySeed) -> dict:
    """The metadata both parties may know (DESIGN: samples, features, classes, encoding), and
    the seed model's family, hidden widths and activation (empty for the logistic model)."""
    network = not isinstance(seed, SeedModel)
    return {"format": ENCODING_FORMAT, "task": task.name,
            "feature_names": list(task.feature_names), "class_names": list(task.class_names),
            "mean": task.mean.tolist(), "scale": task.scale.tolist(),
            "n_outputs": n_outputs(seed.n_classes), "n_train": seed.n_seed,
            "n_test": len(seed.y_test), "lam": seed.lam, "family": seed.family,
            "hidden": list(seed.architecture.hidden) if network else [],
            "activation": seed.architecture.activation if network else ""}


def write_encoding(path: str | os.PathLike, enc: dict) -> None:
    write_atomic(path, lambda f: json.dump(enc, f, indent=1))


def _names(value, least: int) -> bool:
    return isinstance(value, list) and len(value) >= least \
        and all(isinstance(v, str) for v in value) and len(set(value)) == len(value)


def _numbers(value, d: int, positive: bool = False) -> bool:
    return isinstance(value, list) and len(value) == d \
        and all(is_real(v) and (v > 0 or not positive) for v in value)


# Each field of an encoding file and what it must hold, given the number of features d and
# classes K (checked in this order).
ENCODING_FIELDS = (
    ("format", f"the string {ENCODING_FORMAT!r}", lambda v, d, k: v == ENCODING_FORMAT),
    ("feature_names", "a list of distinct feature names", lambda v, d, k: _names(v, 1)),
    ("class_names", "a list of at least 2 distinct class names", lambda v, d, k: _names(v, 2)),
    ("mean", "a list of one finite number per feature", lambda v, d, k: _numbers(v, d)),
    ("scale", "a list of one positive number per feature",
     lambda v, d, k: _numbers(v, d, positive=True)),
    ("n_outputs", "1 for two classes, else the number of classes",
     lambda v, d, k: is_whole(v) and v == (1 if k == 2 else k)),
    ("n_train", "a positive integer", lambda v, d, k: is_whole(v) and v >= 1),
    ("n_test", "a positive integer", lambda v, d, k: is_whole(v) and v >= 1),
    ("lam", CONSTRAINTS["lam"].describe(), lambda v, d, k: CONSTRAINTS["lam"].ok(v)),
    ("family", f"one of {', '.join(MODELS)}", lambda v, d, k: v in MODELS),
    ("hidden", "a list of one or two hidden widths (empty for the logistic model)",
     lambda v, d, k: isinstance(v, list) and len(v) <= 2
     and all(CONSTRAINTS["hidden"].ok(h) for h in v)),
    ("activation", f"one of {', '.join(ACTIVATIONS)} (empty for the logistic model)",
     lambda v, d, k: v in ACTIVATIONS or v == ""),
)


def read_encoding(path: str | os.PathLike) -> dict:
    """Read and check an encoding file written by the model owner."""
    path = Path(path)
    again = "export it again with `appraisal-explorer export-encoding`"
    if path.is_dir():
        raise ExplorerError(f"{path} is a directory; name the encoding file (JSON) the model "
                            f"owner sent.")
    try:
        enc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExplorerError(f"encoding file {path} does not exist; ask the model owner for "
                            f"the file `appraisal-explorer export-encoding` writes.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExplorerError(f"{path} is not an encoding file ({exc}).") from None
    except OSError as exc:
        raise ExplorerError(f"cannot read the encoding file {path} ({exc.strerror}).") from None
    if not isinstance(enc, dict) or enc.get("format") != ENCODING_FORMAT:
        raise ExplorerError(f"{path} is not an encoding file of this version; {again}.")
    missing = [name for name, _, _ in ENCODING_FIELDS if name not in enc]
    if missing:
        raise ExplorerError(f"{path} is not an encoding file of this version (no "
                            f"{', '.join(missing)}); {again}.")
    names, classes = enc["feature_names"], enc["class_names"]
    d = len(names) if isinstance(names, list) else 0
    k = len(classes) if isinstance(classes, list) else 0
    for name, what, ok in ENCODING_FIELDS:
        if not ok(enc[name], d, k):
            raise ExplorerError(f"{path} is inconsistent: {name} must be {what}; {again}.")
    if (enc["family"] == "logistic") != (enc["hidden"] == [] and enc["activation"] == ""):
        raise ExplorerError(f"{path} is inconsistent: a {enc['family']} seed model "
                            f"{'has no' if enc['family'] == 'logistic' else 'needs its'} hidden "
                            f"widths and activation; {again}.")
    return enc


def check_environment(role: str, sellers: int | None = 1) -> int:
    """Refuse, before any networking, CrypTen's environment variables unfit for ``role``
    ("model owner", "data owner" or "dealer") in a session with ``sellers`` data owners (the
    dealer: None, any number); return this process's RANK."""
    example = {"model owner": 0, "data owner": 1}.get(role, (sellers or 1) + 1)
    missing = [k for k in ENV if k not in os.environ]
    if missing:
        raise ExplorerError(f"set {', '.join(missing)} for this party (e.g. "
                            f"RENDEZVOUS=tcp://10.0.0.1:29500 WORLD_SIZE={(sellers or 1) + 1} "
                            f"RANK={example}).")
    said = (f"the environment says RANK={os.environ['RANK']}, "
            f"WORLD_SIZE={os.environ['WORLD_SIZE']}")
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except ValueError:
        rank, world_size = -1, -1
    if role == "dealer":
        if world_size < 2 or rank != world_size:
            raise ExplorerError(f"the dealer runs as RANK equal to WORLD_SIZE (2 with one data "
                                f"owner, k + 1 with k), but {said}.")
    elif sellers == 1 or role == "model owner":
        want = 0 if role == "model owner" else 1
        if rank != want or world_size != sellers + 1:
            owners = f" (the model owner and {sellers} data owners)" if sellers > 1 else ""
            raise ExplorerError(f"this role runs as RANK={want} with WORLD_SIZE={sellers + 1}"
                                f"{owners}, but {said}.")
    elif world_size != sellers + 1 or not 1 <= rank <= sellers:
        raise ExplorerError(f"a data owner among {sellers} runs as RANK=1 to {sellers} with "
                            f"WORLD_SIZE={sellers + 1}, but {said}.")
    rendezvous = os.environ["RENDEZVOUS"]
    try:
        url = urlparse(rendezvous)
        port = url.port
    except ValueError:
        url, port = None, None
    if url is None or url.scheme != "tcp" or not (url.hostname and port):
        raise ExplorerError(f"RENDEZVOUS must be the model owner's address as "
                            f"tcp://host:port (e.g. tcp://10.0.0.1:29500), got {rendezvous!r}.")
    return rank


# Across machines a party silent this long has stopped or cannot be reached.
STALL_SECONDS = 45.0
KEY_ENV = "APPRAISAL_SESSION_KEY"


def write_session_key(path: str | os.PathLike) -> None:
    """Write a fresh random session key (64 hex digits) readable by its owner only."""
    key = new_session_key().hex()
    write_atomic(path, lambda f: f.write(key + "\n"), private=True)


def session_key(path: str | os.PathLike | None = None) -> bytes:
    """The session key shared out of band: from ``path`` (--session-key-file) or, without
    one, from the environment variable APPRAISAL_SESSION_KEY; 64 hex digits."""
    if path is not None:
        try:
            text = Path(path).read_text().strip()
        except OSError as exc:
            raise ExplorerError(f"cannot read the session key file {path} "
                                f"({exc.strerror}); check the path.") from None
        where = f"the session key file {path}"
    elif os.environ.get(KEY_ENV):
        text, where = os.environ[KEY_ENV].strip(), KEY_ENV
    else:
        raise ExplorerError(f"a party needs the session key shared out of band: "
                            f"`export-encoding --session-key-out FILE` writes one; pass it "
                            f"with --session-key-file FILE or {KEY_ENV}.")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ExplorerError(f"{where} is not a session key (64 hex digits, as "
                            f"`export-encoding --session-key-out` writes).")
    return key


def _session_error(exc: Exception, who: str) -> ExplorerError:
    """One sentence for a failed session, instead of gloo's text."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, (SessionKeyError, LaunchError)):
        return ExplorerError(text)
    if "imed out" in text or "imeout" in text:
        return ExplorerError(f"no answer from the other parties for {STALL_SECONDS:g} s: one "
                             f"of them stopped or cannot be reached; check that every party "
                             f"(the dealer too) runs and can reach RENDEZVOUS, then start them "
                             f"again.")
    if "closed" in text or "reset" in text or "Broken pipe" in text:
        return ExplorerError(f"another party ended the session while the {who} was computing; "
                             f"its own message says why.")
    return ExplorerError(f"the {who}'s session failed: {text}")


def _run(role_: str, spec: SessionSpec, payload, provider: str, key: bytes) -> PartyReport:
    rank = check_environment(role_, spec.sellers)
    try:
        return run_party_from_env(appraisal_party, {"spec": spec, "input": payload},
                                  config=mpc_config(spec.precision_bits, provider), key=key,
                                  settings=public_settings(spec), stall_timeout=STALL_SECONDS)
    except ExplorerError:
        raise
    except (RuntimeError, LaunchError) as exc:
        raise _session_error(exc, role(rank, spec.sellers + 1)) from exc


def _spend(role_: str, counterparty: str, mpc: MPCOptions, n: int) -> dict[str, int]:
    """Count this session in the party's own query ledger, or refuse it (before computing)."""
    revealed = {"bits" if mpc.bits else "values": n * (2 if mpc.verify else 1)}
    return Ledger().spend(role_, counterparty, mpc.budget, **revealed)


def _verified(appraiser: Appraiser, runner: PrivateRunner, report: PartyReport) -> PartyReport:
    """The report with only the first of the verified copies, or a clear failure."""
    ok = runner.verified(appraiser, report.values.numpy())
    if not ok.all():
        first = int(np.flatnonzero(~ok)[0])
        raise ExplorerError(
            f"the private {appraiser.name} value of candidate {first} could not be verified "
            f"({int((~ok).sum())} of {len(ok)} candidates: their two independently shared "
            f"copies disagreed or broke a bound every value obeys); start every party's process "
            f"again for fresh randomness, or use fewer precision bits.")
    return dataclasses.replace(report, values=report.values[0])


def _private(appraiser: Appraiser, runner: PrivateRunner) -> None:
    if not isinstance(runner, PrivateRunner) or runner.options.mode != "parties":
        raise ExplorerError("a party runs a private appraiser between real parties; build "
                            "its runner with backend crypten and mode parties.")
    runner.check(appraiser)


def _spec(public: Public, runner: PrivateRunner, blocks: tuple[int, ...] = ()) -> SessionSpec:
    mpc = dataclasses.replace(runner.options, sellers=len(blocks))
    mpc.check_defences(runner.defences)  # what several data owners cannot do
    return SessionSpec(public, reveal=mpc.reveal, precision_bits=mpc.precision_bits,
                       verify=mpc.verify, defences=runner.defences,
                       blocks=blocks if len(blocks) > 1 else ())


def _sellers_sizes(sizes) -> list[tuple[int, ...]]:
    """Every data owner's candidate sizes, in rank order: ``sizes`` is one data owner's list
    of whole numbers, or a list of such lists (one per data owner); checked."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
        raise ExplorerError(f"give the candidates' sizes as a list of whole numbers, e.g. "
                            f"(30, 30, 30), or one such list per data owner, got {sizes!r}.")
    groups = [tuple(sizes)] if not isinstance(sizes[0], Sequence) else [tuple(g) for g in sizes]
    check_params({"sellers": len(groups)})
    for group in groups:
        if not group:
            raise ExplorerError("every data owner holds at least one candidate; give each "
                                "data owner's sizes, e.g. (30, 30).")
        for n in group:
            check_params({"sizes": n})
    return groups


def run_model_owner(appraiser: Appraiser, runner: PrivateRunner, sizes, key: bytes
                    ) -> PartyReport:
    """Rank 0: enter the (fitted) appraiser's model-owner inputs, once, for candidates of the
    agreed ``sizes`` (a list of whole numbers; with several data owners, one such list per data
    owner, in rank order), with the runner's options and defences, in a session whose
    processes prove they hold ``key``. It learns every candidate's value."""
    _private(appraiser, runner)
    groups = _sellers_sizes(sizes)
    public = appraiser.public([n for group in groups for n in group])
    mpc = runner.options
    mo = ModelOwnerInput(appraiser.model_owner_inputs(public), threshold=mpc.threshold)
    _spend("model owner", fingerprint(key), mpc, public.n_candidates)
    spec = _spec(public, runner, tuple(len(g) for g in groups))
    return _verified(appraiser, runner, _run("model owner", spec, mo, mpc.provider, key))


def run_data_owner(enc: dict, appraiser: Appraiser, runner: PrivateRunner,
                   candidates: list[tuple[np.ndarray, np.ndarray]], key: bytes,
                   sellers_sizes: Sequence[Sequence[int]] = ()) -> PartyReport:
    """A data owner (rank 1; data owner j of several: RANK=j): standardise raw candidates with
    the model owner's encoding and enter them into a session of ``appraiser`` (unfitted: the
    data owner only knows its public definition), with the runner's options and defences.
    ``sellers_sizes``: with several data owners, every data owner's candidate sizes in rank
    order (public, agreed beforehand), its own among them. It learns its own values only."""
    _private(appraiser, runner)
    mean, scale = np.asarray(enc["mean"]), np.asarray(enc["scale"])
    standardised = [(torch.from_numpy((X - mean) / scale), torch.from_numpy(y))
                    for X, y in candidates]
    own = tuple(len(y) for _, y in candidates)
    groups = _sellers_sizes(sellers_sizes) if sellers_sizes else [own]
    if sellers_sizes:
        rank = check_environment("data owner", len(groups))
        if groups[rank - 1] != own:
            raise ExplorerError(f"data owner {rank}'s candidate files hold {own} samples, but "
                                f"the agreed sizes give it {groups[rank - 1]}; give --sizes in "
                                f"rank order, its own at position {rank}.")
    sizes = tuple(n for group in groups for n in group)
    if appraiser.family != enc["family"]:
        raise ExplorerError(f"the encoding's seed model is {enc['family']}, but the "
                            f"{appraiser.name} appraiser given is the {appraiser.family} "
                            f"family's; build it with AppraiserConfig.build(name, "
                            f"{enc['family']!r}).")
    public = Public(appraiser=appraiser.name, params=tuple(sorted(appraiser.params().items())),
                    n_features=len(enc["feature_names"]), n_outputs=enc["n_outputs"],
                    sizes=sizes, n_seed=enc["n_train"], n_test=enc["n_test"], lam=enc["lam"],
                    family=enc["family"], hidden=tuple(enc["hidden"]),
                    activation=enc["activation"])
    mpc = runner.options
    # the data owner knows the model owner by its encoding, which a fresh key does not change
    _spend("data owner", fingerprint(enc), mpc, len(candidates))
    # padded to the session's public m rows, like every data owner's block
    batch = candidate_batch(standardised, public.n_outputs)
    pad = public.size - batch.A.shape[1]
    batch = CandidateBatch(torch.nn.functional.pad(batch.A, (0, 0, 0, pad)),
                           torch.nn.functional.pad(batch.Y, (0, 0, 0, pad)), batch.sizes)
    spec = _spec(public, runner, tuple(len(g) for g in groups))
    return _verified(appraiser, runner, _run("data owner", spec, batch, mpc.provider, key))


def _rehearsal(rank: int, world_size: int, payload: dict) -> None:
    """The dealer's rehearsal of the session whose spec (plain data) the model owner sent."""
    appraisal_party(rank, world_size, {"spec": SessionSpec.from_plain(payload["spec"])})


def run_dealer(key: bytes) -> None:
    """Rank 2 (k + 1 with k data owners): deal multiplication triples (TTP) until the model
    owner ends the session, all of them ahead, from a rehearsal of the public spec the model
    owner sends; a session that fails makes the dealer fail too."""
    check_environment("dealer", None)
    try:
        run_dealer_from_env(config=mpc_config(DEFAULTS["precision_bits"], "TTP"), key=key,
                            stall_timeout=STALL_SECONDS, fn=_rehearsal)
    except (RuntimeError, LaunchError) as exc:
        raise _session_error(exc, "dealer") from exc
