"""The `tongbu` command: serve, migrate, and bootstrap admin users and API tokens.

Subcommands are registered through SUBCOMMANDS: each entry is a function that adds one
parser to the subparsers and sets `handler` (a function taking the parsed arguments and
returning the exit status). Other packages add theirs by appending to the list, so this
module never has to know them.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Callable, Sequence

from signaling.cli.settings import add_settings_arguments, settings_from_args

AddSubcommand = Callable[[argparse._SubParsersAction], None]


# ------------------------------------------------------------------ serve


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the server (API, signaling, pages)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8080)")
    add_settings_arguments(parser)
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from signaling.app import create_app

    settings = settings_from_args(args, host=args.host, port=args.port)
    web.run_app(create_app(settings), host=settings.host, port=settings.port)
    return 0


# ---------------------------------------------------------------- migrate


def _add_migrate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate", help="bring the database schema up to date (serve also does this)"
    )
    add_settings_arguments(parser)
    parser.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from classroom.db import close_database, open_database

    async def run() -> None:
        await close_database(await open_database(settings_from_args(args).resolved_database_url))

    asyncio.run(run())
    print("database is up to date")
    return 0


# ------------------------------------------------------------------ admin


def _add_admin(subparsers: argparse._SubParsersAction) -> None:
    admin = subparsers.add_parser("admin", help="users and API tokens")
    commands = admin.add_subparsers(dest="admin_command", required=True)

    create = commands.add_parser(
        "create-user", help="create a user (the first admin is made this way)"
    )
    create.add_argument("--username", required=True)
    create.add_argument(
        "--password",
        help="password; omitted: read $TONGBU_PASSWORD or ask (keeps it out of shell history)",
    )
    create.add_argument(
        "--role",
        required=True,
        choices=["admin", "school_admin", "teacher", "reviewer", "device"],
    )
    create.add_argument("--school-id", type=int)
    create.add_argument(
        "--classroom",
        type=int,
        metavar="ID",
        dest="classroom_id",
        help="for --role device (required): the classroom this account is the box of; "
        "the account belongs to that classroom's school",
    )
    create.add_argument("--display-name", default="")
    add_settings_arguments(create)
    create.set_defaults(handler=_create_user)

    bind = commands.add_parser(
        "bind-device",
        help="bind a device account to its classroom (devices made before binding existed "
        "are refused until then)",
    )
    bind.add_argument("--username", required=True)
    bind.add_argument("--classroom", type=int, metavar="ID", required=True, dest="classroom_id")
    add_settings_arguments(bind)
    bind.set_defaults(handler=_bind_device)

    issue = commands.add_parser(
        "issue-token", help="print a new API token for a user (valid until revoked)"
    )
    issue.add_argument("--username", required=True)
    issue.add_argument("--name", default="cli", help="label kept with the token")
    add_settings_arguments(issue)
    issue.set_defaults(handler=_issue_token)


def _password(args: argparse.Namespace) -> str:
    if args.password:
        return args.password
    if env := os.environ.get("TONGBU_PASSWORD"):
        return env
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("tongbu: the passwords differ")
    return first


def _create_user(args: argparse.Namespace) -> int:
    from classroom import audit
    from classroom.db import close_database, open_database
    from classroom.models import DomainError
    from classroom.users import create_user

    if args.role == "device" and args.classroom_id is None:
        print(
            "tongbu: a device account is its classroom's own: give --classroom ID",
            file=sys.stderr,
        )
        return 2
    if args.role != "device" and args.classroom_id is not None:
        print("tongbu: only a device account is bound to a classroom", file=sys.stderr)
        return 2
    password = _password(args)

    async def run() -> int:
        sessionmaker = await open_database(settings_from_args(args).resolved_database_url)
        try:
            async with sessionmaker() as db:
                user = await create_user(
                    db,
                    username=args.username,
                    password=password,
                    role=args.role,
                    display_name=args.display_name,
                    school_id=args.school_id,
                    classroom_id=args.classroom_id,
                )
                detail = {
                    "role": user.role,
                    "school_id": user.school_id,
                    "classroom_id": user.classroom_id,
                }
                await audit.record(db, "cli", "user_created", f"user:{user.username}", detail)
        except DomainError as exc:
            print(f"tongbu: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await close_database(sessionmaker)
        print(f"created {user.role} {user.username} (id {user.id})")
        return 0

    return asyncio.run(run())


def _bind_device(args: argparse.Namespace) -> int:
    """Bind a device account to its classroom (and so to the classroom's school)."""
    from classroom import audit
    from classroom.db import close_database, open_database
    from classroom.models import DomainError
    from classroom.users import get_user_by_name, update_user

    async def run() -> int:
        sessionmaker = await open_database(settings_from_args(args).resolved_database_url)
        try:
            async with sessionmaker() as db:
                user = await get_user_by_name(db, args.username)
                if user is None:
                    print(f"tongbu: no user {args.username!r}", file=sys.stderr)
                    return 1
                if user.role != "device":
                    print(
                        f"tongbu: {args.username!r} is a {user.role}, not a device", file=sys.stderr
                    )
                    return 1
                before = user.classroom_id
                await update_user(db, user, classroom_id=args.classroom_id)
                detail = {"changes": {"classroom_id": [before, user.classroom_id]}}
                await audit.record(db, "cli", "user.updated", f"user:{user.username}", detail)
        except DomainError as exc:
            print(f"tongbu: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await close_database(sessionmaker)
        print(
            f"bound device {user.username} to classroom {user.classroom_id} "
            f"(school {user.school_id})"
        )
        return 0

    return asyncio.run(run())


def _issue_token(args: argparse.Namespace) -> int:
    from classroom import audit
    from classroom.db import close_database, open_database
    from classroom.users import get_user_by_name, issue_token

    async def run() -> int:
        sessionmaker = await open_database(settings_from_args(args).resolved_database_url)
        try:
            async with sessionmaker() as db:
                user = await get_user_by_name(db, args.username)
                if user is None:
                    print(f"tongbu: no user {args.username!r}", file=sys.stderr)
                    return 1
                token = await issue_token(db, user, name=args.name)
                await audit.record(
                    db, "cli", "api_token_issued", f"user:{user.username}", {"name": args.name}
                )
        finally:
            await close_database(sessionmaker)
        print(token)
        return 0

    return asyncio.run(run())


# ------------------------------------------------------- other packages'


def _add_agent(subparsers: argparse._SubParsersAction) -> None:
    from classroom.agent.cli import add_agent_parser

    add_agent_parser(subparsers)


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    from signaling.cli.demo import add_demo_parser

    add_demo_parser(subparsers)


def _add_term(subparsers: argparse._SubParsersAction) -> None:
    from signaling.cli.timetable import add_term_parser

    add_term_parser(subparsers)


SUBCOMMANDS: list[AddSubcommand] = [
    _add_serve,
    _add_migrate,
    _add_admin,
    _add_agent,
    _add_demo,
    _add_term,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tongbu", description="Tongbu (同步课堂): live 1拖4 synchronous classrooms"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # alembic narrates every plugin at INFO on each start, and aioice every ICE check
        # of every connection: neither helps someone running a server or a classroom box.
        for chatty in ("alembic", "aioice", "aiortc"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    return int(args.handler(args) or 0)
