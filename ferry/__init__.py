"""Ferry: live volume migration for QEMU/KVM clouds."""

__version__ = "0.1.0"
