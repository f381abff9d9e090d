"""Server live migration between hosts: the requests (`requests.LiveMigrationService`) and the
run that performs the `LiveMachine`'s actions (`runner.LiveRun`)."""

from ferry.services.server_migration.requests import LiveMigrationService

__all__ = ["LiveMigrationService"]
