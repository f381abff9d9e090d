"""Volume migration and retype: requests (`requests`), the run that performs the machine's actions
(`runner`, `steps`, `settling`) and the step log (`steplog`)."""

from ferry.services.migration.requests import SWAP_REFUSED, MigrationReport, MigrationService

__all__ = ["SWAP_REFUSED", "MigrationReport", "MigrationService"]
