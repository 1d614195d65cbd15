"""Heads taught in seconds from a user's examples, for whatever backbone is loaded.

Segmentation (the recipe of DINOv3's foreground-segmentation notebook): a multinomial logistic regression
(scikit-learn) on the L2-normalised patch features of every labelled patch of every image taught so far;
per-class patch probabilities get a 3x3 median filter, are upsampled bilinearly, and the argmax is the class
map. Connected components of that map, per class, are the taught detector's boxes (score = the component's
mean probability).

Classification: one example per class -> nearest class mean (cosine); more -> the linear probe's own
trainer on L2-normalised CLS (or CLS + mean patch) features. The result IS a ``ProbeHead``, so a taught
classifier is stored, served and loaded exactly like the shipped probe.

The teachers (``SegmentationTeacher``, ``ClassificationTeacher``) hold what the user gave: class names and
marks / examples with the features of the labelled patches / images (numpy, small), never the images or a
backbone. Every refusal is a ``TeachError`` whose text is one plain sentence and which leaves the state as
it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from explorer.heads.base import CardFields
from explorer.heads.probe import ProbeHead, l2_rows, place_logits, train_probe
from explorer.heads.probe import predict as probe_predict

SEG_KIND = "taught-segmentation"
CLS_KIND = "taught-classification"
DEFAULT_CLASSES = ("object", "background")
FEATURE_CHOICES = ("cls", "cls+avgpool")  # the probe's inputs: CLS token, or CLS + mean patch (Meta's linear heads)
BACKGROUND_NAMES = frozenset({"background", "bg"})  # never turned into boxes
MAX_CLASSES = 64
C_SEG = 1.0  # inverse L2 strength; unit-length features make 1.0 a safe default for a few hundred patches
NCM_TEMPERATURE = 0.1  # softmax temperature over cosine similarities for nearest-class-mean probabilities
LOO_MAX = 50  # leave-one-out refits at most this many held-out examples (evenly spread): a teach click stays quick


class TeachError(ValueError):
    """Something the user can fix while teaching; ``str()`` is shown as-is, the taught state is unchanged."""


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float32)


def normalised_patches(features: Any) -> np.ndarray:
    """``float32[h, w, d]`` unit-length patch features of one image's ``Features``."""
    return l2_rows(_np(features.patches).astype(np.float32)).astype(np.float32)


# ---------------------------------------------------------------- class lists
def clean_class_names(names: Iterable[str]) -> list[str]:
    """Stripped, non-empty, unique (first wins) names; refuses more than ``MAX_CLASSES``."""
    out: list[str] = []
    for n in names:
        n = str(n).strip()
        if n and n not in out:
            out.append(n)
    if len(out) > MAX_CLASSES:
        raise TeachError(f"At most {MAX_CLASSES} classes can be taught; {len(out)} were given.")
    return out


def parse_class_list(text: str) -> list[str]:
    """"object, background" -> ["object", "background"] (commas or new lines)."""
    return clean_class_names(str(text or "").replace("\n", ",").split(","))


