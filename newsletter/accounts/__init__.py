"""Console accounts: the people who sign in to `/admin/` (comms and admins), their passwords
(argon2id hashes only), sessions kept in the database, login limits, and the console audit log.

Both faces use it: `newsletter users …` (CLI) and the console (web). It knows nothing of either.
"""

from newsletter.accounts.audit import AuditRecord, list_audit, log_action, record
from newsletter.accounts.passwords import hash_password, verify_password
from newsletter.accounts.sessions import (
    SESSION_IDLE,
    SESSION_LIFETIME,
    SignedIn,
    end_session,
    session_user,
    start_session,
)
from newsletter.accounts.users import (
    LOCK_AFTER,
    LOCK_FOR,
    ROLES,
    SETUP_LIFETIME,
    LoginRefused,
    UserView,
    add_user,
    authenticate,
    disable_user,
    get_user,
    list_users,
    new_setup_link,
    set_password,
    setup_user,
)

__all__ = [
    "LOCK_AFTER",
    "LOCK_FOR",
    "ROLES",
    "SESSION_IDLE",
    "SESSION_LIFETIME",
    "SETUP_LIFETIME",
    "AuditRecord",
    "LoginRefused",
    "SignedIn",
    "UserView",
    "add_user",
    "authenticate",
    "disable_user",
    "end_session",
    "get_user",
    "hash_password",
    "list_audit",
    "log_action",
    "list_users",
    "new_setup_link",
    "record",
    "session_user",
    "set_password",
    "setup_user",
    "start_session",
    "verify_password",
]
