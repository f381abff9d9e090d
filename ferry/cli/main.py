"""`ferry`: set up and run the control plane (`init`, `serve`), check it (`doctor`), and assemble
the resource commands, which drive it over its HTTP API only (volumes.py, servers.py, …)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from ferry.cli import backends, hosts, images, servers, snapshots, volume_types, volumes
from ferry.cli.client import Client, CliError
from ferry.cli.output import console, print_error, show

app = typer.Typer(
    help="Ferry: live volume migration for QEMU/KVM clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(volumes.app, name="volume")
app.add_typer(snapshots.app, name="snapshot")
app.add_typer(volume_types.app, name="type")
app.add_typer(backends.app, name="backend")
app.add_typer(servers.app, name="server")
app.add_typer(images.app, name="image")
app.add_typer(hosts.app, name="host")


def main() -> None:
    try:
        app()
    except CliError as e:
        print_error(str(e))
        sys.exit(1)


# -- control plane: these two run on its host, before (init) or as (serve) the API ---------------
@app.command()
def init(
    data_dir: Path = typer.Option(Path("data"), help="Where config, database and backends live."),
    port: int = typer.Option(8776),
    database_url: str = typer.Option(None, help="Default: SQLite file."),
    guest_dir: Path = typer.Option(None, help="Built test guest (vmlinuz, initrd.img) to register."),
    password_hashing: str = typer.Option(
        "strong", help="argon2 parameters for [identity]: strong, or light (tests only: cheap to crack)."
    ),
) -> None:
    """Write ferry.toml, create the database and bootstrap users, projects and roles."""
    from ferry.domain.errors import FerryError
    from ferry.services import bootstrap
    from ferry.services.guest_image import register_test_guest

    try:
        path, cfg = bootstrap.init(data_dir, port, database_url, guest_dir, password_hashing)
    except FerryError as e:
        raise CliError(e.message) from None
    if guest_dir:
        register_test_guest(cfg.database_url, guest_dir)
    console.print(f"wrote {path}\ncredentials in {cfg.data_dir / 'clouds.yaml'} (mode 0600)")
    console.print(
        f"next: ferry serve --config {path}\n      export OS_CLIENT_CONFIG_FILE="
        f"{cfg.data_dir / 'clouds.yaml'} OS_CLOUD=ferry"
    )


@app.command()
def serve(
    config: Path = typer.Option(None, "--config", help="Default: $FERRY_CONFIG or ./ferry.toml"),
    role: str = typer.Option(
        "all",
        help="all: the API, the conductor and the drivers of this one host in one process. "
        "api: the stateless API tier and conductor of a many-host deployment (PostgreSQL; "
        "every host runs `ferry agent`).",
    ),
    workers: int = typer.Option(1, min=1, max=64, help="API worker processes (--role api)."),
    log_level: str = typer.Option("info"),
) -> None:
    """Run the control plane: all-in-one, or the API tier of many hosts."""
    import logging

    import uvicorn

    from ferry import config as cfgmod
    from ferry.api.app import create_app
    from ferry.domain.errors import FerryError
    from ferry.services.app import Ferry, prepare
    from ferry.services.tier import ProcessRole

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if role not in ("all", "api"):
        raise CliError(f"--role must be all or api, not {role!r} (hosts run `ferry agent`)")
    if role == "all" and workers != 1:
        raise CliError("--workers is for --role api: the all-in-one is one process")
    path = cfgmod.config_path(config)
    try:
        cfg = prepare(path, ProcessRole(role))
    except FerryError as e:
        raise CliError(e.message) from None
    quiet = log_level != "debug"
    if role == "all":
        app_or_factory: object = create_app(Ferry(cfg))
    else:
        os.environ["FERRY_CONFIG"] = str(path.resolve())  # each worker loads it (`tier_app`)
        os.environ["FERRY_LOG_LEVEL"] = log_level
        app_or_factory = "ferry.api.app:tier_app"
    uvicorn.run(
        app_or_factory,  # type: ignore[arg-type]
        factory=role == "api",
        workers=workers if role == "api" else None,
        host=cfg.listen_host,
        port=cfg.listen_port,
        log_level=log_level,
        access_log=not quiet,
    )


@app.command()
def agent(
    host: str = typer.Option(..., "--host", help="This hypervisor host's name (as servers show it)."),
    address: str = typer.Option(..., "--address", help="This host's IP: QEMU binds migration ports there."),
    config: Path = typer.Option(None, "--config", help="Default: $FERRY_CONFIG or ./ferry.toml"),
    run_dir: Path = typer.Option(None, help="QMP sockets, pidfiles, consoles. Default: <run>/hosts/HOST."),
    log_level: str = typer.Option("info"),
) -> None:
    """Run one hypervisor host's agent: its QEMU guests and the backends it reaches."""
    import logging

    from ferry import config as cfgmod
    from ferry.domain.errors import FerryError
    from ferry.services.agent import run_agent
    from ferry.services.tier import AgentHost

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = cfgmod.load(cfgmod.config_path(config))
        where = AgentHost(host, address, run_dir or cfg.run_dir / "hosts" / host)
        run_agent(cfg, where)
    except FerryError as e:
        raise CliError(e.message) from None


@app.command()
def doctor(
    json_out: bool = typer.Option(False, "--json", help="Machine-readable report"),
    repair: bool = typer.Option(
        False, "--repair", help="Settle stuck statuses and remove unowned files (admin), then report."
    ),
) -> None:
    """Compare the database with every running QEMU and every backend; exit 1 on drift. Each
    finding says what to run to repair it."""
    report = Client().volume("POST" if repair else "GET", "/ferry-doctor")
    if json_out:
        print(json.dumps(report, indent=2))
    else:
        for line in report.get("repaired", []):
            console.print(f"repaired: {line}")
        if report["healthy"]:
            console.print("[green]no drift[/green]: database, QEMU and backends agree")
        else:
            show(report["drift"], "table", ["kind", "resource", "detail", "repair"])
    if not report["healthy"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
