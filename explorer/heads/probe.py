"""Linear probe on the CLS token: multinomial logistic regression, as in the report (Table 2).

Training uses scikit-learn (lbfgs, L2, ``C`` configurable, ``max_iter=1000``) on standardised
features; the head is then stored as four plain arrays (coef, intercept, scaler mean, scaler scale)
and inference is a few lines of numpy, so the app never needs a pickled sklearn object.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from explorer.heads import io
from explorer.heads.base import CardFields

NAME = "probe"
# "cls": the report's protocol. "cls+avgpool": CLS concatenated with the mean patch token (the DINOv2
# linear-evaluation variant), useful for small backbones whose CLS token alone is weak.
FEATURES = ("cls", "cls+avgpool")
# Logit given to classes absent from the training labels: exp() underflows to exactly 0.
ABSENT_LOGIT = -1e30


@dataclass
class ProbeHead(CardFields):
    """A trained probe: ``softmax(((x' - mean) / scale) @ coef.T + intercept)`` where ``x'`` is the input,
    L2-normalised first when ``l2_normalize`` (the taught classifier's choice for few examples)."""

    coef: np.ndarray  # (K, d) float32
    intercept: np.ndarray  # (K,) float32
    mean: np.ndarray  # (d,) float32
    scale: np.ndarray  # (d,) float32
    class_names: list[str]
    card: dict[str, Any] = field(default_factory=dict)
    feature: str = "cls"
    l2_normalize: bool = False
    default_kind = "probe"

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "intercept": self.intercept, "mean": self.mean, "scale": self.scale}

    def predict(self, features: Any) -> np.ndarray:
        """Class probabilities ``float[K]`` of one image's ``Features``."""
        return predict_proba(self, features)[0]


def place_logits(clf: Any, coef: np.ndarray, intercept: np.ndarray) -> None:
    """Write a fitted sklearn LogisticRegression into per-class logit weights ``coef [K, d]``, ``intercept [K]``
    (rows of classes it never saw are left as they are).

    sklearn stores one weight vector w for p(class 1) = sigmoid(w.x + b) when it saw two classes; the
    softmax over logits [0, w.x + b] gives the same probabilities, so every head predicts with one formula.
    """
    if len(clf.classes_) == 2:
        coef[clf.classes_[1]] = clf.coef_[0]
        intercept[clf.classes_[1]] = clf.intercept_[0]
        intercept[clf.classes_[0]] = 0.0
    else:
        coef[clf.classes_] = clf.coef_
        intercept[clf.classes_] = clf.intercept_


def train_probe(
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    C: float = 1.0,
    max_iter: int = 1000,
    feature: str = "cls",
) -> ProbeHead:
    """Fit standardisation + multinomial logistic regression on probe inputs ``[N, D]`` (built with
    ``probe_input(feature, ...)``; ``feature`` is recorded so inference rebuilds the same input)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_names)
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}); got [{y.min()}, {y.max()}]")
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    seen = np.unique(y)
    coef = np.zeros((num_classes, x.shape[1]), dtype=np.float64)
    intercept = np.full(num_classes, ABSENT_LOGIT, dtype=np.float64)
    if len(seen) == 1:  # degenerate: everything is that class
        intercept[seen[0]] = 0.0
    else:
        clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter)
        with warnings.catch_warnings():  # many classes, few samples is normal for a probe; not an error
            warnings.filterwarnings("ignore", message=".*number of unique classes.*")
            clf.fit(xs, y)
        place_logits(clf, coef, intercept)
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    return ProbeHead(
        coef=coef.astype(np.float32),
        intercept=intercept.astype(np.float32),
        mean=np.asarray(scaler.mean_, dtype=np.float32),
        scale=scale.astype(np.float32),
        class_names=list(class_names),
        feature=feature,
    )


def probe_input(feature: str, cls: Any, patch_mean: Any | None = None) -> np.ndarray:
    """The probe's input rows from CLS tokens ``[N, d]`` (+ mean patch tokens for ``cls+avgpool``)."""
    cls = _np(cls).reshape(-1, _np(cls).shape[-1])
    if feature == "cls":
        return cls
    if feature == "cls+avgpool":
        if patch_mean is None:
            raise ValueError("the cls+avgpool probe needs the mean patch token too")
        return np.concatenate([cls, _np(patch_mean).reshape(cls.shape[0], -1)], axis=1)
    raise ValueError(f"unknown probe feature {feature!r}; expected one of {FEATURES}")


def l2_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x)


def features_vector(head: ProbeHead, features: Any) -> np.ndarray:
    """``[1, D]`` probe input from one image's ``Features`` (what the app holds in its cache)."""
    patches = _np(features.patches)
    return probe_input(head.feature, _np(features.cls), patches.reshape(-1, patches.shape[-1]).mean(0))


def decision_function(head: ProbeHead, cls_features: Any) -> np.ndarray:
    """Logits ``[N, K]`` (float64) from probe inputs ``[N, D]`` / ``[D]`` or one ``Features``."""
    if hasattr(cls_features, "patches"):
        cls_features = features_vector(head, cls_features)
    x = np.asarray(_np(cls_features), dtype=np.float64)
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if head.l2_normalize:
        x = l2_rows(x)
    xs = (x - head.mean.astype(np.float64)) / head.scale.astype(np.float64)
    return xs @ head.coef.astype(np.float64).T + head.intercept.astype(np.float64)


def predict_proba(head: ProbeHead, cls_features: Any) -> np.ndarray:
    """Class probabilities ``[N, K]`` (a ``[D]`` input or a ``Features`` gives ``[1, K]``)."""
    logits = decision_function(head, cls_features)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def predict(head: ProbeHead, cls_features: Any) -> np.ndarray:
    return predict_proba(head, cls_features).argmax(axis=1)


def topk(head: ProbeHead, cls_feature: Any, k: int = 5) -> list[tuple[str, float]]:
    """The k most probable classes of ONE image (``Features`` or probe input) as ``(name, probability)``,
    best first (the Classification tab's top-5)."""
    p = predict_proba(head, cls_feature)[0]
    order = np.argsort(-p, kind="stable")[:k]
    return [(head.class_names[i], float(p[i])) for i in order]


def save_probe(head: ProbeHead, directory: str | Path, name: str = NAME) -> Path:
    if not head.card:
        raise ValueError("probe has no card; build one with explorer.heads.io.make_card")
    return io.save_head(directory, name, *probe_state(head))


def probe_state(head: ProbeHead) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(weights, card) as written to disk; the card carries what rebuilds the input (feature, l2)."""
    card = dict(head.card)
    card["class_names"] = list(head.class_names)
    card["feature"] = head.feature
    card["l2_normalize"] = bool(head.l2_normalize)
    return head.state_dict(), card


def load_probe(directory: str | Path, backbone: Any, name: str = NAME) -> ProbeHead:
    """Load a saved probe; raises ``HeadMismatchError`` for a head trained on another backbone."""
    return probe_from_state(*io.read_head(directory, name, backbone))


def probe_from_state(state: dict[str, Any], card: dict[str, Any]) -> ProbeHead:
    """A probe from its weights and card (from a folder or an uploaded one-file head)."""
    for key in ("coef", "intercept", "mean", "scale"):
        if key not in state:
            raise ValueError(f"probe weights lack {key!r}")
    k, d = state["coef"].shape
    if len(card["class_names"]) != k or tuple(state["intercept"].shape) != (k,) or state["mean"].shape[-1] != d:
        raise ValueError("probe weights do not match their card's classes")
    return ProbeHead(
        coef=state["coef"].numpy(),
        intercept=state["intercept"].numpy(),
        mean=state["mean"].numpy(),
        scale=state["scale"].numpy(),
        class_names=list(card["class_names"]),
        card=card,
        feature=card.get("feature", "cls"),
        l2_normalize=bool(card.get("l2_normalize", False)),
    )
