"""Identities, permissions and the audit log."""

from mlplane.security.access import ROLE_PERMISSIONS, Guard, Permission, allowed, may_predict
from mlplane.security.principal import Principal, local_admin

__all__ = [
    "ROLE_PERMISSIONS",
    "Guard",
    "Permission",
    "Principal",
    "allowed",
    "local_admin",
    "may_predict",
]
