"""`bot users add|disable|enable|reset|list`: the console's accounts, managed on the server only.

The password is read from the terminal (twice) or, when stdin is not a terminal, as one line of
stdin (for provisioning scripts); it is never an argument, where `ps` and the shell's history show it.
"""

from __future__ import annotations

import getpass
import sys

from bot.console.accounts import AccountError, Accounts
from bot.console.roles import ROLES


def add_users_command(sub) -> None:
    users = sub.add_parser("users", help="staff accounts of the web console").add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="create an account (the first admin is made this way)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=list(ROLES), help=", ".join(f"{c}={r.label}" for c, r in ROLES.items()))
    add.add_argument("--name", default="", help="the person's name as shown in the console and the audit log")
    for action, text in (("disable", "refuse this account's logins"), ("enable", "allow it again"), ("reset", "a new password")):
        users.add_parser(action, help=text).add_argument("username")
    users.add_parser("list")


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first


async def run_users(client, args) -> int:
    accounts = Accounts(client)
    try:
        if args.action == "add":
            account = await accounts.add(args.username, args.role, _password(), name=args.name)
            print(f"added {account.username} ({account.role.code})")
        elif args.action in ("disable", "enable"):
            await accounts.set_disabled(args.username, args.action == "disable")
            print(f"{args.action}d {args.username}")
        elif args.action == "reset":
            await accounts.reset(args.username, _password())
            print(f"new password set for {args.username}")
        else:
            for a in await accounts.list():
                print(f"{a.username}\t{a.role.code}\t{a.name}\t{'disabled' if a.disabled else 'active'}")
    except AccountError as e:
        print(f"bot: {e}", file=sys.stderr)
        return 2
    return 0
