"""Who sees what: three lanes (model owner | between them | data owner) filled from each private
appraiser's session account (explorer.mpc.account.SessionAccount), never recomputed here; with
several data owners the third lane groups them, each with what it entered, sent and learned.

``party_lanes`` turns a run's accounts into HTML; ``PartyView`` is the widget that shows it and,
while a session runs, its elapsed time and processes.
"""

from __future__ import annotations

import html
import itertools

import ipywidgets as w

from explorer.app.runner import session_so_far
from explorer.constraints import PROVIDERS
from explorer.mpc.account import SessionAccount
from explorer.plots import GROUND_TRUTH
from explorer.progress import ENCRYPTED, ProgressEvent

CSS = """<style>
.ae-lanes{display:grid;grid-template-columns:1fr 1fr 1fr;gap:8px;font-size:13px;
line-height:1.35}
.ae-lane{border:1px solid #ccc;border-radius:4px;padding:6px 8px;background:#fafafa}
.ae-lane h4{margin:0 0 4px 0;font-size:14px}
.ae-lane .k{color:#555;font-weight:bold;margin-top:6px}
.ae-lane ul{margin:2px 0 0 0;padding-left:16px}
.ae-mo{border-top:4px solid #1f77b4}.ae-mid{border-top:4px solid #7f7f7f}
.ae-do{border-top:4px solid #ff7f0e}
</style>"""


