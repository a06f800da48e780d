"""Who held, encrypted, sent and learned what in an appraiser's private sessions: the account
the command line prints and the dashboard's party view draws, never recomputed there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from explorer.appraisers.base import Appraiser
from explorer.constraints import PROVIDERS
from explorer.mpc.options import MPCOptions
from explorer.mpc.protocol import SessionSpec
from explorer.mpc.session import SessionResult


@dataclass(frozen=True)
class SessionAccount:
    """Who held, encrypted, sent and learned what in an appraiser's private sessions: the public
    spec both parties agreed on, the inputs each party encrypted (name -> shape, each sharing),
    per party its bytes sent on the wire, rounds and encrypted seconds summed over the sessions
    (a run is repeated for candidates whose copies disagree; the dealer: its bytes only, its
    rounds being the model owner's requests), the values or bits revealed (to both parties),
    and the triple provider actually used."""

    spec: SessionSpec
    mode: str  # "parties" | "simulated"
    provider: str  # "TTP" | "TFP"
    threshold: float | None  # the model owner's, encrypted in bit mode
    model_owner_encrypted: dict[str, tuple[int, ...]]
    data_owner_encrypted: dict[str, tuple[int, ...]]
    party_bytes: dict[str, int]
    party_rounds: dict[str, int]
    party_seconds: dict[str, float]
    revealed: int  # values or bits revealed to both parties, over all sessions
    sessions: int

    @property
    def unit(self) -> str:
        return "bits" if self.spec.reveal == "bit" else "values"

    def lines(self) -> list[str]:
        """The account as text, one line per lane (the command line prints these)."""
        def shapes(named: dict[str, tuple[int, ...]]) -> str:
            return ", ".join(f"{k} {tuple(v)}" for k, v in named.items())

        # the dealer's rounds are the model owner's requests, already in its count
        sent = "; ".join(f"{who} {self.party_bytes[who] / 1e6:.2f} MB"
                         + (f", {self.party_rounds[who]} rounds" if who in self.party_rounds
                            else "") for who in self.party_bytes)
        return [f"model owner encrypts {shapes(self.model_owner_encrypted)}",
                f"data owner encrypts {shapes(self.data_owner_encrypted)}",
                f"sent: {sent} ({self.mode}, {self.sessions} session"
                f"{'s' if self.sessions > 1 else ''})",
                f"provider {self.provider}: {PROVIDERS[self.provider]}",
                f"revealed to both: {self.revealed} {self.unit}"]


def _encrypted(spec: SessionSpec, appraiser: Appraiser, masked_once: bool
               ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Each party's encrypted inputs by name and shape, as explorer.mpc.protocol shares them:
    every copy shared afresh, except the features when ``masked_once`` (two parties with the
    dealer: masked and sent once for every copy, explorer.mpc.masked)."""
    public = spec.public
    mo = dict(sorted(appraiser.model_owner_shapes(public).items()))
    if spec.reveal == "bit":
        mo["threshold"] = (1,)
    B, m = public.n_candidates, public.size
    copies = f" ×{spec.copies}" if spec.copies > 1 else ""
    features = "candidate features A" + (
        (f", masked once for {spec.copies} copies" if spec.copies > 1 else ", masked once")
        if masked_once else copies)
    do = {features: (B, m, public.d1),
          f"candidate labels Y{copies}": (B, m, public.n_outputs)}
    if spec.defences.noise > 0:  # each party's own draw, one per value, before the reveal
        mo["noise"] = do["noise"] = (B,)
    return mo, do


def session_account(appraiser: Appraiser, options: MPCOptions, spec: SessionSpec,
                    results: Sequence[SessionResult]) -> SessionAccount:
    """The account of an appraiser's sessions with these options (``results``, the first with
    ``spec``)."""
    roles = ("model owner", "data owner") if options.mode == "parties" else \
        ("both (one process)",)
    party_bytes = dict.fromkeys(roles, 0)
    party_rounds = dict.fromkeys(roles, 0)
    party_seconds = dict.fromkeys(roles, 0.0)
    for result in results:
        for who, report in zip(roles, result.reports, strict=True):
            party_bytes[who] += report.bytes
            party_rounds[who] += report.rounds
            party_seconds[who] += report.seconds
    if any(r.dealer_bytes for r in results):  # the dealer sends too: its bytes count
        party_bytes["dealer"] = sum(r.dealer_bytes for r in results)
    mo, do = _encrypted(spec, appraiser,
                        masked_once=options.mode == "parties" and options.provider == "TTP")
    return SessionAccount(
        spec=spec, mode=options.mode, provider=options.provider,
        threshold=options.threshold if spec.reveal == "bit" else None,
        model_owner_encrypted=mo, data_owner_encrypted=do, party_bytes=party_bytes,
        party_rounds=party_rounds, party_seconds=party_seconds,
        revealed=sum(r.values.size for r in results), sessions=len(results))
