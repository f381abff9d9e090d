"""Storage drivers: one interface (`base.StorageDriver`), one file/qcow2 implementation."""
