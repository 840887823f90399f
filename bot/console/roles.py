"""The console's roles and what each may do.

Viewers of a department (民政, 医保, 人社) see only the cases that include one of that department's
services; which department handles which service is the pack's (`services.<code>.department`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dialogs.pack import Pack

# What a role may do: see the dashboard and delivery lists, search and open cases, show a case's
# personal data in full (logged), print the form (full data, logged), read the audit log, send a
# failed delivery to the intake again, see the assessment sessions' bookings (counts; the roster itself,
# with names and phones, is PRINT).
DASHBOARD, SEARCH, VIEW, UNMASK, PRINT, AUDIT, RETRY = "dashboard", "search", "view", "unmask", "print", "audit", "retry"
SESSIONS = "sessions"
# Record a call to the applicant (who called, the outcome, a note); enter a walk-in application.
CALLS, INTAKE = "calls", "intake"
# Move a session, announce a 精神残疾 session (bot/operator_cli.py's own operations); revoke a binding,
# close a handoff ticket.
SCHEDULE, CASEWORK = "schedule", "casework"


@dataclass(frozen=True)
class Role:
    code: str
    label: str
    may: frozenset[str]
    # A viewer's department, matched against the pack's service departments; None = every case.
    department: str | None = None


ROLES = {
    r.code: r
    for r in (
        Role(
            "clerk",
            "窗口受理员",
            frozenset({DASHBOARD, SEARCH, VIEW, UNMASK, PRINT, RETRY, SESSIONS, CALLS, INTAKE, CASEWORK}),
        ),
        Role(
            "disability_officer",
            "残联经办人",
            frozenset({DASHBOARD, SEARCH, VIEW, UNMASK, PRINT, RETRY, SESSIONS, CALLS, INTAKE, SCHEDULE, CASEWORK}),
        ),
        Role("civil_affairs", "民政查看", frozenset({SEARCH, VIEW, UNMASK, CALLS}), department="民政"),
        Role("medical_insurance", "医保查看", frozenset({SEARCH, VIEW, UNMASK, CALLS}), department="医保"),
        Role("human_resources", "人社查看", frozenset({SEARCH, VIEW, UNMASK, CALLS}), department="人社"),
        # The administrator runs the system, not cases: no personal data in full.
        Role("admin", "管理员", frozenset({DASHBOARD, SEARCH, VIEW, AUDIT, RETRY, SESSIONS, SCHEDULE})),
    )
}


def role(code: str) -> Role:
    return ROLES[code]


def may_see(role: Role, pack: Pack, services: list[str]) -> bool:
    """Whether a role may open a case with these services."""
    if role.department is None:
        return True
    return any(role.department in pack.services[s].department for s in services if s in pack.services)


def home(role: Role) -> str:
    return "/console/" if DASHBOARD in role.may else "/console/search"
