"""Policy: one readable table of action → rule, enforced by services (never by routers).

Rules:
- `reader`: any role on the project (reader, member, admin, service).
- `member`: may change the project's resources (member, admin or service).
- `admin`: the admin role.
- `service`: the service role (internal calls between Ferry's own services).
- `admin_or_service`: either of those two.
A token's own user may always check, validate and revoke it (the identity service compares the
users before it asks this table, as Keystone's `rule:token_subject` does); the `token:*` rules
say who else may: Keystone's defaults, with Ferry's admin in the place of a system-scoped role.
Project ownership (a caller only sees its own project's resources unless admin) is checked by the
services when they load a resource: another project's resource is reported as not found.
"""

from __future__ import annotations

from collections.abc import Callable

from ferry.domain.errors import Forbidden
from ferry.domain.roles import Role
from ferry.services.context import RequestContext

RULES: dict[str, str] = {
    "volume:get": "reader",
    "volume:get_all": "reader",
    "volume:get_all_tenants": "admin",
    "volume:create": "member",
    "volume:update": "member",
    "volume:delete": "member",
    "volume:force_delete": "admin",
    "volume:extend": "member",
    "volume:revert_to_snapshot": "member",
    "volume:reset_status": "admin",
    "volume:force_detach": "admin",
    "volume:update_readonly": "member",
    "volume:summary": "reader",
    "volume:admin_fields": "admin",
    "volume:migrate": "admin",
    "volume:retype": "member",
    "volume:migration_get": "reader",
    "volume:migration_cancel": "admin",
    "volume:migration_set_speed": "admin",
    "volume:migrate_completion": "service",
    "snapshot:get": "reader",
    "snapshot:create": "member",
    "snapshot:update": "member",
    "snapshot:delete": "member",
    "quota:show": "reader",
    "quota:update": "admin",
    "quota:delete": "admin",
    "quota_class:get": "admin",
    "quota_class:update": "admin",
    "limits:get": "reader",
    "snapshot:reset_status": "admin",
    "snapshot:force_delete": "admin",
    "snapshot:update_status": "member",
    "type:get": "reader",
    "type:manage": "admin",
    "qos:get": "admin",
    "qos:manage": "admin",
    "backend:get_pools": "admin",
    "backend:get_capabilities": "admin",
    "message:get": "reader",
    "message:delete": "member",
    "attachment:get": "reader",
    "server:get": "reader",
    "server:create": "member",
    "server:delete": "member",
    "server:update": "member",
    "server:action": "member",
    "server:console": "member",
    "server:attach_volume": "member",
    "server:detach_volume": "member",
    "server:swap_volume": "service",
    "server:create_on_host": "admin",
    "server:migrate_live": "admin",
    "server:migrations": "admin",
    "server:extended_attributes": "admin",
    "server:instance_actions": "reader",
    "server:instance_action_events": "admin",
    "host:get": "admin",
    "host:manage": "admin",
    "image:get": "reader",
    "image:register": "admin",
    "image:manage": "admin",
    # Glance's defaults: members manage their project's images; publicizing one is an admin's.
    "image:create": "member",
    "image:modify": "member",
    "image:delete": "member",
    "image:upload": "member",
    "image:download": "reader",
    "image:deactivate": "member",
    "volume:upload_image": "member",
    "volume:upload_public": "admin",
    "flavor:get": "reader",
    "flavor:manage": "admin",
    # Nova: a user's own key pairs are theirs to manage, whatever their role; another's, an admin's.
    "keypair:get": "reader",
    "keypair:manage": "reader",
    "doctor:run": "admin",
    "doctor:repair": "admin",
    "identity:list_domains": "admin",
    "identity:create_project": "admin",
    "identity:get_project": "reader",
    "identity:list_projects": "admin",  # Keystone's: others use GET /auth/projects, /users/{id}/projects
    "identity:delete_project": "admin",
    "identity:update_project": "admin",
    "identity:get_domain": "reader",
    # Keystone's defaults with Ferry's admin in the place of a system-scoped admin or reader;
    # `admin_or_self` rules are checked with `enforce_self` (the target user's id).
    "identity:list_users": "admin",
    "identity:create_user": "admin",
    "identity:update_user": "admin",
    "identity:delete_user": "admin",
    "identity:get_user": "admin_or_self",
    # Keystone checks the original password, not who asks; Ferry wants a token of the user or an admin
    "identity:change_password": "admin_or_self",
    "identity:list_user_projects": "admin_or_self",
    "identity:list_roles": "admin",
    "identity:get_role": "admin",
    "identity:manage_grants": "admin",
    "identity:check_grant": "admin",
    "identity:list_role_assignments": "admin_or_self",
    "identity:application_credentials": "admin_or_self",
    "identity:list_catalog": "admin",
    "token:check": "admin",
    "token:validate": "admin_or_service",
    "token:revoke": "admin",
}

_CHECKS: dict[str, Callable[[RequestContext], bool]] = {
    "reader": lambda c: bool(c.roles & set(Role)),
    "member": lambda c: c.can_write,
    "admin": lambda c: c.is_admin,
    "service": lambda c: c.is_service,
    "admin_or_service": lambda c: c.is_admin or c.is_service,
}


_SELF_CHECKS: dict[str, Callable[[RequestContext, str], bool]] = {
    "self": lambda c, user: c.user_id == user,
    "admin_or_self": lambda c, user: c.is_admin or c.user_id == user,
}


def allowed(ctx: RequestContext, action: str) -> bool:
    rule = RULES[action]
    if rule in _SELF_CHECKS:
        return ctx.is_admin and rule == "admin_or_self"
    return bool(_CHECKS[rule](ctx))


def enforce_self(ctx: RequestContext, action: str, user_id: str) -> None:
    """Enforce a rule that may name the target user (`self`, `admin_or_self`), as Keystone's
    `user_id:%(target.user.id)s`."""
    rule = RULES[action]
    ok = _SELF_CHECKS[rule](ctx, user_id) if rule in _SELF_CHECKS else _CHECKS[rule](ctx)
    if not ok:
        raise Forbidden(f"Policy does not allow {action} to be performed.")


def enforce(ctx: RequestContext, action: str) -> None:
    if not allowed(ctx, action):
        raise Forbidden(f"Policy does not allow {action} to be performed.")
