"""Use cases and policy. Services talk to the database and drivers; they never build QMP or HTTP."""
