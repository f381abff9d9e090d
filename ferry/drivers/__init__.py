"""Drivers: the only code that touches files, processes and QEMU. They never decide policy."""
