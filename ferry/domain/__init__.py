"""Pure domain: entities, states, rules and errors. No I/O, no drivers, no web framework."""
