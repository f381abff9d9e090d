"""The `ferry` command line: Typer + Rich over HTTP (keystoneauth1), like the openstack CLI."""
