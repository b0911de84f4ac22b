"""Windows named pipes that only this user can reach, on asyncio's proactor (research T12).

``\\\\.\\pipe\\`` is one machine-wide namespace, and a pipe made with asyncio's defaults (NULL
security attributes) lets every local user read it, any network client connect, and a squatter
that got the name first impersonate whoever connects. This module is the Windows half of
``_transport``; every Windows API call of jitpc's transport is here.

Server (:func:`serve`, :class:`PipeServer`):

1. Every instance gets a DACL that grants access to this user's SID and nobody else
   (SDDL ``D:P(A;;GA;;;<SID>)``, protected from inheritance). LocalSystem and Administrators get
   no ACE either; an administrator can still take ownership, as with any object.
2. The first instance is created with ``FILE_FLAG_FIRST_PIPE_INSTANCE``: if the name exists
   already (another user's server, a squatter, or connections of a server still closing) the
   call fails with ERROR_ACCESS_DENIED and :func:`serve` raises a PermissionError saying so,
   rather than joining someone else's pipe.
3. Every instance has ``PIPE_REJECT_REMOTE_CLIENTS``: SMB clients from other machines are refused.
4. There is always one unconnected instance (as asyncio's own PipeServer does), so the name never
   lapses while we serve and later instances never need the first-instance check.
5. Each accepted client's process must run as this user (``GetNamedPipeClientProcessId``, then its
   token). The DACL already enforces that; this is defence in depth, and a refused client is
   logged on the ``jitpc`` logger. A client whose process has already exited is let through, as
   the DACL admitted it. (The DACL is the barrier: a client pid is only as good as the process
   that reports it.)

Client (:func:`connect`):

1. The pipe is opened with ``SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION``: whoever serves it
   may learn who we are but cannot impersonate us to act as us.
2. The server's process must run as this user (``GetNamedPipeServerProcessId``, ``OpenProcess``,
   its token's user SID): otherwise PermissionError naming its SID, before anything is sent.

Pipes are byte mode (``PIPE_TYPE_BYTE | PIPE_READMODE_BYTE``), as libuv makes them for Node's
jitpc, and not message mode like asyncio's PipeServer: the protocol is a byte stream framed by
``\\n``, so message boundaries carry nothing; a zero-length write in message mode is a
zero-length message, which asyncio's reader takes for end-of-stream; and a byte-mode server is
exactly what a Node client (which sets ``PIPE_READMODE_BYTE`` on its end) expects. Clients read
in byte mode by default whatever the server's type, so both directions interoperate.

None of this can run on the Linux machine where it was written: it is checked with
``mypy --platform win32`` only. Import it only on Windows.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import logging
import sys
from asyncio import windows_utils
from collections.abc import Callable, Mapping
from ctypes import wintypes
from typing import Any, Protocol, cast

# Windows only; this also makes mypy check the rest of the module only with --platform win32.
assert sys.platform == "win32", "jitpc._winpipe is Windows-only"

PipeHandle = windows_utils.PipeHandle

__all__ = ["RETRYABLE_WINERRORS", "PipeServer", "connect", "current_user_sid", "serve"]

logger = logging.getLogger("jitpc")

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

# -- constants (winnt.h, winbase.h, winerror.h, sddl.h) -----------------------------------------

_GENERIC_READ = 0x80000000
_GENERIC_WRITE = 0x40000000
_OPEN_EXISTING = 3
_FILE_FLAG_OVERLAPPED = 0x40000000
_FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
_SECURITY_SQOS_PRESENT = 0x00100000
_SECURITY_IDENTIFICATION = 0x00010000  # SecurityIdentification << 16
_PIPE_ACCESS_DUPLEX = 0x3
_PIPE_TYPE_BYTE = 0x0
_PIPE_READMODE_BYTE = 0x0
_PIPE_WAIT = 0x0
_PIPE_REJECT_REMOTE_CLIENTS = 0x8
_PIPE_UNLIMITED_INSTANCES = 255
#: In and out buffer sizes (advisory), as libuv uses.
_BUFSIZE = 65536
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_TOKEN_QUERY = 0x0008
_TOKEN_USER = 1  # TOKEN_INFORMATION_CLASS TokenUser
_SDDL_REVISION_1 = 1

_ERROR_FILE_NOT_FOUND = 2
_ERROR_ACCESS_DENIED = 5
_ERROR_INVALID_PARAMETER = 87
_ERROR_INSUFFICIENT_BUFFER = 122
_ERROR_PIPE_BUSY = 231

#: Windows errors of a connect that may succeed later: no server yet, or all instances busy.
RETRYABLE_WINERRORS = frozenset({_ERROR_FILE_NOT_FOUND, _ERROR_PIPE_BUSY})

#: ERROR_PIPE_BUSY lasts until the server creates its next instance (one loop turn), so it is
#: retried here first, like asyncio's connect_pipe (1 ms doubling to 100 ms), about 0.3 s in all,
#: before the caller's slower back-off (which would also run its spinup hook needlessly).
_BUSY_DELAYS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.1)

#: Pause before trying again when a new pipe instance cannot be created (out of resources).
_ACCEPT_RETRY_DELAY = 0.1

_INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value

# -- structures ---------------------------------------------------------------------------------


class _SecurityAttributes(ctypes.Structure):
    _fields_ = [
        ("nLength", wintypes.DWORD),
        ("lpSecurityDescriptor", ctypes.c_void_p),
        ("bInheritHandle", wintypes.BOOL),
    ]


class _SidAndAttributes(ctypes.Structure):
    _fields_ = [("Sid", ctypes.c_void_p), ("Attributes", wintypes.DWORD)]


class _TokenUser(ctypes.Structure):
    _fields_ = [("User", _SidAndAttributes)]


# -- functions ----------------------------------------------------------------------------------

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)

_CloseHandle = _kernel32.CloseHandle
_CloseHandle.argtypes = [wintypes.HANDLE]
_CloseHandle.restype = wintypes.BOOL

_LocalFree = _kernel32.LocalFree
_LocalFree.argtypes = [wintypes.HLOCAL]
_LocalFree.restype = wintypes.HLOCAL

_GetCurrentProcess = _kernel32.GetCurrentProcess
_GetCurrentProcess.argtypes = []
_GetCurrentProcess.restype = wintypes.HANDLE

_OpenProcess = _kernel32.OpenProcess
_OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
_OpenProcess.restype = wintypes.HANDLE

_CreateNamedPipeW = _kernel32.CreateNamedPipeW
_CreateNamedPipeW.argtypes = [
    wintypes.LPCWSTR,  # lpName
    wintypes.DWORD,  # dwOpenMode
    wintypes.DWORD,  # dwPipeMode
    wintypes.DWORD,  # nMaxInstances
    wintypes.DWORD,  # nOutBufferSize
    wintypes.DWORD,  # nInBufferSize
    wintypes.DWORD,  # nDefaultTimeOut
    ctypes.POINTER(_SecurityAttributes),  # lpSecurityAttributes
]
_CreateNamedPipeW.restype = wintypes.HANDLE

_CreateFileW = _kernel32.CreateFileW
_CreateFileW.argtypes = [
    wintypes.LPCWSTR,  # lpFileName
    wintypes.DWORD,  # dwDesiredAccess
    wintypes.DWORD,  # dwShareMode
    ctypes.POINTER(_SecurityAttributes),  # lpSecurityAttributes
    wintypes.DWORD,  # dwCreationDisposition
    wintypes.DWORD,  # dwFlagsAndAttributes
    wintypes.HANDLE,  # hTemplateFile
]
_CreateFileW.restype = wintypes.HANDLE

_GetNamedPipeServerProcessId = _kernel32.GetNamedPipeServerProcessId
_GetNamedPipeServerProcessId.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.ULONG)]
_GetNamedPipeServerProcessId.restype = wintypes.BOOL

_GetNamedPipeClientProcessId = _kernel32.GetNamedPipeClientProcessId
_GetNamedPipeClientProcessId.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.ULONG)]
_GetNamedPipeClientProcessId.restype = wintypes.BOOL

_OpenProcessToken = _advapi32.OpenProcessToken
_OpenProcessToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
_OpenProcessToken.restype = wintypes.BOOL

_GetTokenInformation = _advapi32.GetTokenInformation
_GetTokenInformation.argtypes = [
    wintypes.HANDLE,  # TokenHandle
    ctypes.c_int,  # TokenInformationClass
    wintypes.LPVOID,  # TokenInformation
    wintypes.DWORD,  # TokenInformationLength
    ctypes.POINTER(wintypes.DWORD),  # ReturnLength
]
_GetTokenInformation.restype = wintypes.BOOL

_ConvertSidToStringSidW = _advapi32.ConvertSidToStringSidW
_ConvertSidToStringSidW.argtypes = [wintypes.LPVOID, ctypes.POINTER(ctypes.c_void_p)]
_ConvertSidToStringSidW.restype = wintypes.BOOL

_ConvertStringSecurityDescriptorToSecurityDescriptorW = (
    _advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW
)
_ConvertStringSecurityDescriptorToSecurityDescriptorW.argtypes = [
    wintypes.LPCWSTR,  # StringSecurityDescriptor
    wintypes.DWORD,  # StringSDRevision
    ctypes.POINTER(ctypes.c_void_p),  # SecurityDescriptor (LocalAlloc'd)
    ctypes.POINTER(wintypes.ULONG),  # SecurityDescriptorSize (optional)
]
_ConvertStringSecurityDescriptorToSecurityDescriptorW.restype = wintypes.BOOL


def _last_error() -> OSError:
    """The OSError for the calling thread's last Windows error (``winerror`` set)."""
    return ctypes.WinError(ctypes.get_last_error())


