"""Model bundles: a folder with ``model.onnx``, ``tokenizer.json`` and ``manifest.json``, verified before use.

Loading a bundle checks, in order: the folder and manifest exist and the manifest is valid; every file the
manifest lists exists, has the recorded size and sha256; the bundle's template version and hash match the
templates this package renders with; its taxonomy version and category order match the installed taxonomy. Any
failure raises :class:`~csrm_guard.errors.BundleError` (or :class:`~csrm_guard.errors.BundleIntegrityError`
for a size or checksum mismatch) naming the file and what to do about it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from csrm_guard.errors import BundleError, BundleIntegrityError
from csrm_guard.model.manifest import Manifest
from csrm_guard.policy.render import TEMPLATE_VERSION, template_hash
from csrm_guard.policy.taxonomy import load_taxonomy

__all__ = [
    "MODEL_FILE",
    "REQUIRED_FILES",
    "TOKENIZER_FILE",
    "Bundle",
    "default_bundle_path",
    "load_bundle",
    "sha256",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE)
"""Files every bundle must list in ``manifest.files``."""

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified model bundle.

    Attributes:
        path: The bundle folder.
        manifest: Its parsed manifest.
    """

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        """Path of the ONNX graph."""
        return self.path / MODEL_FILE

    @property
    def tokenizer_path(self) -> Path:
        """Path of the ``tokenizers`` JSON file."""
        return self.path / TOKENIZER_FILE

    @property
    def model_id(self) -> str:
        """``<model_id>@<model_version>+<12 hex digits of model.onnx's sha256>``, as logged in decisions."""
        digest = self.manifest.files[MODEL_FILE].sha256[:12]
        return f"{self.manifest.model_id}@{self.manifest.model_version}+{digest}"


def default_bundle_path() -> Path:
    """The bundle shipped inside the package, ``csrm_guard/model/default/``."""
    return Path(__file__).resolve().parent / "default"


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_bundle(path: str | os.PathLike[str] | None = None, *, verify: bool = True) -> Bundle:
    """Read and verify a model bundle.

    Args:
        path: The bundle folder (default: :func:`default_bundle_path`).
        verify: Check sizes and sha256 of every file (on by default; turn off only for bundles you just
            verified).

    Returns:
        The verified bundle.

    Raises:
        BundleError: The folder or a file is missing, the manifest is invalid, or the bundle was built for
            other templates or another taxonomy.
        BundleIntegrityError: A file's size or sha256 differs from the manifest (truncated or altered).
    """
    folder = Path(path) if path is not None else default_bundle_path()
    manifest = _read_manifest(folder, shipped=path is None)
    _check_file_list(folder, manifest)
    for name, entry in manifest.files.items():
        _check_file(folder / name, entry.bytes, entry.sha256 if verify else None)
    _check_compatibility(folder, manifest)
    bundle = Bundle(folder, manifest)
    logger.info("loaded model bundle %s from %s", bundle.model_id, folder)
    return bundle


def _read_manifest(folder: Path, *, shipped: bool) -> Manifest:
    manifest_path = folder / MANIFEST_FILE
    if not folder.is_dir():
        hint = (
            "the default model bundle is not installed with this copy of csrm-guard; pass model=PATH to a "
            "bundle folder, or install a release that ships csrm_guard/model/default/"
            if shipped
            else "pass the folder that holds model.onnx, tokenizer.json and manifest.json"
        )
        raise BundleError(f"model bundle folder {folder} does not exist: {hint}", path=str(folder))
    if not manifest_path.is_file():
        raise BundleError(
            f"{manifest_path} is missing: a bundle folder needs manifest.json "
            "(written by `csrm-guard export`)",
            path=str(manifest_path),
        )
    try:
        return Manifest.model_validate_json(manifest_path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise BundleError(
            f"{manifest_path} is not a valid manifest: {where}: {first['msg']} "
            f"({exc.error_count()} problem(s)); re-export the bundle",
            path=str(manifest_path),
        ) from exc


def _check_file_list(folder: Path, manifest: Manifest) -> None:
    for name in REQUIRED_FILES:
        if name not in manifest.files:
            raise BundleError(
                f"{folder / MANIFEST_FILE} does not list {name!r} under 'files'; re-export the bundle",
                path=str(folder / MANIFEST_FILE),
            )
    for name in manifest.files:
        # A manifest names files inside its own folder only; refuse anything that could point elsewhere.
        if Path(name).is_absolute() or ".." in Path(name).parts or name == MANIFEST_FILE:
            raise BundleError(
                f"{folder / MANIFEST_FILE} lists an invalid file name {name!r}",
                path=str(folder / MANIFEST_FILE),
            )


def _check_file(path: Path, expected_bytes: int, expected_sha: str | None) -> None:
    if not path.is_file():
        raise BundleError(
            f"{path} is missing from the bundle; restore it or re-download/re-export the whole bundle",
            path=str(path),
        )
    size = path.stat().st_size
    if size != expected_bytes:
        state = "truncated" if size < expected_bytes else "larger than recorded"
        raise BundleIntegrityError(
            f"{path} is {state}: {size} bytes, manifest says {expected_bytes}; the copy is incomplete or "
            "altered, re-download or re-export the bundle",
            path=str(path),
        )
    if expected_sha is not None and (actual := sha256(path)) != expected_sha:
        raise BundleIntegrityError(
            f"{path} is altered: sha256 {actual[:16]}..., manifest says {expected_sha[:16]}...; "
            "re-download or re-export the bundle",
            path=str(path),
        )


def _check_compatibility(folder: Path, manifest: Manifest) -> None:
    where = str(folder / MANIFEST_FILE)
    if manifest.template_version != TEMPLATE_VERSION or manifest.template_hash != template_hash():
        raise BundleError(
            f"{where}: the bundle was trained on templates v{manifest.template_version} "
            f"(hash {manifest.template_hash[:12]}), this csrm-guard renders v{TEMPLATE_VERSION} "
            f"(hash {template_hash()[:12]}); the model would read text it was not trained on. Use a bundle "
            "exported with this version of csrm-guard, or the csrm-guard version that exported the bundle",
            path=where,
        )
    taxonomy = load_taxonomy()
    if manifest.taxonomy_version != taxonomy.version or tuple(manifest.categories) != taxonomy.ids:
        raise BundleError(
            f"{where}: the bundle's severity head covers taxonomy {manifest.taxonomy_version} "
            f"({len(manifest.categories)} categories), this csrm-guard ships taxonomy {taxonomy.version} "
            f"({len(taxonomy.ids)} categories); use a bundle exported for taxonomy {taxonomy.version}",
            path=where,
        )
