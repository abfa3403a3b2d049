"""Keeping an Inspect process away from the worker's secrets, with Linux mechanisms.

An Inspect run executes the suite's task code, and a task may let the lab's
model run code of its own. The worker holds what such code must never see:
every lab's evaluation secret, the database password, other labs' evaluation
logs. The layers (tests/evaluation/test_isolation.py runs task code that tries
each door):

1. **The worker's memory and environment**: the worker makes itself
   non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``), so ``/proc/<worker>/environ``,
   ``/mem``, ``/maps`` and ptrace are refused to every process without
   ``CAP_SYS_PTRACE``, its own uid included; the entry point moves
   ``FR_SECRET_*`` and the database URL out of ``os.environ`` into memory, so
   nothing it starts can inherit them (the child's environment is an allowlist
   anyway).
2. **No capabilities** in the child (``drop_capabilities``): a root worker's
   child is root without power, and stays so across exec (securebits locked).
3. **Landlock** in the child (``restrict_self``), before any task code runs,
   with ``no_new_privs``: read and execute everywhere but the secrets, the
   evidence, the other runs' directories (and what only root may read, for a
   root child); write only in its own directory; TCP connect to the endpoint's
   port only (ABI >= 4); no signals out of its domain (ABI >= 6).
4. **The child is non-dumpable too**: other runs can't read its API key.

Landlock is an allowlist without "deny this subtree", so the rules grant access
beneath every sibling of each hidden path's ancestors, and only directory
listing on ancestors a Python import needs (the working directory and
``sys.path`` entries). A secrets directory inside the working tree (the dev
default ``.local/secrets``) can therefore have its *file names* listed, never
read; in production mount it outside (e.g. ``/run/secrets/frontier-review``).

Written on ctypes (three syscalls, ``prctl`` and ``capset``) rather than a PyPI
package: the Python bindings available are development releases without the
network and scope rules used here.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_SET_NO_NEW_PRIVS = 38

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on
# every architecture that has them.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1


class IsolationError(RuntimeError):
    """A required isolation mechanism is missing: no Inspect process may start."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _NetPortAttr(ctypes.Structure):
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


# --- the worker ----------------------------------------------------------------------


def make_non_dumpable() -> None:
    """Close this process's memory, environment and ptrace to same-uid processes."""
    libc = _libc()
    _check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    if libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise IsolationError("the process is still dumpable after PR_SET_DUMPABLE 0")


def take_secrets_from_environment(
    environ: MutableMapping[str, str], prefix: str, also: Iterable[str] = ("FR_DATABASE_URL",)
) -> dict[str, str]:
    """Remove every ``<prefix>*`` variable (and ``also``) from ``environ``; returns the
    secrets (the ``<prefix>*`` ones) to keep in memory."""
    taken = {name: environ.pop(name) for name in list(environ) if name.startswith(prefix)}
    for name in also:
        environ.pop(name, None)
    return taken


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is unavailable."""
    result = _libc().syscall(
        SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), LANDLOCK_CREATE_RULESET_VERSION
    )
    return max(0, int(result))


def require_isolation() -> int:
    """Refuse to run Inspect processes that could read the secrets; the Landlock ABI."""
    abi = landlock_abi()
    if abi == 0:
        raise IsolationError(
            "Landlock is unavailable (Linux >= 5.13 with the landlock LSM enabled): an "
            "Inspect process could read the secrets directory and the evidence"
        )
    return abi


def prepare_secrets_dir(path: Path) -> None:
    """The secrets directory is the worker's alone (mode 0700), if it exists."""
    if path.is_dir() and os.stat(path).st_uid == os.geteuid():
        path.chmod(0o700)