def _valid(handle: int | None) -> int | None:
    return None if handle is None or handle == _INVALID_HANDLE_VALUE else handle


# -- users --------------------------------------------------------------------------------------


def _sid_string(psid: int) -> str:
    """``S-1-5-21-…`` for the SID at address ``psid``."""
    out = ctypes.c_void_p()
    if not _ConvertSidToStringSidW(psid, ctypes.byref(out)):
        raise _last_error()
    address = out.value
    if address is None:
        raise OSError(errno.EINVAL, "ConvertSidToStringSidW returned no string")
    try:
        return ctypes.wstring_at(address)
    finally:
        _LocalFree(address)


def _token_user_sid(process: int) -> str:
    """The user SID (as a string) of the primary token of the process handle ``process``."""
    token = wintypes.HANDLE()
    if not _OpenProcessToken(process, _TOKEN_QUERY, ctypes.byref(token)):
        raise _last_error()
    try:
        needed = wintypes.DWORD()
        if not _GetTokenInformation(token, _TOKEN_USER, None, 0, ctypes.byref(needed)):
            code = ctypes.get_last_error()
            if code != _ERROR_INSUFFICIENT_BUFFER:
                raise ctypes.WinError(code)
        size = max(needed.value, ctypes.sizeof(_TokenUser))
        buf = ctypes.create_string_buffer(size)
        if not _GetTokenInformation(token, _TOKEN_USER, buf, size, ctypes.byref(needed)):
            raise _last_error()
        user = _TokenUser.from_buffer(buf)
        psid = cast("int | None", user.User.Sid)
        if not psid:
            raise OSError(errno.EINVAL, "the process token has no user SID")
        return _sid_string(psid)  # reads the SID inside ``buf``, which is still alive
    finally:
        _CloseHandle(token)


