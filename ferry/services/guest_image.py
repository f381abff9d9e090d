"""The Ferry test guest as a bootable image: which files its build leaves (``guest/build.sh``), the
kernel command line its workload reads, and registering it during `ferry init`.

It lives in the installed package because `ferry init --guest-dir` registers it; building the
guest and reading what it prints is test support (``testkit.guest``), not this module's job.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ferry.db.engine import make_engine, session_factory
from ferry.domain.errors import Conflict
from ferry.services.images import TEST_GUEST, register_image


def GUEST_CMDLINE(rate: int = 200, span_mb: int = 64, sync_every: int = 16) -> str:
    """Kernel command line for the test guest.

    rate: max writes/s per disk (0 = flat out); span_mb: MiB at the start of each disk the
    workload cycles over; sync_every: fdatasync every N writes (0 = never).
    """
    for name, value in (("rate", rate), ("span_mb", span_mb), ("sync_every", sync_every)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    return (
        # mitigations=off: a throwaway test guest; the speculation mitigations only slow TCG.
        "console=ttyS0 quiet panic=-1 mitigations=off "
        f"ferry.rate={rate} ferry.span_mb={span_mb} ferry.sync_every={sync_every}"
    )


def guest_paths(build_dir: Path, pvh: bool = True) -> tuple[Path, Path]:
    """(kernel, initrd) inside ``build_dir``; they exist only once the guest is built.

    The kernel is ``vmlinux-pvh`` (uncompressed ELF, booted by QEMU through its PVH entry:
    ~5 s faster under TCG) when the build produced it and ``pvh`` is true, else ``vmlinuz``.
    Both take the same ``-kernel/-initrd/-append`` arguments.
    """
    build_dir = Path(build_dir)
    kernel = build_dir / "vmlinux-pvh"
    if not (pvh and kernel.exists()):
        kernel = build_dir / "vmlinuz"
    return kernel, build_dir / "initrd.img"


def register_test_guest(database_url: str, guest_dir: Path) -> bool:
    """Register the built guest in ``guest_dir`` as `ferry-test-guest`, straight into the database:
    `ferry init` runs before any server does (bootstrap, like creating the admin user). False when
    ``guest_dir`` holds no built guest."""
    if not (guest_dir / "vmlinuz").is_file():
        return False
    kernel, initrd = guest_paths(guest_dir)
    engine = make_engine(database_url)
    try:
        with contextlib.suppress(Conflict):  # `ferry init` run again on the same database
            register_image(
                session_factory(engine),
                TEST_GUEST,
                kernel=str(kernel),
                initrd=str(initrd),
                cmdline=GUEST_CMDLINE(),
            )
    finally:
        engine.dispose()
    return True
