"""Each party on its own machine: model owner, data owner and dealer started separately with
CrypTen's environment variables (RENDEZVOUS=tcp://host:port, WORLD_SIZE=2, RANK=0|1|2).

The data owner never sees the model owner's data, only its public *encoding*: feature names and
order, the standardisation (mean and scale per feature), the classes, and the sizes fine-tuning
needs. The model owner writes it with ``write_encoding``; the data owner reads it to bring its own
raw features to the model's scale before encrypting them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from explorer.appraisers.base import Appraiser, Public
from explorer.appraisers.batch import candidate_batch
from explorer.appraisers.config import DEFAULT_PRECISION_BITS
from explorer.errors import ExplorerError
from explorer.mpc.launcher import MPCLaunchError, run_dealer_from_env, run_party_from_env
from explorer.mpc.protocol import (
    ModelOwnerInput,
    PartyReport,
    SessionSpec,
    appraisal_party,
)
from explorer.mpc.session import mpc_config
from explorer.output import write_atomic
from explorer.seed import SeedModel
from explorer.tasks import Task

ENCODING_FORMAT = "appraisal-explorer encoding 1"
ENV = ("RENDEZVOUS", "WORLD_SIZE", "RANK")


def encoding(task: Task, seed: SeedModel) -> dict:
    """The metadata both parties may know (DESIGN: samples, features, classes, encoding)."""
    return {"format": ENCODING_FORMAT, "task": task.name,
            "feature_names": list(task.feature_names), "class_names": list(task.class_names),
            "mean": task.mean.tolist(), "scale": task.scale.tolist(),
            "n_outputs": int(seed.theta.shape[1]), "n_train": seed.n_seed,
            "n_test": len(seed.y_test), "lam": seed.lam}


def write_encoding(path: str | os.PathLike, enc: dict) -> None:
    write_atomic(path, lambda f: json.dump(enc, f, indent=1))


def read_encoding(path: str | os.PathLike) -> dict:
    """Read and check an encoding file written by the model owner."""
    try:
        enc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ExplorerError(f"encoding file {path} does not exist; ask the model owner for "
                            f"the file `appraisal-explorer export-encoding` writes.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExplorerError(f"{path} is not an encoding file ({exc}).") from exc
    needed = {"format", "feature_names", "class_names", "mean", "scale", "n_outputs",
              "n_train", "n_test", "lam"}
    if not isinstance(enc, dict) or enc.get("format") != ENCODING_FORMAT or needed - set(enc):
        raise ExplorerError(f"{path} is not an encoding file of this version; export it again "
                            f"with `appraisal-explorer export-encoding`.")
    d = len(enc["feature_names"])
    if len(enc["mean"]) != d or len(enc["scale"]) != d or min(enc["scale"]) <= 0:
        raise ExplorerError(f"{path} is inconsistent: {d} features but {len(enc['mean'])} "
                            f"means and {len(enc['scale'])} scales.")
    return enc


def _check_env(rank: int) -> None:
    missing = [k for k in ENV if k not in os.environ]
    if missing:
        raise ExplorerError(f"set {', '.join(missing)} for this party (e.g. "
                            f"RENDEZVOUS=tcp://10.0.0.1:29500 WORLD_SIZE=2 RANK={rank}).")
    if os.environ["RANK"] != str(rank) or os.environ["WORLD_SIZE"] != "2":
        raise ExplorerError(f"this role runs as RANK={rank} with WORLD_SIZE=2, but the "
                            f"environment says RANK={os.environ['RANK']}, "
                            f"WORLD_SIZE={os.environ['WORLD_SIZE']}.")


def _run(rank: int, spec: SessionSpec, payload, provider: str, timeout: float) -> PartyReport:
    _check_env(rank)
    try:
        return run_party_from_env(appraisal_party, {"spec": spec, "input": payload},
                                  config=mpc_config(spec.precision_bits, provider),
                                  collective_timeout=timeout)
    except ExplorerError:
        raise
    except (RuntimeError, MPCLaunchError) as exc:
        raise ExplorerError(f"the private session failed: {str(exc).splitlines()[0]}") from exc


def _private(appraiser: Appraiser) -> None:
    if appraiser.backend != "crypten" or appraiser.mpc.mode != "parties":
        raise ExplorerError("a party runs a private appraiser between real parties; build it "
                            "with backend crypten and mode parties.")


def run_model_owner(appraiser: Appraiser, sizes: tuple[int, ...]) -> PartyReport:
    """Rank 0: enter the (fitted) appraiser's model-owner inputs for candidates of the agreed
    ``sizes``."""
    _private(appraiser)
    if not sizes or min(sizes) < 1:
        raise ExplorerError("give the candidates' sizes, e.g. --sizes 30,30,30.")
    public = appraiser.public(sizes)
    mpc = appraiser.mpc
    spec = SessionSpec(public, reveal=mpc.reveal, precision_bits=mpc.precision_bits)
    mo = ModelOwnerInput(appraiser.model_owner_inputs(public), threshold=mpc.threshold)
    return _run(0, spec, mo, mpc.provider, mpc.timeout)


def run_data_owner(enc: dict, appraiser: Appraiser,
                   candidates: list[tuple[np.ndarray, np.ndarray]]) -> PartyReport:
    """Rank 1: standardise raw candidates with the model owner's encoding and enter them into
    a session of ``appraiser`` (unfitted: the data owner only knows its public definition)."""
    _private(appraiser)
    mean, scale = np.asarray(enc["mean"]), np.asarray(enc["scale"])
    standardised = [(torch.from_numpy((X - mean) / scale), torch.from_numpy(y))
                    for X, y in candidates]
    public = Public(appraiser=appraiser.name, params=tuple(sorted(appraiser.params().items())),
                    n_features=len(enc["feature_names"]), n_outputs=enc["n_outputs"],
                    sizes=tuple(len(y) for _, y in candidates), n_seed=enc["n_train"],
                    n_test=enc["n_test"], lam=enc["lam"])
    mpc = appraiser.mpc
    spec = SessionSpec(public, reveal=mpc.reveal, precision_bits=mpc.precision_bits)
    return _run(1, spec, candidate_batch(standardised, public.n_outputs), mpc.provider,
                mpc.timeout)


def run_dealer(timeout: float = 600.0) -> None:
    """Rank 2: deal multiplication triples (TTP) until the model owner ends the session."""
    missing = [k for k in ENV if k not in os.environ]
    if missing or os.environ["RANK"] != "2":
        raise ExplorerError("the dealer runs with WORLD_SIZE=2 and RANK=2 beside the two "
                            "parties' RENDEZVOUS.")
    try:
        run_dealer_from_env(config=mpc_config(DEFAULT_PRECISION_BITS, "TTP"),
                            collective_timeout=timeout)
    except (RuntimeError, MPCLaunchError) as exc:
        raise ExplorerError(f"the dealer failed: {str(exc).splitlines()[0]}") from exc
