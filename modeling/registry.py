"""The model registry: where artifacts live, how they are checked, and promotion.

Artifacts are written under ``MODEL_DIR/<tenant>/job-<id>/<family>/`` with a
``manifest.json`` listing each file's sha256. A version's ``artifact_sha256`` is the hash
of that manifest, so one check covers every file. Loading verifies both and refuses any
pickle-format file: weights load only from safetensors, JSON or LightGBM text.

Promotion is atomic: in one transaction the old active version of a target is archived
and the new one activated (a partial unique index allows one active version per target).
Until that transaction commits, the old version keeps serving.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from clmsite.models import Tenant
from clmsite.tenancy import tenant_context
from modeling.models import ModelVersion

# Formats that run code when loaded. None of our writers produce them; a file like this
# in an artifact directory was put there by someone else.
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".npy", ".npz", ".ckpt")
MANIFEST = "manifest.json"


class ArtifactError(ValueError):
    """An artifact is missing, altered, or in a format we refuse to load."""


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_dir(tenant: Tenant, job_id: int | str, family: str) -> Path:
    return Path(settings.MODEL_DIR) / str(tenant.pk) / f"job-{job_id}" / family


def write_manifest(directory: Path, extra: dict[str, Any] | None = None) -> str:
    """Hash every file in ``directory`` into manifest.json; return the manifest's sha256.

    Keys a family already wrote there (its kind and format) are kept, ``extra`` is added,
    and the file list always covers everything in the directory."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            if path.suffix.lower() in UNSAFE_SUFFIXES:
                raise ArtifactError(f"refusing to save an unsafe file format: {path.name}")
            files[path.relative_to(directory).as_posix()] = sha256_file(path)
    manifest = directory / MANIFEST
    existing = json.loads(manifest.read_text()) if manifest.is_file() else {}
    manifest.write_text(json.dumps({**existing, **(extra or {}), "files": files}, indent=1, sort_keys=True))
    return sha256_file(manifest)


def verify_directory(directory: Path) -> dict[str, Any]:
    """The manifest of a saved directory, after checking every file in it.

    Refuses a pickle-capable file anywhere in the directory, a file the manifest does not
    list, a missing file, or a sha256 mismatch. Nothing in the directory is parsed before
    this passes, so a planted pickle never gets the chance to run."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"no {MANIFEST} in {directory}")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST}
    unsafe = sorted(name for name in present if Path(name).suffix.lower() in UNSAFE_SUFFIXES)
    if unsafe:
        raise ArtifactError(f"refusing to load {', '.join(unsafe)}: pickle-based formats are never loaded")
    manifest = json.loads(manifest_path.read_text())
    listed = manifest.get("files", {})
    unexpected = sorted(present - set(listed))
    if unexpected:
        raise ArtifactError(f"unexpected file(s) {', '.join(unexpected)} in {directory}")
    for name, digest in listed.items():
        path = directory / name
        if not path.is_file() or sha256_file(path) != digest:
            raise ArtifactError(f"{name} in {directory} is missing or was altered (sha256 mismatch)")
    return manifest


def verify_artifact(directory: Path, expected_sha256: str) -> dict[str, Any]:
    """verify_directory, plus: the manifest itself is the one the registry recorded."""
    manifest = Path(directory) / MANIFEST
    if not manifest.is_file():
        raise ArtifactError(f"no {MANIFEST} in {directory}")
    if sha256_file(manifest) != expected_sha256:
        raise ArtifactError(f"manifest of {directory} does not match the registered checksum")
    return verify_directory(Path(directory))


def get_model_version(tenant: Tenant, version_id: int) -> ModelVersion:
    with tenant_context(tenant):
        version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise Http404("No such model version")
    return version


def active_versions(tenant: Tenant) -> dict[str, ModelVersion]:
    with tenant_context(tenant):
        return {v.target: v for v in ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE)}


class NotPromotable(ValueError):
    """A version that must not serve: its training was cancelled or failed."""


def do_promote_model_version(tenant: Tenant, version_id: int, *, acting_user: Any = None) -> ModelVersion:
    """Make a version the active one for its target; the previous active one is archived. The
    active version itself is left as it is: promoting it again re-stamped when it began serving."""
    version = get_model_version(tenant, version_id)
    if version.state == ModelVersion.State.ACTIVE:
        return version
    with tenant_context(tenant):
        job = version.job
    if job is not None and job.state in (job.State.CANCELLED, job.State.FAILED):
        raise NotPromotable(f"This model's training (job {job.pk}) was {job.get_state_display().lower()}, so it cannot serve; retrain instead.")
    verify_artifact(Path(version.artifact_path), version.artifact_sha256)
    with tenant_context(tenant), transaction.atomic():
        # Lock the target's versions so two promotions cannot interleave.
        list(ModelVersion.objects.select_for_update().filter(target=version.target).values_list("pk", flat=True))
        ModelVersion.objects.filter(target=version.target, state=ModelVersion.State.ACTIVE).exclude(pk=version.pk).update(state=ModelVersion.State.ARCHIVED)
        ModelVersion.objects.filter(pk=version.pk).update(
            state=ModelVersion.State.ACTIVE, activated_at=timezone.now(), activated_by=acting_user if getattr(acting_user, "pk", None) else None,
            rolled_back_at=None,
        )
        version.refresh_from_db()
    return version


def _served_before() -> Any:
    """Versions that served once and were replaced by a newer one (not taken back by a
    rollback): what a rollback can restore, so that rollbacks walk back through the history
    rather than swap the last two versions."""
    return ModelVersion.objects.filter(state=ModelVersion.State.ARCHIVED, activated_at__isnull=False, rolled_back_at__isnull=True)


def rollback_targets(tenant: Tenant) -> set[str]:
    """The targets ``do_rollback_model`` can roll back."""
    with tenant_context(tenant):
        return set(_served_before().values_list("target", flat=True))


def do_rollback_model(tenant: Tenant, target: str, *, acting_user: Any = None) -> ModelVersion:
    """Re-activate the version that was active before the current one."""
    with tenant_context(tenant):
        current = ModelVersion.objects.filter(target=target, state=ModelVersion.State.ACTIVE).first()
        previous = _served_before().filter(target=target).exclude(pk=getattr(current, "pk", None)).order_by("-activated_at").first()
    if previous is None:
        raise ValueError(f"There is no earlier {ModelVersion.Target(target).label.lower()} model to roll back to.")
    restored = do_promote_model_version(tenant, previous.pk, acting_user=acting_user)
    if current is not None:
        with tenant_context(tenant):
            ModelVersion.objects.filter(pk=current.pk).update(rolled_back_at=timezone.now())
    return restored
