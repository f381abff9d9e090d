"""HTTP only: routing, request parsing, views and error bodies. Policy lives in services."""