@functools.cache
def current_user_sid() -> str:
    """This process's user SID, e.g. ``S-1-5-21-…-1001`` (from the process token)."""
    return _token_user_sid(cast(int, _GetCurrentProcess()))


def _process_user_sid(pid: int) -> str:
    """The user SID of process ``pid``. OSError if it cannot be read (gone, or not ours)."""
    process = _valid(_OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid))
    if process is None:
        raise _last_error()
    try:
        return _token_user_sid(process)
    finally:
        _CloseHandle(process)


def _peer(pipe: PipeHandle, *, server: bool) -> tuple[int, str | None]:
    """The pid and user SID of the process at the other end of ``pipe``.

    ``server`` says which end that is: the pipe's server (we are the client), or its client.
    A client whose process has exited already (it may have written, closed and gone before we
    got to look) passes with SID ``None``: our DACL admitted it, which is the barrier there.
    The server's process must be there and be ours.

    Raises:
        PermissionError: that process does not run as this user, or its user cannot be read.
    """
    role = "server" if server else "client"
    pid = wintypes.ULONG()
    query = _GetNamedPipeServerProcessId if server else _GetNamedPipeClientProcessId
    if not query(pipe.handle, ctypes.byref(pid)):
        raise PermissionError(
            errno.EACCES, f"cannot tell which process is the pipe's {role}: {_last_error()}"
        )
    try:
        sid = _process_user_sid(pid.value)
    except OSError as exc:
        if not server and exc.winerror == _ERROR_INVALID_PARAMETER:  # no such process
            logger.debug("jitpc pipe client process %d has exited already", pid.value)
            return pid.value, None
        raise PermissionError(
            errno.EACCES,
            f"cannot read the user of the pipe's {role} process (pid {pid.value}): {exc}; "
            "refusing it",
        ) from exc
    ours = current_user_sid()
    if sid != ours:
        raise PermissionError(
            errno.EACCES,
            f"the pipe's {role} process (pid {pid.value}) runs as {sid}, not as this user "
            f"({ours}); refusing it",
        )
    return pid.value, sid


# -- server -------------------------------------------------------------------------------------


