"""Who held, encrypted, sent and learned what in an appraiser's private sessions: the account
the command line prints and the dashboard's party view draws, never recomputed there."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from explorer.appraisers.base import Appraiser
from explorer.constraints import PROVIDERS
from explorer.mpc.options import MPCOptions
from explorer.mpc.protocol import SessionSpec
from explorer.mpc.session import SessionResult


@dataclass(frozen=True)
class SellerAccount:
    """One data owner's part in an appraiser's sessions between real parties: its candidates
    (indices in the run), what it encrypted (name -> shape, in its first session), its bytes
    sent, rounds and encrypted seconds summed over its sessions, and what it learned: the
    values or bits its own process received (``learned``, counted from its reports) and whose
    (``learned_candidates``)."""

    name: str  # "data owner", or "data owner j" among several
    candidates: tuple[int, ...]
    encrypted: dict[str, tuple[int, ...]]
    bytes: int
    rounds: int
    seconds: float
    learned: int
    learned_candidates: tuple[int, ...]


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
    # each data owner's part (real parties); several when the candidates were split among them
    sellers: tuple[SellerAccount, ...] = ()
    model_owner_learned: int = 0  # values or bits the model owner's process received

    @property
    def unit(self) -> str:
        return "bits" if self.spec.reveal == "bit" else "values"

    def lines(self) -> list[str]:
        """The account as text, one line per lane (the command line prints these)."""
        def shapes(named: dict[str, tuple[int, ...]]) -> str:
            return ", ".join(f"{k} {tuple(v)}" for k, v in named.items())

        if len(self.sellers) > 1:
            return self._several_lines(shapes)
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

    def _several_lines(self, shapes) -> list[str]:
        """The lines of a run whose candidates were split among several data owners: one per
        data owner, what it encrypted and what it learned."""
        sent = "; ".join(f"{who} {self.party_bytes[who] / 1e6:.2f} MB"
                         + (f", {self.party_rounds[who]} rounds" if who in self.party_rounds
                            else "") for who in self.party_bytes)
        return [f"model owner encrypts {shapes(self.model_owner_encrypted)} (once for all "
                f"{len(self.sellers)} data owners)",
                *[f"{s.name} encrypts {shapes(s.encrypted)}" for s in self.sellers],
                f"sent: {sent} ({self.mode}, {self.sessions} session"
                f"{'s' if self.sessions > 1 else ''})",
                f"provider {self.provider}: {PROVIDERS[self.provider]}",
                f"revealed to the model owner: {self.model_owner_learned} {self.unit} (every "
                f"candidate)",
                *[f"revealed to {s.name}: {s.learned} {self.unit} (its candidates "
                  f"{_ranges(s.learned_candidates)} only)" for s in self.sellers]]


def _ranges(ids: Sequence[int]) -> str:
    """Candidate indices as runs: 0-4, 7, 9-10."""
    runs: list[list[int]] = []
    for i in sorted(set(ids)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


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
                    results: Sequence[SessionResult],
                    owners: Sequence[Sequence[tuple[int, Sequence[int]]]] = ()
                    ) -> SessionAccount:
    """The account of an appraiser's sessions with these options (``results``, the first with
    ``spec``). ``owners``, per session, gives each data owner process's (seller, candidate
    indices) in rank order (one data owner holding every candidate when not given)."""
    several = options.sellers > 1 and options.mode == "parties"
    name = {j: f"data owner {j}" if several else "data owner"
            for j in range(1, options.sellers + 1)}
    roles = ("model owner", *name.values()) if options.mode == "parties" else \
        ("both (one process)",)
    party_bytes = dict.fromkeys(roles, 0)
    party_rounds = dict.fromkeys(roles, 0)
    party_seconds = dict.fromkeys(roles, 0.0)
    held: dict[str, list[int]] = {who: [] for who in roles}
    learned = dict.fromkeys(roles, 0)
    learned_ids: dict[str, list[int]] = {who: [] for who in roles}
    encrypted: dict[str, dict[str, tuple[int, ...]]] = {}
    masked_once = options.mode == "parties" and options.provider == "TTP"
    for s, result in enumerate(results):
        ranks = owners[s] if s < len(owners) else \
            ((1, tuple(range(result.values.shape[-1]))),)
        whose = [roles[0], *(name[j] for j, _ in ranks)] if options.mode == "parties" \
            else list(roles)
        for r, (who, report) in enumerate(zip(whose, result.reports, strict=True)):
            party_bytes[who] += report.bytes
            party_rounds[who] += report.rounds
            party_seconds[who] += report.seconds
            learned[who] += int(report.values.numel())
            if r > 0:  # what this data owner entered and whose values it received
                ids = list(ranks[r - 1][1])
                held[who] += ids
                learned_ids[who] += ids if report.values.shape[-1] == len(ids) else []
                if who not in encrypted:
                    sub = dataclasses.replace(spec, public=dataclasses.replace(
                        spec.public, sizes=tuple(len(ids) * [spec.public.size])))
                    encrypted[who] = _encrypted(sub, appraiser, masked_once)[1]
    if any(r.dealer_bytes for r in results):  # the dealer sends too: its bytes count
        party_bytes["dealer"] = sum(r.dealer_bytes for r in results)
    mo, do = _encrypted(spec, appraiser, masked_once=masked_once)
    sellers = tuple(SellerAccount(
        name=who, candidates=tuple(sorted(set(held[who]))), encrypted=encrypted.get(who, {}),
        bytes=party_bytes[who], rounds=party_rounds[who], seconds=party_seconds[who],
        learned=learned[who], learned_candidates=tuple(sorted(set(learned_ids[who]))))
        for who in roles[1:]) if options.mode == "parties" else ()
    return SessionAccount(
        spec=spec, mode=options.mode, provider=options.provider,
        threshold=options.threshold if spec.reveal == "bit" else None,
        model_owner_encrypted=mo, data_owner_encrypted=do, party_bytes=party_bytes,
        party_rounds=party_rounds, party_seconds=party_seconds,
        revealed=sum(r.values.size for r in results), sessions=len(results),
        sellers=sellers, model_owner_learned=learned[roles[0]])