class _ClassList:
    """An editable class list whose names are referenced by marks/examples: renames carry them along,
    deleting a class that is still in use is refused."""

    classes: list[str]

    def _uses(self, name: str) -> int:
        raise NotImplementedError

    def _rename_uses(self, old: str, new: str) -> None:
        raise NotImplementedError

    def set_classes(self, names: Sequence[str]) -> str:
        """Apply an edited list. Same length: position i renamed. Otherwise: names added / removed.
        Returns a one-line note of what changed; raises ``TeachError`` (nothing changed) when a class
        still in use would vanish."""
        new = clean_class_names(names)
        old = list(self.classes)
        if len(new) == len(old) and set(new) != set(old):
            renames = [(o, n) for o, n in zip(old, new, strict=True) if o != n]
            if all(n not in old for _, n in renames):  # every changed slot got a fresh name: renames
                for o, n in renames:
                    self._rename_uses(o, n)
                self.classes = new
                return "; ".join(f"renamed {o!r} to {n!r}" for o, n in renames)
        gone = [c for c in old if c not in new]
        busy = [f"{c!r} ({self._uses(c)})" for c in gone if self._uses(c)]
        if busy:
            raise TeachError(f"Class {', '.join(busy)} still has marks or examples; undo or clear them before "
                             f"deleting it (or rename it in place).")
        self.classes = new
        added = [c for c in new if c not in old]
        parts = ([f"added {', '.join(map(repr, added))}"] if added else []) + (
            [f"removed {', '.join(map(repr, gone))}"] if gone else [])
        return "; ".join(parts) or "classes reordered"

    def require_class(self, name: str) -> str:
        name = str(name or "").strip()
        if name not in self.classes:
            raise TeachError(f"Pick one of the classes {self.classes} (got {name!r}).")
        return name


# ---------------------------------------------------------------- segmentation
@dataclass
class Mark:
    """One click / stroke: the patches it labelled on one image and their unit-length features."""

    image_key: str
    class_name: str
    patches: np.ndarray  # int64[n] row-major patch indices on that image's grid
    features: np.ndarray  # float32[n, d]
    grid: tuple[int, int]  # (h, w) of that image's grid (to draw marks back)


@dataclass
class TaughtSegmentationHead(CardFields):
    """Per-patch multinomial logistic regression; classes are the user's names, in the list's order."""

    coef: np.ndarray  # float32[K, d]
    intercept: np.ndarray  # float32[K]
    class_names: list[str]
    card: dict[str, Any] = field(default_factory=dict)
    default_kind = SEG_KIND

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "intercept": self.intercept}

    def patch_proba(self, features: Any) -> np.ndarray:
        """``float32[h, w, K]`` class probabilities per patch, 3x3 median-filtered (then renormalised)."""
        from scipy.ndimage import median_filter

        x = normalised_patches(features)
        h, w, d = x.shape
        if d != self.coef.shape[1]:
            raise TeachError(f"The head reads {self.coef.shape[1]}-d features; these are {d}-d.")
        # A C-contiguous (d, K) operand: numpy's matmul with the transposed view took ~14 ms here, this ~0.03.
        logits = x.reshape(-1, d) @ np.ascontiguousarray(self.coef.T) + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p = (p / p.sum(axis=1, keepdims=True)).reshape(h, w, -1).astype(np.float32)
        if min(h, w) >= 3:
            p = median_filter(p, size=(3, 3, 1), mode="nearest")
            p /= np.maximum(p.sum(axis=2, keepdims=True), 1e-12)
        return p

    def predict(self, features: Any) -> np.ndarray:
        """Class map ``uint8[H, W]`` at the original ``features.image_size``."""
        return upsample(self.patch_proba(features), tuple(features.image_size))[0]


def foreground_mask(head: TaughtSegmentationHead, features: Any) -> np.ndarray | None:
    """``bool[h, w]`` patch mask of everything not ``background`` (the two-class case of the notebook), the
    shape TokenCut's mask has, so the PCA view can fit on it; None when no class is called background."""
    bg = next((k for k, n in enumerate(head.class_names) if n.strip().lower() in BACKGROUND_NAMES), None)
    if bg is None:
        return None
    return head.patch_proba(features).argmax(axis=2) != bg