@functools.cache
def _security_attributes() -> _SecurityAttributes:
    """SECURITY_ATTRIBUTES for our pipes: a DACL granting GENERIC_ALL to this user only.

    ``P`` protects the DACL from inherited ACEs. The descriptor is built once and kept for the
    life of the process (CreateNamedPipeW copies it; it is never freed).
    """
    sddl = f"D:P(A;;GA;;;{current_user_sid()})"
    descriptor = ctypes.c_void_p()
    if not _ConvertStringSecurityDescriptorToSecurityDescriptorW(
        sddl, _SDDL_REVISION_1, ctypes.byref(descriptor), None
    ):
        raise _last_error()
    return _SecurityAttributes(ctypes.sizeof(_SecurityAttributes), descriptor.value, False)


def _create_instance(path: str, *, first: bool) -> PipeHandle:
    """A new, unconnected, overlapped instance of the pipe ``path``, for this user only."""
    open_mode = _PIPE_ACCESS_DUPLEX | _FILE_FLAG_OVERLAPPED
    if first:
        open_mode |= _FILE_FLAG_FIRST_PIPE_INSTANCE
    handle = _valid(
        _CreateNamedPipeW(
            path,
            open_mode,
            _PIPE_TYPE_BYTE | _PIPE_READMODE_BYTE | _PIPE_WAIT | _PIPE_REJECT_REMOTE_CLIENTS,
            _PIPE_UNLIMITED_INSTANCES,
            _BUFSIZE,
            _BUFSIZE,
            0,  # default timeout: only for WaitNamedPipe(NMPWAIT_USE_DEFAULT_WAIT)
            ctypes.byref(_security_attributes()),
        )
    )
    if handle is None:
        code = ctypes.get_last_error()
        if first and code == _ERROR_ACCESS_DENIED:
            raise PermissionError(
                errno.EACCES,
                f"the named pipe {path} already exists: another user's server, another "
                "program, or the connections of a server still closing hold this name "
                "(pipe names are machine-wide on Windows); not serving it",
                path,
            )
        raise ctypes.WinError(code)
    return PipeHandle(handle)


class _Proactor(Protocol):
    def accept_pipe(self, pipe: PipeHandle) -> asyncio.Future[PipeHandle]: ...


class _ProactorInternals(Protocol):
    """The parts of asyncio's ProactorEventLoop that ``start_serving_pipe`` uses (private)."""

    _proactor: _Proactor

    def _make_duplex_pipe_transport(
        self,
        sock: PipeHandle,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[None] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> asyncio.Transport: ...


def _proactor_loop() -> asyncio.ProactorEventLoop:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.ProactorEventLoop):
        raise RuntimeError(
            "jitpc on Windows needs asyncio's ProactorEventLoop (the default) for named pipes"
        )
    return loop


class PipeServer(asyncio.AbstractServer):
    """A listening named pipe: asyncio's ``start_serving_pipe`` with our instances.

    The accept loop is CPython 3.11's ``ProactorEventLoop.start_serving_pipe`` made to use
    :func:`_create_instance`, to check each client's user, and to keep going (after a pause)
    when an instance cannot be created instead of spinning.
    """

    def __init__(
        self, loop: asyncio.ProactorEventLoop, path: str, factory: ProtocolFactory
    ) -> None:
        self._loop = loop
        self._internals = cast(_ProactorInternals, loop)
        self._path: str | None = path
        self._factory = factory
        self._closed = asyncio.Event()
        self._accepting: asyncio.Future[PipeHandle] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._retrying = False
        #: Our instances not connected (yet): the spare and the one being accepted.
        self._free: set[PipeHandle] = set()
        # Raises PermissionError if the name is taken. From here on we always hold at least one
        # unconnected instance, so the name stays ours and later instances need no FIRST flag.
        self._spare = _create_instance(path, first=True)
        self._free.add(self._spare)
        self._loop.call_soon(self._accept_next)

    def _accept_next(self) -> None:
        self._retry = None
        path = self._path
        if path is None:
            return
        # Make the next spare before using the current one, so an instance always listens.
        try:
            spare = _create_instance(path, first=False)
        except OSError as exc:
            if not self._retrying:
                logger.warning("jitpc pipe %s: cannot create a pipe instance: %s", path, exc)
            self._retrying = True
            self._retry = self._loop.call_later(_ACCEPT_RETRY_DELAY, self._accept_next)
            return
        self._retrying = False
        pipe, self._spare = self._spare, spare
        self._free.add(spare)
        try:
            future = self._internals._proactor.accept_pipe(pipe)
        except OSError as exc:
            # BrokenPipeError: a client connected and left already (ERROR_NO_DATA).
            if not isinstance(exc, BrokenPipeError):
                logger.warning("jitpc pipe %s: accept failed: %s", path, exc)
            self._drop(pipe)
            self._loop.call_soon(self._accept_next)
            return
        self._accepting = future
        future.add_done_callback(functools.partial(self._accepted, pipe))

    def _accepted(self, pipe: PipeHandle, future: asyncio.Future[PipeHandle]) -> None:
        if future is self._accepting:
            self._accepting = None
        if future.cancelled() or self._path is None:
            self._drop(pipe)
            return
        exc = future.exception()
        if exc is not None:
            if not isinstance(exc, BrokenPipeError):
                logger.warning("jitpc pipe %s: accept failed: %s", self._path, exc)
            self._drop(pipe)
            self._loop.call_soon(self._accept_next)
            return
        self._free.discard(pipe)
        try:
            pid, sid = _peer(pipe, server=False)
        except PermissionError as refusal:
            logger.warning("jitpc pipe %s refused a client: %s", self._path, refusal)
            pipe.close()
        else:
            try:
                protocol = self._factory()
                self._internals._make_duplex_pipe_transport(
                    pipe, protocol, extra={"addr": self._path, "peer_pid": pid, "peer_sid": sid}
                )
            except Exception as error:
                pipe.close()
                self._loop.call_exception_handler(
                    {"message": "jitpc: setting up a pipe connection failed", "exception": error}
                )
        self._accept_next()

    def _drop(self, pipe: PipeHandle) -> None:
        self._free.discard(pipe)
        pipe.close()

    # -- asyncio.AbstractServer ---------------------------------------------------------------

    def close(self) -> None:
        """Stop listening: the pipe name goes once connected clients have gone too."""
        if self._path is None:
            return
        self._path = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._accepting is not None:
            self._accepting.cancel()
            self._accepting = None
        for pipe in self._free:
            pipe.close()
        self._free.clear()
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._path is not None

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        await self._closed.wait()


