"""The QEMU hypervisor driver (driver.py) and the pieces it is made of.

Re-exports what the rest of Ferry, the tests and the bench use: `QemuDriver`, the run-dir layout
(`RunDir`, `servers_root`) and the node and device naming a test needs to build QEMU state by hand.
"""

from ferry.drivers.hypervisor.qemu.devices import device_args, device_id
from ferry.drivers.hypervisor.qemu.driver import QemuDriver
from ferry.drivers.hypervisor.qemu.nodes import chain_options, file_node, format_node, node_options
from ferry.drivers.hypervisor.qemu.rundir import RunDir, servers_root

__all__ = [
    "QemuDriver",
    "RunDir",
    "chain_options",
    "device_args",
    "device_id",
    "file_node",
    "format_node",
    "node_options",
    "servers_root",
]
