"""Hypervisor drivers: one interface (`base.HypervisorDriver`), QEMU over QMP, and a fake."""
