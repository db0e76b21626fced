"""A small builder of test images: layer tarballs from a root dir, written as OCI layout or docker save.

Layer 1 is the whole root; layer 2 holds modifications (Put, Delete = whiteout, Opaque dir).
`apply_ops` performs the same modifications on a plain copy, the "equivalent unpacked root".
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


@dataclass(frozen=True)
class Put:
    """Add or replace a regular file."""

    path: str
    data: bytes
    mode: int = 0o755


@dataclass(frozen=True)
class Delete:
    """Remove a file or directory of the lower layer (a `.wh.NAME` whiteout)."""

    path: str


@dataclass(frozen=True)
class Opaque:
    """Empty a directory of its lower-layer content (`.wh..wh..opq`)."""

    path: str


Op = Put | Delete | Opaque


def _rel(path: str) -> str:
    return path.strip("/")


def tar_tree(root: Path, out: Path) -> Path:
    """Tar the whole of `root` (names relative, sorted, hard links and symlinks kept)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as archive:
        for directory, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(directory, name)
                archive.add(path, arcname=os.path.relpath(path, root), recursive=False)
    return out


def tar_ops(ops: list[Op], out: Path) -> Path:
    """The modification layer, as a container runtime's diff would record it."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as archive:
        for op in ops:
            rel = _rel(op.path)
            if isinstance(op, Put):
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime = len(op.data), op.mode, 1_700_000_000
                archive.addfile(info, io.BytesIO(op.data))
            elif isinstance(op, Delete):
                parent, _, name = rel.rpartition("/")
                archive.addfile(
                    tarfile.TarInfo(f"{parent}/.wh.{name}" if parent else f".wh.{name}")
                )
            else:
                info = tarfile.TarInfo(rel)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
                archive.addfile(tarfile.TarInfo(f"{rel}/.wh..wh..opq"))
    return out


def build_layers(root_dir: Path, second_layer_ops: list[Op], out_dir: Path) -> list[Path]:
    """[layer 1 = the whole root, layer 2 = the ops], uncompressed tarballs in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        tar_tree(root_dir, out_dir / "layer1.tar"),
        tar_ops(second_layer_ops, out_dir / "layer2.tar"),
    ]


def apply_ops(root: Path, ops: list[Op]) -> None:
    """The same modifications on a plain root: whiteouts first (they hide lower layers only)."""
    for op in ops:
        target = root / _rel(op.path)
        if isinstance(op, Delete):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        elif isinstance(op, Opaque):
            if target.is_dir() and not target.is_symlink():
                for child in target.iterdir():
                    shutil.rmtree(
                        child
                    ) if child.is_dir() and not child.is_symlink() else child.unlink()
            else:
                target.mkdir(parents=True, exist_ok=True)
    for op in ops:
        if isinstance(op, Put):
            target = root / _rel(op.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                target.unlink()
            target.write_bytes(op.data)
            os.chmod(target, op.mode)


def compress(layer: Path, out: Path, compression: str) -> Path:
    """`layer` (a plain tar) compressed as gzip, zstd or not at all."""
    with open(layer, "rb") as source, open(out, "wb") as sink:
        if compression == "gzip":
            with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=1, mtime=0) as packed:
                shutil.copyfileobj(source, packed, 1 << 20)
        elif compression == "zstd":
            import zstandard

            with zstandard.ZstdCompressor(level=1).stream_writer(sink, closefd=False) as packed:
                shutil.copyfileobj(source, packed, 1 << 20)
        elif compression == "none":
            shutil.copyfileobj(source, sink, 1 << 20)
        else:
            raise ValueError(compression)
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def image_config(
    env: list[str] = (), user: str = "", labels: dict[str, str] | None = None
) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": list(env), "User": user, "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": []},
    }


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True).encode()


def _put_blob(layout: Path, path: Path | None = None, data: bytes | None = None) -> tuple[str, int]:
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    if data is not None:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (blobs / digest[7:]).write_bytes(data)
        return digest, len(data)
    assert path is not None
    digest = sha256_file(path)
    shutil.copyfile(path, blobs / digest[7:])
    return digest, path.stat().st_size


def write_oci_layout(
    directory: Path,
    layers: list[Path],
    config: dict[str, Any],
    *,
    ref_name: str | None = "latest",
    compression: str = "gzip",
) -> str:
    """An OCI image layout in `directory`; returns the manifest digest."""
    directory.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(config))
    config["rootfs"]["diff_ids"] = [sha256_file(layer) for layer in layers]
    descriptors = []
    with tempfile.TemporaryDirectory() as scratch:
        for number, layer in enumerate(layers):
            packed = compress(layer, Path(scratch) / f"{number}.blob", compression)
            digest, size = _put_blob(directory, packed)
            descriptors.append(
                {"mediaType": LAYER_TYPES[compression], "digest": digest, "size": size}
            )
    config_digest, config_size = _put_blob(directory, data=_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": descriptors,
    }
    manifest_digest, manifest_size = _put_blob(directory, data=_json(manifest))
    entry: dict[str, Any] = {
        "mediaType": OCI_MANIFEST,
        "digest": manifest_digest,
        "size": manifest_size,
    }
    if ref_name is not None:
        entry["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
    (directory / "index.json").write_bytes(_json(index))
    (directory / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    return manifest_digest


def _tar_dir(directory: Path, tarpath: Path) -> Path:
    with tarfile.open(tarpath, "w") as archive:
        for path in sorted(directory.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return tarpath


def write_oci_archive(
    tarpath: Path, layers: list[Path], config: dict[str, Any], **options: Any
) -> str:
    """The same layout inside a tarball (as `skopeo copy ... oci-archive:` writes); manifest digest."""
    with tempfile.TemporaryDirectory() as scratch:
        digest = write_oci_layout(Path(scratch) / "layout", layers, config, **options)
        _tar_dir(Path(scratch) / "layout", tarpath)
    return digest


def write_docker_save(
    tarpath: Path,
    layers: list[Path],
    config: dict[str, Any],
    repo_tags: list[str],
    compression: str = "none",
) -> str:
    """A `docker save` tarball (classic layout: ID/layer.tar, CONFIG.json); returns the image id."""
    config = json.loads(json.dumps(config))
    config["rootfs"]["diff_ids"] = [sha256_file(layer) for layer in layers]
    raw_config = _json(config)
    image_id = hashlib.sha256(raw_config).hexdigest()
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "save"
        tree.mkdir()
        names = []
        for layer in layers:
            layer_id = sha256_file(layer)[7:]
            (tree / layer_id).mkdir()
            compress(layer, tree / layer_id / "layer.tar", compression)
            names.append(f"{layer_id}/layer.tar")
        (tree / f"{image_id}.json").write_bytes(raw_config)
        manifest = [{"Config": f"{image_id}.json", "RepoTags": repo_tags, "Layers": names}]
        (tree / "manifest.json").write_bytes(_json(manifest))
        _tar_dir(tree, tarpath)
    return "sha256:" + image_id