async def serve(path: str, factory: ProtocolFactory) -> PipeServer:
    """Serve the named pipe ``path`` (``\\\\.\\pipe\\<id>``) to this user's local processes.

    Raises:
        PermissionError: the pipe name exists already (see :func:`_create_instance`).
        OSError: the pipe cannot be created.
    """
    return PipeServer(_proactor_loop(), path, factory)


# -- client -------------------------------------------------------------------------------------


def _open(path: str) -> PipeHandle | None:
    """Open the client end of ``path``: overlapped, identification-level impersonation only.

    Returns ``None`` if every instance of the pipe is busy (ERROR_PIPE_BUSY).
    """
    handle = _valid(
        _CreateFileW(
            path,
            _GENERIC_READ | _GENERIC_WRITE,
            0,  # no sharing
            None,  # default security, handle not inheritable
            _OPEN_EXISTING,
            _FILE_FLAG_OVERLAPPED | _SECURITY_SQOS_PRESENT | _SECURITY_IDENTIFICATION,
            None,
        )
    )
    if handle is None:
        code = ctypes.get_last_error()
        if code == _ERROR_PIPE_BUSY:
            return None
        if code == _ERROR_ACCESS_DENIED:
            raise PermissionError(
                errno.EACCES,
                f"cannot open the named pipe {path}: access denied (its server runs as another "
                "user, or does not let this user in)",
                path,
            )
        raise ctypes.WinError(code)
    return PipeHandle(handle)


async def connect(path: str, factory: ProtocolFactory) -> asyncio.Transport:
    """Connect to the named pipe ``path``, served by a process of this user.

    Returns once the protocol's ``connection_made`` has run.

    Raises:
        PermissionError: the server runs as another user (or its user cannot be read), or the
            pipe refuses this user.
        OSError: no connection; ``winerror`` in :data:`RETRYABLE_WINERRORS` if it may work later.
    """
    loop = _proactor_loop()
    internals = cast(_ProactorInternals, loop)
    for delay in _BUSY_DELAYS:
        pipe = _open(path)
        if pipe is not None:
            break
        await asyncio.sleep(delay)
    else:
        pipe = _open(path)
        if pipe is None:
            raise ctypes.WinError(_ERROR_PIPE_BUSY)  # the caller retries (is_retryable)
    try:
        pid, sid = _peer(pipe, server=True)  # before we send anything
        protocol = factory()
        waiter: asyncio.Future[None] = loop.create_future()
        transport = internals._make_duplex_pipe_transport(
            pipe, protocol, waiter, extra={"addr": path, "peer_pid": pid, "peer_sid": sid}
        )
    except BaseException:
        pipe.close()
        raise
    try:
        await waiter  # set right after connection_made, as create_unix_connection awaits it
    except BaseException:
        transport.close()
        raise
    return transport