def upsample(proba: np.ndarray, out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Patch probabilities ``[h, w, K]`` -> (class map ``uint8[H, W]``, probabilities ``float32[H, W, K]``),
    bilinear (cell-centred, like the model's patches)."""
    H, W = int(out_hw[0]), int(out_hw[1])
    k = proba.shape[2]
    chunks = [cv2.resize(np.ascontiguousarray(proba[:, :, i:i + 4]), (W, H), interpolation=cv2.INTER_LINEAR)
              for i in range(0, k, 4)]  # <= 4 channels per call: cv2 is fastest (and safest) there
    big = np.concatenate([c.reshape(H, W, -1) for c in chunks], axis=2)
    return big.argmax(axis=2).astype(np.uint8), big


def fit_patch_classifier(x: np.ndarray, y: np.ndarray, num_classes: int, C: float = C_SEG
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on unit-length rows -> (coef ``[K, d]``, intercept ``[K]``).

    Classes with no labelled row get a logit of -1e30 (probability exactly 0). ``class_weight="balanced"``
    because a user paints far more of one class than of another.
    """
    from sklearn.linear_model import LogisticRegression

    seen = np.unique(y)
    if len(seen) < 2:
        raise TeachError("Mark at least two classes (for example some object and some background).")
    clf = LogisticRegression(C=C, max_iter=500, class_weight="balanced")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on tiny, separable sets is not the user's problem
        clf.fit(x, y)
    coef = np.zeros((num_classes, x.shape[1]), np.float32)
    intercept = np.full(num_classes, -1e30, np.float32)
    place_logits(clf, coef, intercept)
    return coef, intercept


def brush_patches(grid: tuple[int, int], row: int, col: int, radius: int = 0) -> np.ndarray:
    """Row-major indices of the patches within ``radius`` patches (Chebyshev) of (row, col)."""
    h, w = grid
    r = max(0, int(radius))
    rows = np.arange(max(0, row - r), min(h, row + r + 1))
    cols = np.arange(max(0, col - r), min(w, col + r + 1))
    return (rows[:, None] * w + cols[None, :]).ravel().astype(np.int64)


def mask_patches(mask: np.ndarray, grid: tuple[int, int], min_cover: float = 0.5) -> np.ndarray:
    """Patches covered at least ``min_cover`` by a boolean mask of the original image (any H x W)."""
    h, w = grid
    cover = cv2.resize(np.asarray(mask, np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return np.flatnonzero(cover.ravel() >= min_cover).astype(np.int64)


@dataclass
class SegmentationTeacher(_ClassList):
    """The taught-so-far state of one browser session (or one API call)."""

    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    marks: list[Mark] = field(default_factory=list)
    layer: int | None = None  # fixed by the first mark: every image is taught at one backbone, layer and size
    size: int | None = None
    model_id: str | None = None

    def _uses(self, name: str) -> int:
        return sum(len(m.patches) for m in self.marks if m.class_name == name)

    def _rename_uses(self, old: str, new: str) -> None:
        for m in self.marks:
            if m.class_name == old:
                m.class_name = new

    @property
    def image_keys(self) -> list[str]:
        return list(dict.fromkeys(m.image_key for m in self.marks))

    def add_mark(self, image_key: str, features: Any, patches: np.ndarray, class_name: str) -> Mark:
        """Label ``patches`` (row-major indices of ``features``' grid) as ``class_name``."""
        name = self.require_class(class_name)
        grid = tuple(int(v) for v in features.grid)
        idx = np.unique(np.asarray(patches, np.int64).ravel())
        idx = idx[(idx >= 0) & (idx < grid[0] * grid[1])]
        if idx.size == 0:
            raise TeachError("That mark covers no patch of the image (it lies outside it).")
        _same_source(self, features, "head")
        x = normalised_patches(features).reshape(-1, features.dim)[idx]
        mark = Mark(image_key, name, idx, x.astype(np.float32), grid)  # type: ignore[arg-type]
        if not self.marks:
            self.layer, self.size = int(features.layer), int(max(features.input_size))
            self.model_id = str(getattr(features, "model_id", ""))
        self.marks.append(mark)
        return mark

    def undo(self) -> Mark | None:
        gone = self.marks.pop() if self.marks else None
        if not self.marks:
            self.clear()  # nothing left: the next mark may use another backbone, layer or size
        return gone

    def clear(self) -> None:
        self.marks.clear()
        self.layer = self.size = self.model_id = None

    def training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """(X ``float32[n, d]``, y ``int64[n]``) over every labelled patch; a later mark on the same patch of
        the same image wins (painting over a mistake corrects it)."""
        last: dict[tuple[str, int], tuple[np.ndarray, int]] = {}
        for m in self.marks:
            k = self.classes.index(m.class_name)
            for i, row in zip(m.patches.tolist(), m.features, strict=True):
                last[(m.image_key, i)] = (row, k)
        if not last:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        rows, labels = zip(*last.values(), strict=True)
        return np.stack(rows).astype(np.float32), np.asarray(labels, np.int64)

    def counts(self) -> dict[str, int]:
        """Labelled patches per class (after later marks override earlier ones)."""
        _, y = self.training_set()
        n = np.bincount(y, minlength=len(self.classes)) if y.size else np.zeros(len(self.classes), int)
        return {c: int(v) for c, v in zip(self.classes, n, strict=True)}

    def fit(self, backbone: Any, C: float = C_SEG) -> TaughtSegmentationHead:
        """The head for everything taught so far (``TeachError`` when it cannot be fitted yet)."""
        if not self.marks:
            raise TeachError("No marks yet: pick a class and click on the image to label its patches.")
        x, y = self.training_set()
        coef, intercept = fit_patch_classifier(x, y, len(self.classes), C)
        card = taught_card(SEG_KIND, backbone, self.classes, self.size or 0, self.layer, {
            "method": "multinomial logistic regression on L2-normalised patch features; 3x3 median filter; "
                      "bilinear upsampling", "C": C, "class_weight": "balanced",
            "taught_from_images": len(self.image_keys), "marks": len(self.marks), "labelled_patches": int(len(y)),
        })
        return TaughtSegmentationHead(coef, intercept, list(self.classes), card)


def _same_source(teacher: Any, features: Any, what: str) -> None:
    """Every example of one head comes from one backbone, layer and size (their features must compare)."""
    if teacher.size is None:
        return
    mid = str(getattr(features, "model_id", ""))
    if teacher.model_id is not None and mid != teacher.model_id:
        raise TeachError(f"This {what} is being taught on backbone {teacher.model_id!r}; clear it to teach "
                         f"{mid!r} instead.")
    if (features.layer, max(features.input_size)) != (teacher.layer, teacher.size):
        raise TeachError(f"This {what} is taught on layer {teacher.layer} at {teacher.size} px; the features "
                         f"given are layer {features.layer} at {max(features.input_size)} px.")


def taught_card(kind: str, backbone: Any, classes: Sequence[str], size: int, layer: int | None,
                recipe: dict[str, Any]) -> dict[str, Any]:
    """The card of a taught head (the shipped heads' card keys, plus "taught from N images / M marks")."""
    from explorer.heads.io import make_card, utc_now

    note = (f"taught from {recipe.get('taught_from_images', 0)} images / "
            f"{recipe.get('marks', recipe.get('examples', 0))} {'marks' if 'marks' in recipe else 'examples'}")
    return make_card(kind, backbone, list(classes), int(size), recipe=recipe, layer=layer, taught=note,
                     created=utc_now())


def segmentation_from_state(state: dict[str, Any], card: dict[str, Any]) -> TaughtSegmentationHead:
    """A taught segmentation head from its weights and card (a folder or an uploaded one-file head)."""
    coef, intercept = _np(state["coef"]), _np(state["intercept"])
    names = list(card["class_names"])
    if coef.ndim != 2 or coef.shape[0] != len(names) or intercept.shape != (len(names),):
        raise ValueError("taught segmentation weights do not match their card's classes")
    return TaughtSegmentationHead(coef, intercept, names, card)


# ---------------------------------------------------------------- detection from segmentation
def boxes_from_segmentation(labels: np.ndarray, proba: np.ndarray, class_names: Sequence[str],
                            scale_xy: tuple[float, float] = (1.0, 1.0), min_area: int = 1) -> list[dict[str, Any]]:
    """Connected components (8-neighbour) of each non-background class of a class map ``[H, W]`` -> boxes
    ``{label, class_id, score, box_xyxy}``; score = the component's mean probability of its class;
    ``box_xyxy`` end-exclusive in map pixels times ``scale_xy`` (sx, sy); best first."""
    from scipy import ndimage

    out: list[dict[str, Any]] = []
    sx, sy = scale_xy
    for k, name in enumerate(class_names):
        if name.strip().lower() in BACKGROUND_NAMES:
            continue
        comp, n = ndimage.label(labels == k, structure=np.ones((3, 3), bool))
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        area = ndimage.sum_labels(np.ones_like(comp), comp, idx)
        score = ndimage.mean(proba[:, :, k], comp, idx)
        for j, sl in enumerate(ndimage.find_objects(comp)):
            if sl is None or area[j] < min_area:
                continue
            ys, xs = sl
            out.append({"label": name, "class_id": k, "score": round(float(score[j]), 4),
                        "box_xyxy": [round(xs.start * sx, 1), round(ys.start * sy, 1),
                                     round(xs.stop * sx, 1), round(ys.stop * sy, 1)]})
    out.sort(key=lambda d: -d["score"])
    return out


# ---------------------------------------------------------------- classification
@dataclass
class Example:
    image_key: str
    class_name: str
    cls: np.ndarray  # float32[d]
    patch_mean: np.ndarray  # float32[d]
    thumb: np.ndarray | None = None  # uint8[h, w, 3], small, for the "nearest examples" gallery


def example_vectors(examples: Sequence[Example], feature: str) -> np.ndarray:
    """Unit-length inputs ``[n, D]`` of the examples for ``feature`` ("cls" or "cls+avgpool")."""
    if feature == "cls":
        x = np.stack([e.cls for e in examples])
    elif feature == "cls+avgpool":
        x = np.stack([np.concatenate([e.cls, e.patch_mean]) for e in examples])
    else:
        raise TeachError(f"Unknown feature {feature!r}; use 'cls' or 'cls+avgpool'.")
    return l2_rows(x.astype(np.float64)).astype(np.float32)


def query_vector(features: Any, feature: str) -> np.ndarray:
    """The same unit-length input for a query image's ``Features``."""
    return example_vectors([example_of("", "", features)], feature)[0]


def example_of(image_key: str, class_name: str, features: Any, thumb: np.ndarray | None = None) -> Example:
    patches = _np(features.patches)
    return Example(image_key, class_name, _np(features.cls).astype(np.float32),
                   patches.reshape(-1, patches.shape[-1]).mean(0).astype(np.float32), thumb)


def fit_classifier(x: np.ndarray, y: np.ndarray, class_names: Sequence[str], feature: str) -> ProbeHead:
    """Nearest class mean when no class has two examples, else the linear probe's trainer; a ProbeHead
    that L2-normalises its input either way."""
    counts = np.bincount(y, minlength=len(class_names))
    if (counts > 0).sum() < 2:
        raise TeachError("Add examples of at least two classes.")
    if counts.max() <= 1:
        means = np.zeros((len(class_names), x.shape[1]), np.float32)
        for k in np.flatnonzero(counts):
            means[k] = x[y == k].mean(0)
        means = l2_rows(means.astype(np.float64)).astype(np.float32)
        intercept = np.where(counts > 0, 0.0, -1e30).astype(np.float32)
        d = x.shape[1]
        return ProbeHead(means / NCM_TEMPERATURE, intercept, np.zeros(d, np.float32), np.ones(d, np.float32),
                         list(class_names), feature=feature, l2_normalize=True)
    head = train_probe(x, y, class_names, C=1.0, max_iter=500, feature=feature)
    head.l2_normalize = True
    return head


@dataclass
class ClassificationTeacher(_ClassList):
    classes: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    feature: str = "cls"
    layer: int | None = None
    size: int | None = None
    model_id: str | None = None

    def _uses(self, name: str) -> int:
        return sum(e.class_name == name for e in self.examples)

    def _rename_uses(self, old: str, new: str) -> None:
        for e in self.examples:
            if e.class_name == old:
                e.class_name = new

    def add(self, image_key: str, features: Any, class_name: str, thumb: np.ndarray | None = None) -> str:
        """Add one example; a new class name is added to the list. Returns a one-line note."""
        name = str(class_name or "").strip()
        if not name:
            raise TeachError("Type the class this image belongs to.")
        if self.examples:
            _same_source(self, features, "classifier")
        if name not in self.classes:
            if len(self.classes) >= MAX_CLASSES:
                raise TeachError(f"At most {MAX_CLASSES} classes can be taught.")
            self.classes.append(name)
        for e in self.examples:
            if e.image_key == image_key:
                if e.class_name == name:
                    return f"This image is already an example of {name!r}."
                old, e.class_name = e.class_name, name
                return f"Moved this image from {old!r} to {name!r}."
        if not self.examples:
            self.layer, self.size = int(features.layer), int(max(features.input_size))
            self.model_id = str(getattr(features, "model_id", ""))
        self.examples.append(example_of(image_key, name, features, thumb))
        return f"Added to {name!r} ({self._uses(name)} example{'s' if self._uses(name) != 1 else ''})."

    def undo(self) -> Example | None:
        gone = self.examples.pop() if self.examples else None
        if not self.examples:
            self.clear()
        return gone

    def clear(self) -> None:
        self.examples.clear()
        self.layer = self.size = self.model_id = None

    def labels(self) -> np.ndarray:
        return np.asarray([self.classes.index(e.class_name) for e in self.examples], np.int64)

    def fit(self, backbone: Any) -> ProbeHead:
        if not self.examples:
            raise TeachError("No examples yet: add the current image to a class.")
        head = fit_classifier(example_vectors(self.examples, self.feature), self.labels(), self.classes, self.feature)
        counts = np.bincount(self.labels(), minlength=len(self.classes))
        head.card = taught_card(CLS_KIND, backbone, self.classes, self.size or 0, self.layer, {
            "method": "nearest class mean (cosine)" if counts.max() <= 1 else
                      "multinomial logistic regression on L2-normalised, standardised features",
            "feature": self.feature, "taught_from_images": len({e.image_key for e in self.examples}),
            "examples": len(self.examples)})
        head.card.update(feature=self.feature, l2_normalize=True)
        return head

    def nearest(self, features: Any, k: int = 4) -> list[tuple[Example, float]]:
        """The k taught examples most similar (cosine) to a query image."""
        if not self.examples:
            return []
        sims = example_vectors(self.examples, self.feature) @ query_vector(features, self.feature)
        order = np.argsort(-sims, kind="stable")[:k]
        return [(self.examples[i], float(sims[i])) for i in order]

    def leave_one_out(self) -> tuple[float, int] | None:
        """(accuracy, n) predicting each example of a class with >= 2 examples from all the others (same
        fitting rule); None until some class has two. At most ``LOO_MAX`` held-out examples, evenly spread."""
        y = self.labels()
        counts = np.bincount(y, minlength=len(self.classes))
        held = np.flatnonzero(counts[y] >= 2)
        if held.size == 0 or (counts > 0).sum() < 2:
            return None
        if held.size > LOO_MAX:
            held = held[np.linspace(0, held.size - 1, LOO_MAX).round().astype(int)]
        x = example_vectors(self.examples, self.feature)
        right = 0
        for i in held:
            keep = np.arange(len(y)) != i
            try:
                head = fit_classifier(x[keep], y[keep], self.classes, self.feature)
            except TeachError:
                continue  # the rest holds one class only: counts as a miss
            right += int(probe_predict(head, x[i:i + 1])[0] == y[i])
        return right / held.size, int(held.size)
