"""Save and load routers as a plain directory: `router.json` (config, cards, small parameters),
`arrays.npz` (weights, no pickle) and the embedder's own files. `load_router(uri)` also accepts an
MLflow model URI (`models:/inferroute@champion`, `runs:/...`); mlflow is imported only then.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from inferroute.catalog import CardBook
from inferroute.classifier import TaskClassifier
from inferroute.config import RouterConfig
from inferroute.costs import OutputLengths
from inferroute.errors import InferrouteError
from inferroute.features import load_embedder
from inferroute.latent import LatentQualityModel
from inferroute.scoring import QualityModel

if TYPE_CHECKING:
    from inferroute.policy import Router

FORMAT_VERSION = 2  # 2: the joint latent quality model (lat_* arrays)


def save_router(router: Router, path: Path) -> None:
    from inferroute.learned import LearnedRouter

    path.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "kind": router.name,
        "version": router.version,
        "config": router.config.to_flat_dict(),
        "cards": router.book.to_dict(),
    }
    if isinstance(router, LearnedRouter):
        meta["embedder"] = router.embedder.save(path)
        meta["stats"] = {"mu": router.stats_mu.tolist(), "sd": router.stats_sd.tolist()}
        clf = router.classifier
        meta["classifier"] = {
            "classes": list(clf.classes),
            "n_dense": clf.n_dense,
            "n_hash": clf.n_hash,
            "temperature": clf.temperature,
            "n_char": clf.n_char,
            "ood_lo": clf.ood_lo,
            "ood_hi": clf.ood_hi,
            "words_lo": clf.words_lo,
            "words_hi": clf.words_hi,
        }
        meta["quality"] = router.quality.params()
        meta["complexity"] = {
            "intercept": router.complexity_intercept,
            "cuts": list(router.complexity_cuts),
        }
        meta["lengths"] = router.lengths.to_dict()
        np.savez(
            path / "arrays.npz",
            clf_coef=clf.coef,
            clf_intercept=clf.intercept,
            clf_bank=clf.bank,
            clf_seen_words=np.packbits(clf.seen_words),
            complexity_coef=router.complexity_coef,
            **router.quality.arrays(),
            **router.latent.arrays(),
        )
    (path / "router.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_router_dir(path: Path) -> Router:
    from inferroute.learned import LearnedRouter
    from inferroute.prior import PriorRouter

    meta = json.loads((path / "router.json").read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise InferrouteError(f"unsupported router format {meta.get('format')!r} in {path}")
    config = RouterConfig.from_mapping(meta["config"])
    book = CardBook.from_dict(meta["cards"])
    if meta["kind"] == PriorRouter.name:
        return PriorRouter(book, config)
    arr = np.load(path / "arrays.npz")
    c = meta["classifier"]
    clf = TaskClassifier(
        tuple(c["classes"]),
        arr["clf_coef"],
        arr["clf_intercept"],
        int(c["n_dense"]),
        int(c["n_hash"]),
        float(c["temperature"]),
        int(c.get("n_char", 0)),
        arr["clf_bank"] if "clf_bank" in arr else np.zeros((0, 0), np.float16),
        float(c.get("ood_lo", 0.0)),
        float(c.get("ood_hi", 0.0)),
        _seen_words(arr),
        float(c.get("words_lo", 0.0)),
        float(c.get("words_hi", 0.0)),
    )
    cuts = meta["complexity"]["cuts"]
    return LearnedRouter(
        config,
        book,
        meta["version"],
        load_embedder(path, meta["embedder"]),
        np.asarray(meta["stats"]["mu"], dtype=np.float32),
        np.asarray(meta["stats"]["sd"], dtype=np.float32),
        clf,
        QualityModel.from_saved(meta["quality"], arr),
        LatentQualityModel.from_saved(meta["quality"]["models"], arr),
        arr["complexity_coef"],
        float(meta["complexity"]["intercept"]),
        (float(cuts[0]), float(cuts[1])),
        OutputLengths.from_dict(meta["lengths"]),
    )


def _seen_words(arr: Any) -> npt.NDArray[np.bool_]:
    if "clf_seen_words" not in arr:
        return np.zeros(0, np.bool_)
    out: npt.NDArray[np.bool_] = np.unpackbits(arr["clf_seen_words"]).astype(np.bool_)
    return out


def load_router(uri: str | Path) -> Router:
    """A router from a saved directory or an MLflow model URI (`models:/inferroute@champion`)."""
    text = str(uri)
    if "://" not in text and not text.startswith(("models:/", "runs:/")):
        return load_router_dir(Path(text))
    from inferroute.packaging import load_mlflow_router

    return load_mlflow_router(text)