FOOTER = ("<p style='font-size:12px;margin:6px 0 0 0'>The figures' <i>utility</i> comes from "
          "retraining on each candidate, which needs both sides' data in one place: <b>"
          f"{GROUND_TRUTH}</b>.</p>")


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _items(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e4 else f"{int(n)} bytes"


def _seed_model_held(public) -> str:
    """What the model owner's seed model is, as it holds it: θ̂'s shape, or a network's
    layers, each (inputs + 1) × outputs."""
    dims = (public.n_features, *public.hidden, public.n_outputs)
    shapes = ", ".join(f"{a + 1} × {b}" for a, b in itertools.pairwise(dims))
    if not public.hidden:
        return f"its seed model θ̂ ({shapes})"
    return (f"its seed model θ̂, a {html.escape(public.family)} network "
            f"({html.escape(public.activation)}): layers {shapes}")


def _lane(css: str, title: str, sections: list[tuple[str, list[str]]]) -> str:
    body = "".join(f"<div class='k'>{html.escape(k)}</div>{_items(v)}" for k, v in sections
                   if v)
    return f"<div class='ae-lane {css}'><h4>{html.escape(title)}</h4>{body}</div>"


def party_lanes(accounts: dict[str, SessionAccount], context: dict | None = None) -> str:
    """The three lanes for a run's private appraisers (``accounts`` by appraiser name).

    ``context``: what the lanes cannot take from an account, from the run's snapshot: the task
    (``task``), the seed model's sizes (``n_seed``, ``n_test``, ``d``, ``C``) and
    ``backend`` ("plaintext" for a run without MPC).
    """
    ctx = context or {}
    if ctx.get("backend") == "plaintext":
        return CSS + "<div class='ae-lanes'>" + "".join([
            _lane("ae-mo", "Model owner", [
                ("holds in the clear", [f"its seed model and its {ctx.get('n_seed', '?')} "
                                        f"training and {ctx.get('n_test', '?')} test samples",
                                        "<b>and every candidate</b>: plaintext means the data "
                                        "owner handed its data over"]),
                ("learns", ["everything"])]),
            _lane("ae-mid", "Between them", [
                ("encrypted", ["nothing: this is the Catch-22 (once the buyer has seen the "
                               "data, there is nothing left to sell)"]),
                ("", []), ("sent", ["0 bytes, 0 rounds"]),
                ("provider", ["none"])]),
            _lane("ae-do", "Data owner", [
                ("holds in the clear", ["its candidates, now also the model owner's"]),
                ("learns", ["nothing it did not know, unless told"])])]) + "</div>" + FOOTER
    if not accounts:
        return (CSS + "<p>The lanes fill in from each party's own accounting as each private "
                "appraiser's session ends (backends <i>simulated</i> and <i>real "
                "parties</i>).</p>" + FOOTER)
    first = next(iter(accounts.values()))
    public = first.spec.public
    mode = first.mode
    one_process = mode == "simulated"
    mo_encrypted, do_encrypted, mo_sent, do_sent, revealed, publics = [], [], [], [], [], []
    for name, acc in accounts.items():
        p = acc.spec.public
        mo_encrypted.append(f"<b>{html.escape(name)}</b>: " + ", ".join(
            f"{html.escape(k)} {_shape(s)}" for k, s in acc.model_owner_encrypted.items()))
        do_encrypted.append(f"<b>{html.escape(name)}</b>: " + ", ".join(
            f"{html.escape(k)} {_shape(s)}" for k, s in acc.data_owner_encrypted.items()))
        for who, target in (("model owner", mo_sent), ("data owner", do_sent)):
            key = who if not one_process else next(iter(acc.party_bytes))
            if key not in acc.party_bytes:  # several data owners: each in its own section
                continue
            target.append(f"<b>{html.escape(name)}</b>: {_mb(acc.party_bytes[key])}, "
                          f"{acc.party_rounds[key]} rounds, "
                          f"{acc.party_seconds[key]:.2f} s encrypted")
        per = "one bit" if acc.unit == "bits" else "one value"
        revealed.append(f"<b>{html.escape(name)}</b>: {acc.revealed} {acc.unit} ({per} per "
                        f"candidate and copy, {acc.sessions} session"
                        f"{'s' if acc.sessions > 1 else ''}) to <b>both</b>")
        params = ", ".join(f"{k}={v}" for k, v in p.params)
        publics.append(f"<b>{html.escape(name)}</b>" + (f" ({html.escape(params)})"
                                                         if params else ""))
    provider = first.provider
    assumes = PROVIDERS[provider]
    threshold = [f"its threshold {first.threshold:g} (1,)"] if first.threshold is not None \
        else []
    if one_process:
        note = ["simulated: one process plays both parties, so no bytes cross between them; "
                "choose real parties to count them"]
        mo_sent, do_sent = note, note
    sizes = sorted(set(public.sizes))
    several = len(first.sellers) > 1
    if several:  # the account's per data owner, as recorded: one section each
        do_lane = _lane("ae-do", f"Data owners ({len(first.sellers)})",
                        _seller_sections(accounts))
        revealed = [f"<b>{html.escape(name)}</b>: {acc.model_owner_learned} {acc.unit} to the "
                    f"model owner; to each data owner only its own candidates' ("
                    + ", ".join(f"{html.escape(s.name)} {s.learned}" for s in acc.sellers)
                    + ")" for name, acc in accounts.items()]
    else:
        do_lane = _lane("ae-do", "Data owner", [
            ("holds in the clear", [f"its {public.n_candidates} candidates (features and "
                                    f"labels)"]),
            ("encrypts (name and shape)", do_encrypted),
            ("sends", do_sent),
            ("learns", [f"the revealed {first.unit}, nothing else: not θ̂, not the seed or "
                        f"test data"])])
    lanes = [
        _lane("ae-mo", "Model owner", [
            ("holds in the clear", [
                _seed_model_held(public),
                f"its {public.n_seed} training and {public.n_test} test samples",
                "what each appraiser derives from them (below)"]),
            ("encrypts (name and shape)", mo_encrypted + threshold),
            ("sends", mo_sent),
            ("learns", [f"the revealed {first.unit}" + (" of every data owner's candidates"
                                                         if several else "")
                        + ", nothing else"])]),
        _lane("ae-mid", "Between them", [
            ("public (both know)", [
                f"task {html.escape(str(ctx.get('task', '')))}: {public.n_features} features, "
                f"{public.n_outputs} output{'s' if public.n_outputs > 1 else ''}",
                f"{public.n_candidates} candidates of {', '.join(map(str, sizes))} samples",
                f"λ = {public.lam:g}, {first.spec.precision_bits} fractional bits, "
                f"reveal {first.spec.reveal}"
                + (", each value twice from independent sharings" if first.spec.verify
                   else ""),
                "appraisers: " + "; ".join(publics)]),
            ("triple provider (actually used)", [f"<b>{provider}</b>: {html.escape(assumes)}"]),
            ("revealed", revealed)]),
        do_lane,
    ]
    return CSS + f"<div class='ae-lanes'>{''.join(lanes)}</div>" + FOOTER


def _seller_sections(accounts: dict[str, SessionAccount]) -> list[tuple[str, list[str]]]:
    """One section per data owner: its candidates, and per appraiser what it encrypted, sent
    and learned, as its account says."""
    first = next(iter(accounts.values()))
    sections = []
    for j, seller in enumerate(first.sellers):
        items = [f"holds its {len(seller.candidates)} candidates "
                 f"({', '.join(map(str, seller.candidates))})"]
        for name, acc in accounts.items():
            mine = acc.sellers[j]
            items.append(f"<b>{html.escape(name)}</b>: encrypts " + ", ".join(
                f"{html.escape(k)} {_shape(v)}" for k, v in mine.encrypted.items())
                + f"; sends {_mb(mine.bytes)}, {mine.rounds} rounds; learns {mine.learned} "
                f"{acc.unit}, of its candidates "
                f"{', '.join(map(str, mine.learned_candidates))} only")
        sections.append((seller.name, items))
    return sections


class PartyView:
    """The lanes as a widget, with a line that follows a running encrypted session."""

    def __init__(self):
        self.live = w.HTML()
        self.lanes = w.HTML(party_lanes({}))
        self.widget = w.VBox([self.live, self.lanes])

    def show(self, accounts: dict[str, SessionAccount], context: dict) -> None:
        self.lanes.value = party_lanes(accounts, context)

    def clear(self) -> None:
        self.live.value = ""
        self.lanes.value = party_lanes({})

    def on_event(self, event: ProgressEvent) -> None:
        """While a session runs: its appraiser, elapsed time, processes up and bytes sent."""
        if event.phase == ENCRYPTED:
            self.live.value = (f"<b>now</b>: {html.escape(event.appraiser or '')}'s encrypted "
                               f"session, {event.elapsed or 0.0:.1f} s{session_so_far(event)}")
        elif event.done >= event.total:
            self.live.value = ""
