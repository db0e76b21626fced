"""Whether a package database is there: found, or its place taken by something unusable."""

from __future__ import annotations

import stat

from .rootfs import RootFS

__all__ = ["db_present"]


def db_present(root: RootFS, directory: bytes, names: tuple[bytes, ...]) -> bool:
    """True when `directory/<name>` exists for one of `names`, or when `directory` is there
    but cannot hold them: a symlink loop, a FIFO or device in its place, no permission.

    Only "nothing there" means no database: a hostile image must not turn "cannot read the
    package database" into "this root has no package manager" (a scan with nothing to verify,
    reported complete) by looping or replacing the directory. A missing ancestor (`var/lib`
    absent or a plain file) still means no database.
    """
    try:
        st = root.lstat(directory)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # ELOOP, EACCES, ENAMETOOLONG on the way there: there, unusable
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        return True  # a FIFO, device, socket or file where the directory should be
    for name in names:
        try:
            root.lstat(directory + b"/" + name)
        except FileNotFoundError:
            continue
        except OSError:
            return True  # the directory's own symlink loops or leads to a non-directory
        return True
    return False
