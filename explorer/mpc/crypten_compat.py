"""Single entry point for importing and configuring CrypTen.

Every CrypTen import in the project must go through :func:`load_crypten`.

Why: crypten 0.4.1's ONNX converter (``crypten/nn/onnx_converter.py``) does, at
module load time::

    try:
        import torch.onnx.symbolic_registry as sym_registry
    except ImportError:
        from torch.onnx._internal.registration import registry

Both modules are gone in recent torch (2.13 here), so ``import crypten`` fails.
The name ``registry`` is never used afterwards on that code path (the converter
calls ``torch.onnx.register_custom_op_symbolic`` instead), so a stub module that
merely *has* a ``registry`` attribute is enough. Note: an *empty* stub is not
enough (``from X import registry`` raises ImportError on a module without the
attribute). The stub is installed only when torch really lacks the module, and
removed from ``sys.modules`` again once crypten is imported so other code keeps
getting a genuine ImportError. ``crypten.nn.from_pytorch``/ONNX export is not
expected to work with this torch; the MPC tensor layer does.

Configuration: :class:`MPCConfig` maps typed fields onto CrypTen's OmegaConf
keys (see ``site-packages/configs/default.yaml`` -- shipped by the crypten wheel
as a *top-level* ``configs`` package, not inside ``crypten/``). Use
:func:`apply_config` (permanent, e.g. in a party process before
``crypten.init()``) or :func:`crypten_config` (context manager, restores the
previous config). :func:`set_collective_timeout` bounds the gloo operations of the
groups ``crypten.init()`` creates.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

__all__ = [
    "MPCConfig",
    "apply_config",
    "crypten_config",
    "freeze_config",
    "load_crypten",
    "set_collective_timeout",
]

_SHIM_NAME = "torch.onnx._internal.registration"
_lock = threading.Lock()
_crypten: types.ModuleType | None = None


def _module_importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def load_crypten() -> types.ModuleType:
    """Import crypten (once) and return the module.

    Idempotent and thread-safe. Applies the ``torch.onnx._internal.registration``
    stub only if torch does not provide that module.
    """
    global _crypten
    if _crypten is not None:
        return _crypten
    with _lock:
        if _crypten is not None:
            return _crypten
        if "crypten" in sys.modules:  # imported elsewhere (e.g. after a shimmed import)
            _crypten = sys.modules["crypten"]
            return _crypten
        stub: types.ModuleType | None = None
        if not _module_importable(_SHIM_NAME):
            stub = types.ModuleType(_SHIM_NAME, "crypten_compat stub (torch lacks this module)")
            stub.registry = None  # type: ignore[attr-defined]  # only the name is imported
            sys.modules[_SHIM_NAME] = stub
        try:
            import crypten
        finally:
            # crypten keeps its own binding; don't leave a fake module for others to find
            if stub is not None and sys.modules.get(_SHIM_NAME) is stub:
                del sys.modules[_SHIM_NAME]
        from crypten.communicator.distributed_communicator import DistributedCommunicator

        from explorer.mpc import exchange

        exchange.install(DistributedCommunicator)  # two parties open by one exchange
        _crypten = crypten
        return crypten


Provider = Literal["TFP", "TTP"]


@dataclass(frozen=True)
class MPCConfig:
    """Typed subset of CrypTen's config. ``None`` means "keep CrypTen's default".

    Field -> CrypTen key (default in crypten 0.4.1):

    * precision_bits        -> encoder.precision_bits           (16)
    * provider              -> mpc.provider                     ("TFP"; "TTP", "HE")
    * verbose               -> communicator.verbose             (False)
    * sqrt_nr_iters         -> functions.sqrt_nr_iters          (3)
    * sqrt_nr_initial       -> functions.sqrt_nr_initial        (null)
    * exp_iterations        -> functions.exp_iterations         (8)
    * log_iterations        -> functions.log_iterations         (2)
    * log_exp_iterations    -> functions.log_exp_iterations     (8)
    * log_order             -> functions.log_order              (8)
    * reciprocal_method     -> functions.reciprocal_method      ("NR"; or "log")
    * reciprocal_nr_iters   -> functions.reciprocal_nr_iters    (10)
    * reciprocal_log_iters  -> functions.reciprocal_log_iters   (1)
    * reciprocal_all_pos    -> functions.reciprocal_all_pos     (False)
    * reciprocal_initial    -> functions.reciprocal_initial     (null)
    * sigmoid_tanh_method   -> functions.sigmoid_tanh_method    ("reciprocal"; or "chebyshev")
    * sigmoid_tanh_terms    -> functions.sigmoid_tanh_terms     (32)

    ``extra`` takes any other dotted key verbatim (e.g. ``"functions.max_method"``).
    Caveat: ``sigmoid``/``tanh`` with method "reciprocal" internally override
    exp_iterations=9, reciprocal_nr_iters=3, reciprocal_all_pos=True,
    reciprocal_initial=0.75, so those fields do not affect sigmoid.
    """

    precision_bits: int | None = None
    provider: Provider | None = None
    verbose: bool | None = None
    sqrt_nr_iters: int | None = None
    sqrt_nr_initial: float | None = None
    exp_iterations: int | None = None
    log_iterations: int | None = None
    log_exp_iterations: int | None = None
    log_order: int | None = None
    reciprocal_method: Literal["NR", "log"] | None = None
    reciprocal_nr_iters: int | None = None
    reciprocal_log_iters: int | None = None
    reciprocal_all_pos: bool | None = None
    reciprocal_initial: float | None = None
    sigmoid_tanh_method: Literal["reciprocal", "chebyshev"] | None = None
    sigmoid_tanh_terms: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS: ClassVar[dict[str, str]] = {
        "precision_bits": "encoder.precision_bits",
        "provider": "mpc.provider",
        "verbose": "communicator.verbose",
        "sqrt_nr_iters": "functions.sqrt_nr_iters",
        "sqrt_nr_initial": "functions.sqrt_nr_initial",
        "exp_iterations": "functions.exp_iterations",
        "log_iterations": "functions.log_iterations",
        "log_exp_iterations": "functions.log_exp_iterations",
        "log_order": "functions.log_order",
        "reciprocal_method": "functions.reciprocal_method",
        "reciprocal_nr_iters": "functions.reciprocal_nr_iters",
        "reciprocal_log_iters": "functions.reciprocal_log_iters",
        "reciprocal_all_pos": "functions.reciprocal_all_pos",
        "reciprocal_initial": "functions.reciprocal_initial",
        "sigmoid_tanh_method": "functions.sigmoid_tanh_method",
        "sigmoid_tanh_terms": "functions.sigmoid_tanh_terms",
    }

    def __post_init__(self) -> None:
        if self.precision_bits is not None and not 0 <= self.precision_bits <= 62:
            raise ValueError(f"precision_bits out of range: {self.precision_bits}")
        if self.provider is not None and self.provider not in ("TFP", "TTP"):
            raise ValueError(f"unsupported provider {self.provider!r} (use 'TFP' or 'TTP')")

    def overrides(self) -> dict[str, Any]:
        """Dotted CrypTen keys -> values for every field that is set."""
        out: dict[str, Any] = {}
        for name, key in self._KEYS.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out

    @property
    def uses_ttp(self) -> bool:
        return self.provider == "TTP"


def _nested(overrides: Mapping[str, Any]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for dotted, value in overrides.items():
        node = root
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return root


def _check_keys(config_root: Any, overrides: Mapping[str, Any]) -> None:
    from omegaconf import OmegaConf

    for dotted in overrides:
        if OmegaConf.select(config_root, dotted, default=_MISSING) is _MISSING:
            # CrypTen's cfg silently *adds* unknown keys, so a typo would be a no-op.
            raise KeyError(f"unknown CrypTen config key {dotted!r}")


_MISSING = object()


def apply_config(config: MPCConfig | Mapping[str, Any]) -> None:
    """Merge ``config`` into ``crypten.cfg`` for the rest of this process.

    Must run before ``crypten.init()`` for ``mpc.provider`` (it decides whether
    the TTP channel is set up) and before creating tensors for
    ``encoder.precision_bits`` (each tensor's encoder captures it at creation).
    """
    from omegaconf import OmegaConf

    crypten = load_crypten()
    overrides = config.overrides() if isinstance(config, MPCConfig) else dict(config)
    if not overrides:
        return
    if isinstance(crypten.cfg.config, SimpleNamespace):
        raise RuntimeError("CrypTen's configuration is frozen in this process (freeze_config); "
                           "apply settings before freezing it.")
    _check_keys(crypten.cfg.config, overrides)
    # Merging a typed nested dict keeps None/bool/float types intact, unlike
    # cfg.temp_override which goes through "key=value" strings.
    crypten.cfg.config = OmegaConf.merge(crypten.cfg.config, OmegaConf.create(_nested(overrides)))


@contextmanager
def crypten_config(config: MPCConfig | Mapping[str, Any]) -> Iterator[None]:
    """Temporarily apply ``config``; restores the previous config object on exit."""
    crypten = load_crypten()
    previous = crypten.cfg.config
    try:
        apply_config(config)
        yield
    finally:
        crypten.cfg.config = previous


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return SimpleNamespace(**{key: _plain(value) for key, value in node.items()})
    return node


def freeze_config() -> None:
    """For the rest of this process, hold ``crypten.cfg`` as plain attributes.

    Why: CrypTen reads its configuration on every attribute access of an encrypted tensor
    (``debug.validation_mode``) and in every function, and OmegaConf validates each read;
    ``temp_override``, which the sigmoid and the reciprocal enter on every call, merges a whole
    copy of the tree. Together that is a fifth of a small session's time. The frozen tree has
    the same keys and values (``OmegaConf.to_container``), and ``temp_override`` sets the given
    keys in place and restores them (removing keys it added) on exit, as the merged copy did.
    For a party process's single session: ``apply_config`` refuses once it is frozen.
    """
    crypten = load_crypten()
    cfg = crypten.cfg
    if isinstance(cfg.config, SimpleNamespace):
        return
    from omegaconf import OmegaConf

    cfg.config = _plain(OmegaConf.to_container(cfg.config, resolve=True))

    @contextmanager
    def temp_override(override_dict: Mapping[str, Any]) -> Iterator[None]:
        saved = []
        try:
            for dotted, value in override_dict.items():
                *parents, leaf = dotted.split(".")
                node = cfg.config
                for part in parents:
                    node = getattr(node, part)
                saved.append((node, leaf, getattr(node, leaf, _MISSING)))
                setattr(node, leaf, value)
            yield
        finally:
            for node, leaf, old in reversed(saved):
                if old is _MISSING:
                    delattr(node, leaf)
                else:
                    setattr(node, leaf, old)

    cfg.temp_override = temp_override  # the instance's, before CrypTenConfig's own


def set_collective_timeout(seconds: float | None) -> None:
    """Timeout of gloo operations created by ``crypten.init()`` (CrypTen passes none, so
    torch's 30 minutes would apply). Call before ``crypten.init()``."""
    if seconds is None:
        return
    import torch.distributed.distributed_c10d as c10d

    c10d.default_pg_timeout = _dt.timedelta(seconds=seconds)
