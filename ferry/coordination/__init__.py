"""Coordination between the conductor and the agents of many hosts, through a host action queue.

Owns: the driver call and its wire format (`calls`, `wire`), the `HostQueue` contract and its
two implementations (`queue`: the shared performing logic; `memory`: in-process, for the
all-in-one `ferry serve`; `postgres`: `host_actions` + LISTEN/NOTIFY), the agent's side
(`executor`: a call performed on the local drivers) and the caller's side (`hypervisor`,
`storage`: driver proxies whose every method is a call sent to a host).
Decides no policy and knows no use case: it may import ferry.domain, ferry.drivers, ferry.db and
ferry.config, never ferry.services, ferry.api or ferry.cli.
"""
