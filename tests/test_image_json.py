"""Image JSON from a hostile author: nesting, wrong field types and several tags give a clear
ImageError (exit 2), never RecursionError/TypeError (exit 5) or a silently misread image."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from imagebuilder import image_config, write_docker_save, write_oci_layout

import scanner
from scanner import cli
from scanner.targets.image import Image, ImageError, open_image

DEEP = b"[" * 100_000 + b"]" * 100_000
Edit = Callable[[Any], Any]


def layer_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


def oci_layout(tmp_path: Path, ref: str | None = "latest", data: bytes = b"x") -> Path:
    layout = tmp_path / "oci"
    layer = layer_tar(tmp_path / f"layer-{ref}.tar", {"etc/which": data})
    write_oci_layout(layout, [layer], image_config(), ref_name=ref, compression="none")
    return layout


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _put(layout: Path, raw: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    _blob(layout, digest).write_bytes(raw)
    return digest, len(raw)


def _raw(document: Any) -> bytes:
    return document if isinstance(document, bytes) else json.dumps(document).encode()


def rewrite_oci(
    layout: Path,
    *,
    index: Edit | None = None,
    manifest: Edit | None = None,
    config: Edit | None = None,
) -> None:
    """Edit the layout's config, manifest and index.json (each edit returns the new document or
    its raw bytes), the digests up the chain brought in line: only the content is hostile."""
    top = json.loads((layout / "index.json").read_bytes())
    entry = top["manifests"][0]
    document = json.loads(_blob(layout, entry["digest"]).read_bytes())
    if config is not None:
        old = json.loads(_blob(layout, document["config"]["digest"]).read_bytes())
        digest, size = _put(layout, _raw(config(old)))
        document["config"].update(digest=digest, size=size)
    new_manifest = _raw(manifest(document) if manifest is not None else document)
    digest, size = _put(layout, new_manifest)
    entry.update(digest=digest, size=size)
    (layout / "index.json").write_bytes(_raw(index(top) if index is not None else top))


def docker_dir(tmp_path: Path, **save: Any) -> Path:
    """A `docker save` unpacked into a directory (as `tar -x` of `docker save` leaves it)."""
    archive = tmp_path / "save.tar"
    layer = layer_tar(tmp_path / "layer.tar", {"etc/which": b"x"})
    write_docker_save(archive, [layer], image_config(), save.get("tags", ["app:1"]), "none")
    directory = tmp_path / "save"
    with tarfile.open(archive) as unpacked:
        unpacked.extractall(directory, filter="tar")
    return directory


def rewrite_docker(
    directory: Path, *, manifest: Edit | None = None, config: Edit | None = None
) -> None:
    listing = json.loads((directory / "manifest.json").read_bytes())
    if config is not None:
        path = directory / listing[0]["Config"]
        path.write_bytes(_raw(config(json.loads(path.read_bytes()))))
    if manifest is not None:
        (directory / "manifest.json").write_bytes(_raw(manifest(listing)))


def opened(path: Path, tmp_path: Path, **options: Any) -> Image:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    try:
        with open_image(path, workdir=str(work), **options) as image:
            return image
    finally:
        assert not list(work.iterdir()), "the temp dir must always be removed"


# -- nesting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["index", "manifest", "config"])
def test_deep_oci_json_is_an_image_error(tmp_path: Path, where: str) -> None:
    layout = oci_layout(tmp_path)
    if where == "index":
        (layout / "index.json").write_bytes(DEEP)
    else:
        rewrite_oci(layout, **{where: lambda _document: DEEP})
    with pytest.raises(ImageError, match=r"nested deeper than 64 levels"):
        opened(layout, tmp_path)


@pytest.mark.parametrize("where", ["manifest", "config"])
def test_deep_docker_json_is_an_image_error(tmp_path: Path, where: str) -> None:
    directory = docker_dir(tmp_path)
    rewrite_docker(directory, **{where: lambda _document: DEEP})
    with pytest.raises(ImageError, match=r"nested deeper than 64 levels"):
        opened(directory, tmp_path)


def test_deep_config_in_an_archive_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = docker_dir(tmp_path)
    rewrite_docker(directory, config=lambda _document: DEEP)
    archive = tmp_path / "hostile.tar"
    with tarfile.open(archive, "w") as packed:
        for path in sorted(directory.rglob("*")):
            packed.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    assert cli.main(["image", str(archive), "--quiet", "--no-process-env"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "nested deeper than 64 levels" in err and "Traceback" not in err


# -- fields of the wrong type ----------------------------------------------------------------


def _runtime(**fields: Any) -> Edit:
    def edit(config: dict[str, Any]) -> dict[str, Any]:
        config["config"].update(fields)
        return config

    return edit


def _top(**fields: Any) -> Edit:
    def edit(config: dict[str, Any]) -> dict[str, Any]:
        config.update(fields)
        return config

    return edit


def _entry(**fields: Any) -> Edit:
    def edit(index: dict[str, Any]) -> dict[str, Any]:
        index["manifests"][0].update(fields)
        return index

    return edit


CONFIG_CASES = [
    (_runtime(Labels=["a=b"]), r"config: 'Labels' is an array, not an object"),
    (_runtime(Labels="a=b"), r"config: 'Labels' is a string, not an object"),
    (_runtime(Labels={"a": 1}), r"config: Labels\['a'\] is a number, not a string"),
    (_runtime(Env=7), r"config: 'Env' is a number, not an array"),
    (_runtime(Env="PATH=/bin"), r"config: 'Env' is a string, not an array"),
    (_runtime(Env=["A=1", {"B": 2}]), r"config: Env\[1\] is an object, not a string"),
    (_runtime(User=0), r"config: 'User' is a number, not a string"),
    (_top(config=["Env"]), r"'config' is an array, not an object"),
    (_top(rootfs=["layers"]), r"'rootfs' is an array, not an object"),
    (_top(rootfs={"diff_ids": "sha256:00"}), r"rootfs: 'diff_ids' is a string, not an array"),
    (_top(os=1), r"'os' is a number, not a string"),
    (lambda _config: ["not", "an", "object"], r"image config .* is an array, not an object"),
]
CONFIG_IDS = [
    *("labels-array", "labels-string", "label-number", "env-number", "env-string"),
    *("env-entry-object", "user-number", "config-array", "rootfs-array", "diff-ids-string"),
    *("os-number", "config-not-object"),
]


@pytest.mark.parametrize(("edit", "match"), CONFIG_CASES, ids=CONFIG_IDS)
def test_config_fields_of_the_wrong_type(tmp_path: Path, edit: Edit, match: str) -> None:
    layout = oci_layout(tmp_path)
    rewrite_oci(layout, config=edit)
    with pytest.raises(ImageError, match=match):
        opened(layout, tmp_path)


@pytest.mark.parametrize(("edit", "match"), CONFIG_CASES[:7], ids=CONFIG_IDS[:7])
def test_docker_config_fields_of_the_wrong_type(tmp_path: Path, edit: Edit, match: str) -> None:
    directory = docker_dir(tmp_path)
    rewrite_docker(directory, config=edit)
    with pytest.raises(ImageError, match=match):
        opened(directory, tmp_path)


INDEX_CASES = [
    (_entry(annotations=["latest"]), r"manifests\[0\]: 'annotations' is an array, not an object"),
    (
        _entry(annotations={"org.opencontainers.image.ref.name": 1}),
        r"annotations\['org.opencontainers.image.ref.name'\] is a number, not a string",
    ),
    (_entry(platform="linux/amd64"), r"manifests\[0\]: 'platform' is a string, not an object"),
    (_entry(platform={"os": ["linux"]}), r"platform: 'os' is an array, not a string"),
    (_entry(mediaType=["x"]), r"'mediaType' is an array, not a string"),
    (lambda index: {**index, "manifests": ["sha256:00"]}, r"manifests\[0\] is a string"),
    (lambda index: {**index, "manifests": {"a": 1}}, r"'manifests' is an object, not an array"),
    (lambda index: [index], r"index.json is an array, not an object"),
]
INDEX_IDS = [
    *("annotations-array", "annotation-number", "platform-string", "platform-os-array"),
    *("media-type-array", "entry-string", "manifests-object", "index-array"),
]


@pytest.mark.parametrize(("edit", "match"), INDEX_CASES, ids=INDEX_IDS)
def test_index_fields_of_the_wrong_type(tmp_path: Path, edit: Edit, match: str) -> None:
    layout = oci_layout(tmp_path)
    rewrite_oci(layout, index=edit)
    with pytest.raises(ImageError, match=match):
        opened(layout, tmp_path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: {**m, "layers": {"0": m["layers"][0]}}, r"'layers' is an object, not an array"),
        (lambda m: [m], r"manifest sha256:.* is an array, not an object"),
    ],
    ids=["layers-object", "manifest-array"],
)
def test_manifest_fields_of_the_wrong_type(tmp_path: Path, edit: Edit, match: str) -> None:
    layout = oci_layout(tmp_path)
    rewrite_oci(layout, manifest=edit)
    with pytest.raises(ImageError, match=match):
        opened(layout, tmp_path)


def _first(**fields: Any) -> Edit:
    def edit(listing: list[dict[str, Any]]) -> list[dict[str, Any]]:
        listing[0].update(fields)
        return listing

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_first(RepoTags="app:1"), r"manifest.json\[0\]: 'RepoTags' is a string, not an array"),
        (_first(RepoTags=[1]), r"RepoTags\[0\] is a number, not a string"),
        (_first(Layers=[{"a": 1}]), r"Layers\[0\] is an object, not a string"),
        (_first(Config=5), r"'Config' is a number, not a string"),
        (lambda listing: ["x", *listing], r"manifest.json\[0\] is a string, not an object"),
    ],
    ids=["repotags-string", "repotag-number", "layer-object", "config-number", "entry-string"],
)
def test_docker_manifest_fields_of_the_wrong_type(tmp_path: Path, edit: Edit, match: str) -> None:
    directory = docker_dir(tmp_path)
    rewrite_docker(directory, manifest=edit)
    with pytest.raises(ImageError, match=match):
        opened(directory, tmp_path)


def test_null_fields_are_absent(tmp_path: Path) -> None:
    """docker writes `"Labels": null`, `"Env": null`: as if absent, not an error."""
    layout = oci_layout(tmp_path)
    rewrite_oci(
        layout,
        config=_runtime(Labels=None, Env=None, User=None),
        index=_entry(annotations=None, platform=None),
    )
    image = opened(layout, tmp_path)
    assert image.env == () and dict(image.labels) == {} and image.user is None


# -- several images: IMAGE:TAG and --tag -----------------------------------------------------


def two_tags(tmp_path: Path) -> Path:
    """One OCI layout holding two images, tagged 1.0 and 2.0 (as `skopeo copy` to
    oci:DIR:1.0 and then oci:DIR:2.0 leaves it), with no platform in index.json."""
    layout = oci_layout(tmp_path, "1.0", b"one")
    first = json.loads((layout / "index.json").read_bytes())["manifests"]
    write_oci_layout(
        layout,
        [layer_tar(tmp_path / "two.tar", {"etc/which": b"two"})],
        image_config(),
        ref_name="2.0",
        compression="none",
    )
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"] = first + index["manifests"]
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def _which(image: Image) -> bytes:
    path = Path(image.root, "etc/which")
    placed = image.extents.by_inode.get(path.stat().st_ino) if image.extents else None
    if placed is None:
        return path.read_bytes()
    fd, offset, length = placed
    return os.pread(fd, length, offset)


def test_a_layout_with_two_tags_needs_one(tmp_path: Path) -> None:
    layout = two_tags(tmp_path)
    with pytest.raises(ImageError, match=r"several images, tagged '1.0', '2.0': choose one"):
        opened(layout, tmp_path)
    for options, path in (({"tag": "2.0"}, layout), ({}, Path(f"{layout}:2.0"))):
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        with open_image(path, workdir=str(work), **options) as image:
            assert _which(image) == b"two"
            assert image.tags == ("2.0",)
    with open_image(f"{layout}:1.0", workdir=str(tmp_path / "work")) as image:
        assert _which(image) == b"one"
    with pytest.raises(ImageError, match=r"no image tagged '3.0' \(tags: '1.0', '2.0'\)"):
        opened(layout, tmp_path, tag="3.0")
    with pytest.raises(ImageError, match="a tag given twice"):
        opened(Path(f"{layout}:1.0"), tmp_path, tag="2.0")


def test_a_docker_save_of_two_images_by_tag(tmp_path: Path) -> None:
    one = layer_tar(tmp_path / "one.tar", {"etc/which": b"one"})
    two = layer_tar(tmp_path / "two.tar", {"etc/which": b"two"})
    archive = tmp_path / "save.tar"
    write_docker_save(archive, [one], image_config(), ["example/app:1.0"])
    with tarfile.open(archive) as packed:
        packed.extractall(tmp_path / "merged", filter="tar")
    second = tmp_path / "second.tar"
    write_docker_save(second, [two], image_config(env=["B=2"]), ["example/app:2.0"])
    with tarfile.open(second) as packed:
        packed.extractall(tmp_path / "second", filter="tar")
    for path in (tmp_path / "second").iterdir():
        if path.name != "manifest.json":
            path.rename(tmp_path / "merged" / path.name)
    listing = json.loads((tmp_path / "merged/manifest.json").read_bytes())
    listing += json.loads((tmp_path / "second/manifest.json").read_bytes())
    (tmp_path / "merged/manifest.json").write_text(json.dumps(listing))
    merged = tmp_path / "merged"
    image = opened(merged, tmp_path)  # no tag: the first, and a problem saying so
    assert image.tags == ("example/app:1.0",)
    assert any("holds 2 images; scanned the first" in problem for problem in image.problems)
    for tag in ("example/app:2.0", "2.0", "app:2.0"):
        image = opened(merged, tmp_path, tag=tag)
        assert image.tags == ("example/app:2.0",) and image.env == (("B", "2"),)
    with pytest.raises(ImageError, match=r"no image tagged 'other' \(tags: 'example/app:1.0'"):
        opened(merged, tmp_path, tag="other")


def test_cli_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = two_tags(tmp_path)
    common = ["--quiet", "--no-process-env", "--checks", "425", "--format", "json"]
    assert cli.main(["image", str(layout), *common]) == cli.EXIT_USAGE
    assert "IMAGE:TAG or --tag TAG" in capsys.readouterr().err
    assert cli.main(["image", str(layout), "--tag", "2.0", *common]) == cli.EXIT_CLEAN
    assert json.loads(capsys.readouterr().out)["target"]["image"]["tags"] == ["2.0"]
    assert cli.main(["image", f"{layout}:1.0", *common]) == cli.EXIT_CLEAN
    assert json.loads(capsys.readouterr().out)["target"]["image"]["tags"] == ["1.0"]
    report = scanner.scan_image(layout, tag="1.0", checks=["425"], process_env=False)
    assert report.target_details["image"]["tags"] == ["1.0"]


# -- manifest layers against the config's diff_ids ---------------------------------------------


def _diff_ids(count: int) -> Edit:
    def edit(config: dict[str, Any]) -> dict[str, Any]:
        config["rootfs"]["diff_ids"] = config["rootfs"]["diff_ids"][:1] * count
        return config

    return edit


def _docker_archive(directory: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as packed:
        for path in sorted(directory.rglob("*")):
            packed.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return out


@pytest.mark.parametrize(
    ("manifest", "config", "layers", "ids"),
    [
        (_first(Layers=[]), None, 0, 1),  # the case: a false clean with exit 0
        (None, _diff_ids(2), 1, 2),
        (None, _diff_ids(0), 1, 0),
        (None, _top(rootfs=None), 1, 0),
    ],
    ids=["no-layers", "more-diff-ids", "no-diff-ids", "no-rootfs"],
)
def test_docker_layers_and_diff_ids_must_agree(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    manifest: Edit | None,
    config: Edit | None,
    layers: int,
    ids: int,
) -> None:
    directory = docker_dir(tmp_path)
    rewrite_docker(directory, manifest=manifest, config=config)
    archive = _docker_archive(directory, tmp_path / "mismatch.tar")
    message = f"the manifest lists {layers} layers, the image config {ids} diff_ids"
    with pytest.raises(ImageError, match=message):
        opened(archive, tmp_path)
    code = cli.main(["image", str(archive), "--quiet", "--no-process-env", "--format", "json"])
    assert code == cli.EXIT_USAGE and message in capsys.readouterr().err


def test_oci_layers_and_diff_ids_must_agree(tmp_path: Path) -> None:
    layout = oci_layout(tmp_path)
    rewrite_oci(layout, manifest=lambda m: {**m, "layers": []})
    with pytest.raises(ImageError, match="lists 0 layers, the image config 1 diff_ids"):
        opened(layout, tmp_path)


def test_an_empty_image_is_no_mismatch(tmp_path: Path) -> None:
    """No layers and no diff_ids: an empty root (`FROM scratch` with only metadata)."""
    layout = oci_layout(tmp_path)
    rewrite_oci(layout, manifest=lambda m: {**m, "layers": []}, config=_diff_ids(0))
    assert opened(layout, tmp_path).problems == ()


# -- a `docker save` directory: its files are opened beneath it --------------------------------


def _host_file(tmp_path: Path) -> Path:
    """A file outside the image whose contents a scan of the image must never read: a tar of
    a private key, which 425 would report had the layer symlink been followed."""
    host = tmp_path / "host"
    host.mkdir()
    return layer_tar(host / "secret.tar", {"root/.ssh/id_rsa": b"host-secret"})


def _layer_path(directory: Path) -> Path:
    listing = json.loads((directory / "manifest.json").read_bytes())
    return directory / listing[0]["Layers"][0]


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_a_layer_symlinked_out_of_the_save_is_refused(tmp_path: Path, how: str) -> None:
    directory = docker_dir(tmp_path)
    host = _host_file(tmp_path)
    layer = _layer_path(directory)
    layer.unlink()
    layer.symlink_to(host if how == "absolute" else os.path.relpath(host, layer.parent))
    with pytest.raises(ImageError, match="outside the image directory|leads out of the image"):
        opened(directory, tmp_path)


@pytest.mark.parametrize("which", ["manifest.json", "config"])
def test_json_symlinked_out_of_the_save_is_refused(tmp_path: Path, which: str) -> None:
    directory = docker_dir(tmp_path)
    listing = json.loads((directory / "manifest.json").read_bytes())
    name = "manifest.json" if which == "manifest.json" else listing[0]["Config"]
    outside = tmp_path / "outside.json"
    outside.write_bytes((directory / name).read_bytes())
    (directory / name).unlink()
    (directory / name).symlink_to(outside)
    with pytest.raises(ImageError, match="outside the image directory"):
        opened(directory, tmp_path)


def test_a_directory_symlinked_out_of_the_save_is_refused(tmp_path: Path) -> None:
    directory = docker_dir(tmp_path)
    layer = _layer_path(directory)
    moved = tmp_path / "elsewhere"
    layer.parent.rename(moved)
    layer.parent.symlink_to(moved)
    with pytest.raises(ImageError, match="outside the image directory"):
        opened(directory, tmp_path)


def test_a_symlink_inside_the_save_is_followed(tmp_path: Path) -> None:
    """Old `docker save` links a repeated layer to its first copy: `../ID/layer.tar`."""
    directory = docker_dir(tmp_path)
    layer = _layer_path(directory)
    first = directory / "first"
    first.mkdir()
    layer.rename(first / "layer.tar")
    layer.symlink_to(Path("..", "first", "layer.tar"))
    assert opened(directory, tmp_path).image_id.startswith("sha256:")


def test_a_fifo_in_place_of_a_layer_does_not_block(tmp_path: Path) -> None:
    directory = docker_dir(tmp_path)
    layer = _layer_path(directory)
    layer.unlink()
    os.mkfifo(layer)
    with pytest.raises(ImageError, match="not a regular file"):
        opened(directory, tmp_path)


def test_a_symlink_loop_in_the_save_is_refused(tmp_path: Path) -> None:
    directory = docker_dir(tmp_path)
    layer = _layer_path(directory)
    layer.unlink()
    layer.symlink_to("layer.tar")
    with pytest.raises(ImageError, match="more than 40 symlinks"):
        opened(directory, tmp_path)
