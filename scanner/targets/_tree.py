"""The merged tree of an image's layers: its directories as nodes, each opened O_NOFOLLOW once.

Every write goes through directory file descriptors opened with O_NOFOLLOW from the root down,
so a member can never be written *through* a symlink, whatever a lower layer put in its path.
The directories are kept as nodes (`Dir`), so a member's parent is found without the disk, and
in tar order in one comparison: work stays linear in the archive however deep the tree (5,000
nested directories took 600 s when each member's path was walked again). Directory fds opened
for one member are kept for the next ones (tar order groups siblings), at most DIR_CACHE of
them, and dropped with their directory when something is removed, the only way a directory can
be replaced. Nothing recurses by depth.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from _native import remove_py

from . import _tar
from ._limits import ImageError

__all__ = ["DIR_CACHE", "Dir", "Layer", "MergedTree", "parts_of"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
DIR_CACHE = 256  # open directory fds kept between members (tar order groups siblings)
_CHAIN_KEEP = 32  # of a long way down from an open ancestor, the fds kept (the deepest)


def parts_of(name: str, label: str, what: str) -> tuple[tuple[str, ...], bool]:
    """Split a member name into path components; any `..` is refused. Returns (parts, absolute)."""
    # Substring tests first: a name is one string search, not a comparison per component (a
    # member 5,000 directories deep has a 10,000-character name).
    stripped = name.strip("/")  # (a directory's name ends in "/")
    split = stripped.split("/")
    if "//" in stripped or "./" in stripped or stripped.endswith(".") or not stripped:
        split = [part for part in split if part not in ("", ".")]  # the rarer names
    parts = tuple(split)
    if ".." in stripped and ".." in parts:
        raise ImageError(f"{label}: {what} {name!r} has a '..' component (path traversal); refused")
    return parts, name.startswith("/")


class Dir:
    """A directory of the merged tree. Each one there was made by the applier, so these nodes
    are its directories (files are not kept): a path is found without touching the disk."""

    __slots__ = ("children", "fd", "member", "name", "parent")

    def __init__(self, name: str, parent: Dir | None) -> None:
        self.name = name
        self.parent = parent
        self.children: dict[str, Dir] = {}
        self.fd = -1  # a cached O_NOFOLLOW fd (MergedTree._open), or -1
        self.member: _tar.Member | None = None  # its metadata, set once all layers are applied


# What one layer made: (parent directory, name). Whiteouts hide lower layers only.
Layer = set[tuple[Dir, str]]


class MergedTree:
    """The directories of the tree being extracted into `root` (an empty private directory),
    each made by this tree or found on disk below one it made, with their cached fds."""

    def __init__(self, root: str) -> None:
        self.root_fd = os.open(root, _DIR_FLAGS)
        # Every directory of the merged tree, as nodes: the applier made each one.
        self.top = Dir("", None)
        self.top.fd = self.root_fd
        # Directory fds opened (O_NOFOLLOW, component by component) for earlier members, least
        # recently used first. Valid until trim or a removal of their directory.
        self._open: OrderedDict[Dir, None] = OrderedDict()
        # The last directory looked up or made, by path: the next member's parent, in tar order.
        self._memo: tuple[tuple[str, ...], Dir] | None = None

    def close(self) -> None:
        self.forget()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1
            self.top.fd = -1

    def forget(self) -> None:
        while self._open:
            node, _ = self._open.popitem()
            os.close(node.fd)
            node.fd = -1

    def trim(self) -> None:
        """Close the least recently used fds past DIR_CACHE; only where no borrowed fd is held."""
        while len(self._open) > DIR_CACHE:
            node, _ = self._open.popitem(last=False)
            os.close(node.fd)
            node.fd = -1

    def finish(self, stamp: Callable[[int, _tar.Member], None]) -> None:
        """Set directory modes, owners and times, children before parents (late, so writes
        below succeed), in one walk of the tree: linear in its directories whatever the depth,
        with at most DIR_CACHE fds open. A parent whose fd was closed to keep to that is
        opened again as its child's "..", before the child's mode can shut us out of it (every
        directory here was made by this applier, in a private tree: ".." is its parent)."""
        self.forget()
        top = self.top
        frames: list[list[Any]] = [[top, self.root_fd, iter(list(top.children.values()))]]
        while frames:
            frame = frames[-1]
            node, fd, children = frame
            child = next(children, None)
            if child is not None:
                frames.append(
                    [child, self.open_dir(fd, child), iter(list(child.children.values()))]
                )
                if len(frames) > DIR_CACHE + 1:
                    far = frames[-DIR_CACHE - 1]
                    if far[1] >= 0:
                        os.close(far[1])
                        far[1] = -1
                continue
            frames.pop()
            if node is top:
                break
            above = frames[-1]
            if above[1] < 0:
                above[1] = os.open("..", _DIR_FLAGS, dir_fd=fd)
            try:
                if node.member is not None:
                    stamp(fd, node.member)
                    node.member = None
            finally:
                os.close(fd)

    def remove(self, parent: Dir, fd: int, name: str) -> None:
        """Remove `name` of `parent` (open as `fd`), a whole tree if a directory: its nodes and
        their cached fds go (never `fd` or its ancestors', which the caller may hold)."""
        if not stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
            os.unlink(name, dir_fd=fd)
            return
        node = parent.children.pop(name, None)
        self._memo = None
        pending = [node] if node is not None else []
        while pending:
            below = pending.pop()
            if below.fd >= 0:
                del self._open[below]
                os.close(below.fd)
                below.fd = -1
            pending.extend(below.children.values())
            below.children.clear()
        remove_py.remove_at(fd, name)  # fd-based and without recursion: trees may be deep

    def lookup(
        self,
        parts: tuple[str, ...],
        *,
        create: bool,
        label: str,
        name: str,
        layer: Layer | None = None,
    ) -> Dir | None:
        """The directory root/parts (made, with its missing parents, when `create`), or None.

        Only a component the tree's nodes do not know is looked at on disk: one that is a
        symlink or a non-directory is refused, since writing through it could land outside the
        root (`a -> /etc` then `a/passwd`). The path is matched against the last directory
        looked up or made first (in tar order, most members' parent): one comparison, not a
        walk from the root, so that extracting a deep tree stays linear.
        """
        memo = self._memo
        if memo is not None and memo[0] == parts:
            return memo[1]
        node = self.top
        owned = -1  # an fd on `node` of this walk, once below a directory it made
        try:
            for index, part in enumerate(parts):
                child = node.children.get(part)
                if child is None:
                    fd = owned if owned >= 0 else self.fd(node, label, name)
                    child = self._discover(node, fd, parts, index, create, label, name, layer)
                    if child is None:
                        return None
                    # Below a new directory all is new: go on with one fd of this walk at a
                    # time (a member 100,000 directories deep must not cache 100,000 fds).
                    below = self.open_dir(fd, child)
                    if owned >= 0:
                        os.close(owned)
                    owned = below
                node = child
            if owned >= 0:
                node.fd, owned = owned, -1  # the caller's next want: cached
                self._open[node] = None
        finally:
            if owned >= 0:
                os.close(owned)
        self._memo = (parts, node)
        return node

    def _discover(
        self,
        node: Dir,
        fd: int,
        parts: tuple[str, ...],
        index: int,
        create: bool,
        label: str,
        name: str,
        layer: Layer | None,
    ) -> Dir | None:
        """parts[index] below `node` (open as `fd`), not yet a node: made when `create`, else
        None if absent."""
        part = parts[index]
        try:
            try:
                mode: int | None = os.lstat(part, dir_fd=fd).st_mode
            except FileNotFoundError:
                mode = None
            if mode is None:
                if not create:
                    return None
                os.mkdir(part, 0o755, dir_fd=fd)
                if layer is not None:
                    layer.add((node, part))
        except OSError as error:
            where = "/".join(parts[: index + 1])
            raise ImageError(
                f"{label}: {name!r}: cannot open {where!r}: {error.strerror}"
            ) from error
        if mode is not None and not stat.S_ISDIR(mode):
            what = "a symlink" if stat.S_ISLNK(mode) else "not a directory"
            where = "/".join(parts[: index + 1])
            raise ImageError(
                f"{label}: {name!r}: parent {where!r} is {what} in the merged root; "
                "refusing to extract through it"
            )
        child = node.children[part] = Dir(part, node)
        return child

    def fd(self, node: Dir, label: str, name: str) -> int:
        """A borrowed fd on `node` (do not close it), valid until the next _trim or the removal
        of its directory: opened from its nearest open ancestor down, each component with
        O_NOFOLLOW. Of a long way down only the last _CHAIN_KEEP fds are kept."""
        if node.fd >= 0:
            if node is not self.top:
                self._open.move_to_end(node)
            return node.fd
        chain = []
        while node.fd < 0:
            chain.append(node)
            assert node.parent is not None  # the top's fd is always open
            node = node.parent
        fd = node.fd
        chain.reverse()
        keep_from = len(chain) - _CHAIN_KEEP
        for index, child in enumerate(chain):
            try:
                opened = self.open_dir(fd, child)
            except ImageError as error:
                raise ImageError(f"{label}: {name!r}: {error}") from error
            finally:
                if 0 < index <= keep_from:
                    os.close(fd)  # this walk's fd of chain[index - 1], not kept: not borrowed
            if index >= keep_from:
                child.fd = opened
                self._open[child] = None
            fd = opened
        return fd

    def open_dir(self, fd: int, node: Dir) -> int:
        try:
            return os.open(node.name, _DIR_FLAGS, dir_fd=fd)
        except OSError as error:
            raise ImageError(f"cannot open directory {node.name!r}: {error.strerror}") from error
