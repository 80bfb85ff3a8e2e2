"""DeepSurv (Katzman et al., 2018): a multilayer perceptron trained on the Cox partial likelihood.

Everything runs in PyTorch on an explicit ``device``; on CPU a fit is deterministic for a
given ``random_state`` (weights, dropout and batch order all come from it, and the global
torch random state is left untouched). Survival curves use a Breslow baseline hazard fitted
on the training linear predictor.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Any, Iterator, Sequence

import numpy as np
from sklearn.base import BaseEstimator

from facefeat.errors import ConfigError, DataError
from facefeat.survival.cox import BreslowPredictMixin

log = logging.getLogger("facefeat.survival")


def _tie_structure(time: np.ndarray, event: np.ndarray):
    """Index arrays, in descending time order, that the torch loss needs (computed once)."""
    import torch

    order = np.argsort(-time, kind="mergesort")
    t = time[order]
    e = event[order].astype(bool)
    ends = np.searchsorted(-t, -t, side="right") - 1
    ev = np.flatnonzero(e)
    key = ends[ev]
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(counts)), counts)
    rank = np.arange(len(key)) - first[group]
    as_t = lambda a, dt=torch.long: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    return {
        "order": as_t(order), "ends": as_t(ends[ev]), "ev": as_t(ev), "group": as_t(group),
        "frac": as_t(rank / counts[group], torch.float64), "n_groups": len(counts),
    }


def cox_ph_loss(
    log_risk: Any, time: Any, event: Any, *, ties: str = "efron", reduction: str = "mean", _ts: dict | None = None
):
    """Negative Cox log partial likelihood of predicted log risks (a differentiable torch loss).

    Parameters
    ----------
    log_risk : torch.Tensor of shape (n,) or (n, 1)
        Network outputs (log relative hazards).
    time, event : array-like of shape (n,)
    ties : {"efron", "breslow"}
        Handling of tied event times.
    reduction : {"mean", "sum"}
        ``mean`` divides by the number of events.

    Returns
    -------
    torch.Tensor, a scalar in float64.
    """
    import torch

    if ties not in ("efron", "breslow"):
        raise ConfigError(f"ties must be 'efron' or 'breslow', not {ties!r}")
    if _ts is None:
        _ts = _tie_structure(np.asarray(time, float), np.asarray(event, bool))
    h = log_risk.reshape(-1).to(torch.float64)
    dev = h.device
    h = h[_ts["order"].to(dev)]
    ev = _ts["ev"].to(dev)
    if len(ev) == 0:
        return h.sum() * 0.0
    # the shift keeps exp() finite; it cancels in the likelihood, so no gradient through it
    c = h.max().detach()
    w = torch.exp(h - c)
    R = torch.cumsum(w, 0)[_ts["ends"].to(dev)]
    if ties == "efron":
        group = _ts["group"].to(dev)
        T = torch.zeros(_ts["n_groups"], dtype=w.dtype, device=dev).index_add(0, group, w[ev])
        R = R - _ts["frac"].to(dev) * T[group]
    ll = (h[ev] - c - torch.log(R)).sum()
    return -ll / len(ev) if reduction == "mean" else -ll


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring torch's setting afterwards."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class DeepSurv(BreslowPredictMixin, BaseEstimator):
    """Cox proportional hazards model with a multilayer perceptron as risk function.

    Parameters
    ----------
    hidden_layers : sequence of int, default (32, 32)
    activation : {"relu", "selu", "tanh", "elu"}, default "relu"
    dropout : float, default 0.1
    batch_norm : bool, default False
    learning_rate : float, default 1e-3
        Adam step size.
    weight_decay : float, default 1e-3
        L2 penalty (Adam's weight decay) on all weights.
    batch_size : int or None, default None
        Mini-batch size; ``None`` trains on the full training set each step (the likelihood's
        risk sets are then exact; mini-batches use risk sets within the batch).
    max_epochs : int, default 500
    patience : int, default 30
        Early stopping: epochs without improvement of the validation loss.
    validation_fraction : float, default 0.2
        Share of the training data held out (stratified on the event) for early stopping;
        0 disables early stopping and trains ``max_epochs``.
    ties : {"efron", "breslow"}, default "efron"
    standardize : bool, default True
        Standardise inputs with the training mean and SD.
    random_state : int, default 0
    device : str, default "cpu"
    n_threads : int or None, default 1
        Torch intra-op threads while fitting and predicting (restored afterwards; ``None``
        keeps torch's setting). DeepSurv's small matrices gain nothing from more threads,
        and on a busy machine OpenMP threads that wait for each other made an epoch up to
        80 times slower; a fixed count also keeps CPU results reproducible.
    verbose : int, default 0

    Attributes
    ----------
    net_ : torch.nn.Sequential
    history_ : list of dict
        Train and validation loss per epoch.
    best_epoch_ : int
    baseline_ : sksurv BreslowEstimator
    unique_times_ : ndarray
    """

    def __init__(
        self, hidden_layers: Sequence[int] = (32, 32), *, activation: str = "relu", dropout: float = 0.1,
        batch_norm: bool = False, learning_rate: float = 1e-3, weight_decay: float = 1e-3,
        batch_size: int | None = None, max_epochs: int = 500, patience: int = 30,
        validation_fraction: float = 0.2, ties: str = "efron", standardize: bool = True,
        random_state: int = 0, device: str = "cpu", n_threads: int | None = 1, verbose: int = 0,
    ):
        self.hidden_layers = hidden_layers
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.ties = ties
        self.standardize = standardize
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose

    def _build(self, n_in: int):
        import torch.nn as nn

        acts = {"relu": nn.ReLU, "selu": nn.SELU, "tanh": nn.Tanh, "elu": nn.ELU}
        if self.activation not in acts:
            raise ConfigError(f"activation must be one of {sorted(acts)}, not {self.activation!r}")
        layers: list = []
        prev = n_in
        for width in self.hidden_layers:
            layers.append(nn.Linear(prev, int(width)))
            if self.batch_norm:
                layers.append(nn.BatchNorm1d(int(width)))
            layers.append(acts[self.activation]())
            if self.dropout:
                layers.append(nn.Dropout(float(self.dropout)))
            prev = int(width)
        layers.append(nn.Linear(prev, 1, bias=False))  # a bias cancels in the partial likelihood
        return nn.Sequential(*layers)

    def fit(self, X: Any, y: Any) -> "DeepSurv":
        """Train the network; early stopping on a stratified inner validation split."""
        import torch
        from sksurv.linear_model.coxph import BreslowEstimator

        from facefeat.survival.target import check_survival_target

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise DataError(f"X must be 2-dimensional; got shape {X.shape}")
        if not np.isfinite(X).all():
            raise DataError("DeepSurv needs finite features; impute missing values first (a FeatureBlock does)")
        event, time = check_survival_target(y, n_samples=X.shape[0])
        self.n_features_in_ = X.shape[1]
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            sd = X.std(axis=0)
            self.scale_ = np.where(sd > 0, sd, 1.0)
        else:
            self.mean_, self.scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])
        Z = (X - self.mean_) / self.scale_
        rng = np.random.default_rng(self.random_state)
        tr, va = np.arange(len(Z)), np.array([], dtype=int)
        if self.validation_fraction and self.validation_fraction > 0:
            from sklearn.model_selection import train_test_split

            n_ev = int(event.sum())
            if n_ev >= 4 and (len(event) - n_ev) >= 2:
                tr, va = train_test_split(
                    np.arange(len(Z)), test_size=self.validation_fraction, stratify=event,
                    random_state=int(rng.integers(2**31 - 1)),
                )
            else:
                tr, va = train_test_split(np.arange(len(Z)), test_size=self.validation_fraction,
                                          random_state=int(rng.integers(2**31 - 1)))
            if not event[va].any() or not event[tr].any():
                raise DataError("too few events to hold out a validation split for early stopping; set validation_fraction=0")
        device = torch.device(self.device)
        seed = int(rng.integers(2**31 - 1))
        with torch.random.fork_rng(devices=[]), _torch_threads(self.n_threads):
            torch.manual_seed(seed)
            self._train(Z, event, time, tr, va, device, rng)
            self.net_.eval()
            eta = self._forward(Z)
        self.baseline_ = BreslowEstimator().fit(eta, event, time)
        self.unique_times_ = self.baseline_.unique_times_
        return self

    def _train(self, Z, event, time, tr, va, device, rng) -> None:
        import torch

        net = self._build(Z.shape[1]).to(device=device, dtype=torch.float32)
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        Xtr = torch.as_tensor(Z[tr], dtype=torch.float32, device=device)
        Xva = torch.as_tensor(Z[va], dtype=torch.float32, device=device)
        full_ts = _tie_structure(time[tr], event[tr])
        va_ts = _tie_structure(time[va], event[va]) if len(va) else None
        bs = self.batch_size
        history: list[dict] = []
        best, best_state, best_epoch, wait = np.inf, None, 0, 0
        for epoch in range(int(self.max_epochs)):
            net.train()
            if bs is None or bs >= len(tr):
                batches = [None]
            else:
                perm = rng.permutation(len(tr))
                batches = [perm[i:i + bs] for i in range(0, len(tr), bs)]
                # a batch of one sample (or no event) carries no likelihood; fold it into the previous
                if len(batches) > 1 and len(batches[-1]) < 2:
                    batches[-2] = np.concatenate([batches[-2], batches.pop()])
            total = 0.0
            for b in batches:
                opt.zero_grad()
                if b is None:
                    loss = cox_ph_loss(net(Xtr), None, None, ties=self.ties, _ts=full_ts)
                else:
                    ev_b = event[tr][b]
                    if not ev_b.any():
                        continue
                    loss = cox_ph_loss(net(Xtr[torch.as_tensor(b, device=device)]), time[tr][b], ev_b, ties=self.ties)
                loss.backward()
                opt.step()
                total += float(loss.detach())
            rec = {"epoch": epoch, "train_loss": total / len(batches)}
            if va_ts is not None:
                net.eval()
                with torch.no_grad():
                    vloss = float(cox_ph_loss(net(Xva), None, None, ties=self.ties, _ts=va_ts))
                rec["val_loss"] = vloss
                if vloss < best - 1e-6:
                    best, best_epoch, wait = vloss, epoch, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    wait += 1
            history.append(rec)
            if self.verbose and epoch % 10 == 0:
                log.info("deepsurv epoch %d %s", epoch, rec)
            if not np.isfinite(rec["train_loss"]):
                raise DataError(f"DeepSurv training diverged at epoch {epoch}; lower learning_rate")
            if va_ts is not None and wait >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        else:
            best_epoch = len(history) - 1
        self.net_ = net
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.n_epochs_ = len(history)

    def _forward(self, Z: np.ndarray) -> np.ndarray:
        import torch

        self.net_.eval()
        with torch.no_grad(), _torch_threads(getattr(self, "n_threads", None)):
            x = torch.as_tensor(Z, dtype=torch.float32, device=next(self.net_.parameters()).device)
            return self.net_(x).reshape(-1).double().cpu().numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Predicted log relative hazard (higher = worse)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "net_")
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} features but DeepSurv was fitted on {self.n_features_in_}")
        return self._forward((X - self.mean_) / self.scale_)

    def __getstate__(self):
        # The network is stored as its architecture (the constructor parameters above) plus a
        # state dict of NumPy arrays: model files then hold no torch objects (safe, data-only
        # model files, see facefeat.survival.persist) and load on machines without the device.
        state = self.__dict__.copy()
        if "net_" in state:
            state["net_"] = {k: v.detach().cpu().numpy().copy() for k, v in state["net_"].state_dict().items()}
        return state

    def __setstate__(self, state):
        net = state.get("net_")
        self.__dict__.update(state)
        if isinstance(net, dict):
            import torch

            module = self._build(int(state["n_features_in_"])).to(dtype=torch.float32)
            module.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in net.items()}, strict=True)
            module.eval()
            self.net_ = module
