"""Who is at the other end of a Unix socket: the peer's user (and process) id, from the kernel.

The trust boundary of jitpc is the OS user (research T1, T10): file modes on a socket in a
shared ``/tmp`` are not a portable barrier, so both ends ask the kernel for the peer's
credentials on every connection and refuse another user. ``SO_PEERCRED`` on Linux;
``LOCAL_PEERCRED`` (what ``getpeereid`` reads) on macOS and the BSDs.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys

__all__ = ["check_peer", "peer_pid", "peer_uid"]


if sys.platform == "linux":
    _UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}

    def peer_uid(sock: socket.socket) -> int | None:
        """The user id of the process at the other end of ``sock``; None if unknown."""
        data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        _pid, uid, _gid = _UCRED.unpack(data)
        return int(uid)

    def peer_pid(sock: socket.socket) -> int | None:
        """The process id at the other end of ``sock``; None if unknown."""
        data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid = int(_UCRED.unpack(data)[0])
        return pid if pid > 0 else None

elif sys.platform == "win32":

    def peer_uid(sock: socket.socket) -> int | None:
        """Windows has no Unix user ids; named pipes check users by SID (``_winpipe``)."""
        return None

    def peer_pid(sock: socket.socket) -> int | None:
        """Unknown for a socket here (named pipes are not sockets)."""
        return None

else:
    _SOL_LOCAL = 0
    _LOCAL_PEERCRED = getattr(socket, "LOCAL_PEERCRED", 0x001)
    # struct xucred {u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16];}
    _XUCRED = struct.Struct("IIh16I")

    def peer_uid(sock: socket.socket) -> int | None:
        """The user id of the process at the other end of ``sock``; None if unknown."""
        try:
            data = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED.size)
        except OSError:
            return None
        return int(struct.unpack_from("I", data, 4)[0])

    # macOS: LOCAL_PEERPID; the BSDs' xucred has no pid (before FreeBSD 13).
    _LOCAL_PEERPID = 0x002 if sys.platform == "darwin" else None

    def peer_pid(sock: socket.socket) -> int | None:
        """The process id at the other end of ``sock``; None if unknown."""
        if _LOCAL_PEERPID is None:
            return None
        try:
            data = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4)
        except OSError:
            return None
        pid = int(struct.unpack("i", data)[0])
        return pid if pid > 0 else None


def check_peer(sock: socket.socket) -> None:
    """Refuse a peer of another user.

    Raises:
        PermissionError: the kernel says the peer runs as another user; the message names it.
    """
    uid = peer_uid(sock)
    own = os.geteuid() if hasattr(os, "geteuid") else None
    if uid is not None and uid != own:
        raise PermissionError(
            errno.EACCES, f"the peer process runs as uid {uid}, not as this user (uid {own})"
        )
