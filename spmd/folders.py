"""Folders of this user's alone, in places every user may write (/tmp, /dev/shm): made 0700,
or checked, so that no other user can read what spmd puts there or plant what it reads."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import EngineError


def private_folder(folder: Path) -> Path:
    """Make the user's private folder, or check one that exists: a folder of this user's
    that no one else may enter. Another user's (made first, to read what is sent there) is
    refused."""
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise EngineError(f"{folder} is not a folder of this user's (owner uid {st.st_uid}); "
                          "another user may have made it to read tasks' messages: remove it "
                          "(or ask an admin to), then run again")
    if st.st_mode & 0o077:
        os.chmod(folder, 0o700)
    return folder
