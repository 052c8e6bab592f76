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
UNSAFE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".npy", ".npz", ".ckpt"}
MANIFEST = "manifest.json"


class ArtifactError(Exception):
    """An artifact is missing, altered, or in a format we refuse to load."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_dir(tenant: Tenant, job_id: int | str, family: str) -> Path:
    return Path(settings.MODEL_DIR) / str(tenant.pk) / f"job-{job_id}" / family


def write_manifest(directory: Path) -> str:
    """Hash every file in ``directory`` into manifest.json; return the manifest's sha256."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            if path.suffix.lower() in UNSAFE_SUFFIXES:
                raise ArtifactError(f"refusing to register an unsafe file format: {path.name}")
            files[str(path.relative_to(directory))] = sha256_file(path)
    manifest = directory / MANIFEST
    # A family may have written its own manifest (with its kind and format); keep those
    # keys and make the file list cover everything in the directory.
    existing = json.loads(manifest.read_text()) if manifest.is_file() else {}
    manifest.write_text(json.dumps({**existing, "files": files}, indent=1, sort_keys=True))
    return sha256_file(manifest)


def verify_artifact(directory: Path, expected_sha256: str) -> None:
    """Raise ArtifactError unless the directory matches its manifest and the manifest its hash."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise ArtifactError(f"no manifest in {directory}")
    if sha256_file(manifest) != expected_sha256:
        raise ArtifactError(f"manifest of {directory} does not match the registered checksum")
    listed = json.loads(manifest.read_text())["files"]
    for path in directory.rglob("*"):
        if path.is_file() and path.suffix.lower() in UNSAFE_SUFFIXES:
            raise ArtifactError(f"refusing to load {path.name}: pickle-based formats are never loaded")
        if path.is_file() and path.name != MANIFEST and str(path.relative_to(directory)) not in listed:
            raise ArtifactError(f"unexpected file {path.name} in {directory}")
    for name, digest in listed.items():
        path = directory / name
        if not path.is_file() or sha256_file(path) != digest:
            raise ArtifactError(f"{name} in {directory} is missing or was altered")


def get_model_version(tenant: Tenant, version_id: int) -> ModelVersion:
    with tenant_context(tenant):
        version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise Http404("No such model version")
    return version


def active_versions(tenant: Tenant) -> dict[str, ModelVersion]:
    with tenant_context(tenant):
        return {v.target: v for v in ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE)}


def do_promote_model_version(tenant: Tenant, version_id: int, *, acting_user: Any = None) -> ModelVersion:
    """Make a version the active one for its target; the previous active one is archived."""
    version = get_model_version(tenant, version_id)
    verify_artifact(Path(version.artifact_path), version.artifact_sha256)
    with tenant_context(tenant), transaction.atomic():
        # Lock the target's versions so two promotions cannot interleave.
        list(ModelVersion.objects.select_for_update().filter(target=version.target).values_list("pk", flat=True))
        ModelVersion.objects.filter(target=version.target, state=ModelVersion.State.ACTIVE).exclude(pk=version.pk).update(state=ModelVersion.State.ARCHIVED)
        ModelVersion.objects.filter(pk=version.pk).update(
            state=ModelVersion.State.ACTIVE, activated_at=timezone.now(), activated_by=acting_user if getattr(acting_user, "pk", None) else None
        )
        version.refresh_from_db()
    return version


def do_rollback_model(tenant: Tenant, target: str, *, acting_user: Any = None) -> ModelVersion:
    """Re-activate the version that was active before the current one."""
    with tenant_context(tenant):
        current = ModelVersion.objects.filter(target=target, state=ModelVersion.State.ACTIVE).first()
        previous = (
            ModelVersion.objects.filter(target=target, state=ModelVersion.State.ARCHIVED, activated_at__isnull=False)
            .exclude(pk=getattr(current, "pk", None))
            .order_by("-activated_at")
            .first()
        )
    if previous is None:
        raise ValueError(f"There is no earlier {target} model to roll back to.")
    return do_promote_model_version(tenant, previous.pk, acting_user=acting_user)
