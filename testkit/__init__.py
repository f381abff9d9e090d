"""Test support: the Ferry test guest (build, console parsing) and the host-side verifier."""
