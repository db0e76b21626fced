"""The image's scratch tree: memory-backed space budgeted by what is written (not by a guess at
the layers' ratio), and removed when a SIGTERM or SIGINT stops the scan."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from child import child_env
from imagebuilder import image_config, write_oci_layout

from scanner.targets import image as image_module
from scanner.targets.image import ImageError, open_image

MiB = 1 << 20


def zeros_layer(path: Path, files: int, size: int) -> Path:
    """A layer of `files` files of `size` zero bytes: gzip packs it ~1000:1."""
    zeros = bytes(size)
    with tarfile.open(path, "w") as archive:
        for number in range(files):
            info = tarfile.TarInfo(f"data/zeros{number}")
            info.size = size
            archive.addfile(info, io.BytesIO(zeros))
    return path


def _allocated(tree: str) -> int:
    total = 0
    for directory, _dirs, names in os.walk(tree):
        for name in names:
            total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total


@pytest.fixture
def memory_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """A stand-in /dev/shm with 3 MiB of room (a third of it, 1 MiB, is the budget), and the
    bytes each scratch tree held when it was removed, by where it was."""
    fake = tmp_path / "shm"
    fake.mkdir()
    disk = tmp_path / "disk"
    disk.mkdir()
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setattr(image_module, "_MEMORY_DIR", str(fake))
    monkeypatch.setattr(image_module, "_memory_available", lambda: 3 * MiB)
    monkeypatch.setattr(image_module.tempfile, "gettempdir", lambda: str(disk))
    held: dict[str, list[int]] = {"memory": [], "disk": []}
    remove = image_module._remove_tree

    def measured(root: str) -> None:
        where = "memory" if root.startswith(str(fake)) else "disk"
        held[where].append(_allocated(root))
        remove(root)

    monkeypatch.setattr(image_module, "_remove_tree", measured)
    return held


def test_memory_scratch_is_budgeted_by_what_is_written(
    tmp_path: Path, memory_dir: dict[str, list[int]]
) -> None:
    """A gzip layer of 64 KiB inflating to 16 MiB: the ratio guess (x5) put it in memory, where
    all 16 MiB were written (the issue: 6.8 MB of gzip, 3 GiB of /dev/shm). Now the writes stop
    at the budget and the extraction starts over on disk."""
    layer = zeros_layer(tmp_path / "layer.tar", 4, 4 * MiB)
    layout = tmp_path / "layout"
    write_oci_layout(layout, [layer], image_config(), compression="gzip")
    with open_image(layout, place=False) as image:
        assert os.path.getsize(Path(image.root, "data/zeros3")) == 4 * MiB
    assert memory_dir["memory"] and max(memory_dir["memory"]) <= 1 * MiB, memory_dir
    assert memory_dir["disk"] and memory_dir["disk"][0] >= 16 * MiB


def test_a_memory_workdir_past_its_budget_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workdir on tmpfs (no disk to fall back to): an ImageError saying what to do."""
    if not image_module._memory_backed("/dev/shm"):
        pytest.skip("no tmpfs at /dev/shm")
    monkeypatch.setattr(image_module, "_memory_available", lambda: 3 * MiB)
    layer = zeros_layer(tmp_path / "layer.tar", 4, 4 * MiB)
    layout = tmp_path / "layout"
    write_oci_layout(layout, [layer], image_config(), compression="gzip")
    work = Path("/dev/shm", f"scan-root-test-{os.getpid()}")
    work.mkdir()
    try:
        with pytest.raises(ImageError, match=r"more than \d+ bytes to extract .*point \$TMPDIR"):
            with open_image(layout, workdir=str(work), place=False):
                pass
        assert not list(work.iterdir())
    finally:
        work.rmdir()


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image long enough to extract (256 MiB of files, ~0.3 MB of gzip) to be stopped in."""
    base = tmp_path_factory.mktemp("big")
    layer = zeros_layer(base / "layer.tar", 128, 2 * MiB)
    write_oci_layout(base / "layout", [layer], image_config(), compression="gzip")
    layer.unlink()
    return base / "layout"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_mid_extraction_removes_the_scratch_tree(
    tmp_path: Path, big_layout: Path, signum: signal.Signals
) -> None:
    """`scan-root image` in a child, stopped while it extracts (files in its scratch tree):
    the tree is gone and the exit code is 128 + the signal, as a shell reports it."""
    layout = big_layout
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = child_env()
    env["TMPDIR"] = str(scratch)
    process = subprocess.Popen(
        [sys.executable, "-m", "scanner.cli", "image", str(layout), "--quiet", "--no-process-env"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            trees = list(scratch.glob("scan-root-image-*/data/zeros*"))
            if len(trees) >= 2:
                break
            time.sleep(0.005)
        assert process.poll() is None, "the scan ended before it could be stopped"
        assert list(scratch.glob("scan-root-image-*/data/zeros*")), "not extracting yet"
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum, err
    assert f"stopped by {signum.name}" in err and "Traceback" not in err
    assert not list(scratch.iterdir())