def run_dir(parent: Path, name: str) -> Path:
    """A fresh working directory for one Inspect process, mode 0700."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / name
    path.mkdir(mode=0o700)
    return path


# --- the child -------------------------------------------------------------------------

PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# NOROOT, NO_SETUID_FIXUP, KEEP_CAPS and NO_CAP_AMBIENT_RAISE, each with its lock.
SECUREBITS_LOCKED_DOWN = 0b1111_1111
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_capabilities() -> None:
    """Give up every capability, for good: a worker running as root starts Inspect
    processes as root, and this makes that root an ordinary user (no CAP_SYS_PTRACE to
    read the worker, no CAP_DAC_OVERRIDE, none regained by exec). Landlock then keeps
    it from what its uid owns (restrict_self)."""
    libc = _libc()
    if _capabilities("CapPrm") == 0 and _capabilities("CapBnd") == 0:
        return
    if _capabilities("CapEff") != 0:
        _check(libc.prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_DOWN, 0, 0, 0), "securebits")
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        for cap in range(last + 1):
            _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"PR_CAPBSET_DROP {cap}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(header), data), "capset")
    left = {name: _capabilities(name) for name in ("CapEff", "CapPrm", "CapInh", "CapAmb")}
    if any(left.values()):
        raise IsolationError(f"capabilities left after dropping them: {left}")


def _capabilities(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    return 0


def restrict_self(
    hidden: Iterable[Path],
    readable: Iterable[Path],
    writable: Iterable[Path],
    connect_ports: Iterable[int],
) -> int:
    """Enter a Landlock domain, for this process and everything it starts, irrevocably:
    read and execute everywhere except beneath ``hidden`` (``readable`` paths beneath
    them excepted), write only beneath ``writable`` (and to /dev/null), TCP connect to
    ``connect_ports`` only, no signals out of it. Call it while the process has one
    thread. Also sets ``no_new_privs`` and makes the process non-dumpable.
    Returns the Landlock ABI used (0: unavailable, nothing but the prctls applied).
    """
    libc = _libc()
    _check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    abi = landlock_abi()
    if abi == 0:
        return 0
    fs_rights = _FS_BY_ABI[max(v for v in _FS_BY_ABI if v <= abi)]
    attr = _RulesetAttr(
        handled_access_fs=fs_rights,
        handled_access_net=(NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0,
        scoped=(SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0,
    )
    # The fields an older kernel does not know are zero, which it accepts.
    size = ctypes.c_size_t(ctypes.sizeof(_RulesetAttr))
    ruleset = _check(
        libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, 0),
        "landlock_create_ruleset",
    )
    try:
        listed = {Path(p).resolve() for p in (os.getcwd(), *_import_path())}
        read = FS_READ_FILE | FS_READ_DIR | FS_EXECUTE
        for path, rights in beneath_rules(hidden, readable, listed, read):
            _add_path_rule(libc, ruleset, path, rights)
        for path in writable:
            _add_path_rule(libc, ruleset, Path(path).resolve(), fs_rights)
        _add_path_rule(libc, ruleset, Path("/dev/null"), _FILE_RIGHTS & fs_rights)
        if abi >= 4:
            for port in sorted(set(connect_ports)):
                rule = _NetPortAttr(allowed_access=NET_CONNECT_TCP, port=port)
                _check(
                    libc.syscall(
                        SYS_LANDLOCK_ADD_RULE,
                        ruleset,
                        LANDLOCK_RULE_NET_PORT,
                        ctypes.byref(rule),
                        0,
                    ),
                    f"landlock_add_rule(port {port})",
                )
        _check(libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _import_path() -> list[str]:
    import sys

    return [p for p in sys.path if p]


def beneath_rules(
    hidden: Iterable[Path], allowed: Iterable[Path], listed: set[Path], rights: int
) -> Iterator[tuple[Path, int]]:
    """Landlock rules granting ``rights`` everywhere except beneath ``hidden`` (where only
    ``allowed`` subtrees are granted): every sibling of every ancestor of a hidden path,
    and directory listing on the ancestors in ``listed`` (Landlock has no "deny")."""
    hide = {Path(p).resolve() for p in hidden}
    ancestors = {a for h in hide for a in h.parents}
    for directory in sorted(ancestors):
        if directory in listed:
            yield directory, FS_READ_DIR
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue  # closed to this user anyway: nothing beneath it is granted
        for entry in entries:
            if entry in hide or entry in ancestors:
                continue
            yield entry, rights
    for path in allowed:
        yield Path(path).resolve(), rights


def _add_path_rule(libc: ctypes.CDLL, ruleset: int, path: Path, rights: int) -> None:
    # O_NOFOLLOW: a rule on a symlink covers the link itself, never its target (which
    # could be a hidden directory).
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return  # gone meanwhile, or closed to this user
    try:
        if not _is_dir(fd):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        with contextlib.suppress(OSError):  # e.g. a symlink or socket: nothing to grant
            _check(
                libc.syscall(
                    SYS_LANDLOCK_ADD_RULE,
                    ruleset,
                    LANDLOCK_RULE_PATH_BENEATH,
                    ctypes.byref(rule),
                    0,
                ),
                f"landlock_add_rule({path})",
            )
    finally:
        os.close(fd)


def _add_rule(
    libc: ctypes.CDLL, ruleset: int, kind: int, rule: ctypes.Structure, what: str
) -> None:
    result = libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, kind, ctypes.byref(rule), 0)
    _check(result, f"landlock_add_rule({what})")


def _is_dir(fd: int) -> bool:
    import stat

    return stat.S_ISDIR(os.fstat(fd).st_mode)
