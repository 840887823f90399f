"""Every Redis key of the staff console, in one place (all under the `console:` prefix).

Accounts and the audit log each share one hash tag, so a Redis Cluster keeps each on one node; a
session is keyed by a digest of its cookie, so whoever reads Redis cannot take over a session.
"""

from __future__ import annotations

import hashlib

AUDIT_STREAM = "console:{audit}:log"
USERS = "console:{users}:all"


def user(username: str) -> str:
    return f"console:{{users}}:user:{username}"


def session(session_id: str) -> str:
    return f"console:{{session}}:{hashlib.sha256(session_id.encode()).hexdigest()}"


def login_failures_of_account(username: str) -> str:
    return f"console:{{login}}:account:{hashlib.sha256(username.encode()).hexdigest()[:32]}"


def login_failures_of_address(address: str) -> str:
    return f"console:{{login}}:address:{hashlib.sha256(address.encode()).hexdigest()[:32]}"


def calls(application_id: str) -> str:
    """The staff's record of calls to an applicant (sealed entries), beside the application's own keys."""
    return f"console:{{{application_id}}}:calls"


def window_intake(intake_id: str) -> str:
    """A window intake in progress: which clerk drives it and the conversation it is."""
    return f"console:{{window}}:{intake_id}"
