"""The `branchline` command. Every secret can come from the environment or stdin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from branches import BranchError
from schema import ROLES
from server.cli_base import DataDir, Group, run, secret_from
from server.cli_base import with_node as _with_node
from server.errors import NodeError


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="branchline")
def main() -> None:
    """Branchline: offline-first customer management for chain stores."""


@main.group(cls=Group)
def init() -> None:
    """Create a node: headquarters, or a branch from an enrolment file."""


@init.command("hq")
@click.option("--data", "data_dir", type=DataDir, required=True, help="Data directory to create.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to keep the database key (default: outside the data directory, "
                   "in ~/.config/branchline/keys/). Ignored when BRANCHLINE_DB_KEY is set.")
@click.option("--database-url", help="postgresql+asyncpg://… for a large HQ; default: an "
                                     "SQLCipher file in the data directory.")
@click.option("--name", default="总部", show_default=True, help="Display name of the node.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init_hq(data_dir: Path, key_file: Path | None, database_url: str | None, name: str,
            as_json: bool) -> None:
    """Create a headquarters node. The admin password comes from
    BRANCHLINE_ADMIN_PASSWORD, else one is generated and printed once."""
    from server.node import init_node

    async def go() -> Any:
        node, result = await init_node(data_dir, role="hq", name=name, environ=os.environ,
                                       key_file=key_file, database_url=database_url)
        await node.close()
        return result

    result = run(go())
    if as_json:
        import json
        click.echo(json.dumps({"node_id": result.node.node_id, "data": str(data_dir.resolve()),
                               "key_file": str(result.key_file) if result.key_file else None,
                               "root_key_file": result.node.root_key_file,
                               "admin_username": result.admin_username,
                               "admin_password": result.admin_password
                               if result.password_generated else None}))
        return
    click.echo(f"Created headquarters node {result.node.node_id} in {data_dir.resolve()}")
    if result.key_file:
        click.echo(f"Database key: {result.key_file} (back it up; without it the data is lost)")
    if result.node.root_key_file:
        click.echo(f"Root key: {result.node.root_key_file} (back it up apart from the data; "
                   "without it confidential fields cannot be read at HQ)")
    if result.password_generated:
        click.echo(f"Admin login: admin / {result.admin_password}  (shown only once)")


@main.command()
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Serve HTTPS with this certificate (PEM). Tablets reaching a store PC "
                   "over the LAN need it: browsers run the offline web app only on a "
                   "secure origin (HTTPS, or localhost).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The certificate's private key (PEM).")
def serve(data_dir: Path, host: str, port: int, tls_cert: Path | None,
          tls_key: Path | None) -> None:
    """Serve the node's API and web app."""
    from server.config import load_settings
    from server.serving import check_node, serve_forever

    if (tls_cert is None) != (tls_key is None):
        raise click.ClickException("--tls-cert and --tls-key go together")
    settings = load_settings(data_dir)
    run(check_node(settings))
    scheme = "https" if tls_cert else "http"
    click.echo(f"Branchline {settings.node.role} '{settings.node.name}' serving at "
               f"{scheme}://{host}:{port}/  (API docs: /schema)")
    serve_forever(settings, host, port, tls_cert=str(tls_cert) if tls_cert else None,
                  tls_key=str(tls_key) if tls_key else None)


@main.group(cls=Group)
def user() -> None:
    """Manage users."""


@user.command("add")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.option("--username", required=True, help="Login name (lowercase).")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The user's role.")
@click.option("--branch", help="Branch code (e.g. S012) for branch staff.")
@click.option("--department", help="Department name.")
@click.option("--display-name", help="Name shown in the app (default: the username).")
def user_add(data_dir: Path, username: str, role: str, branch: str | None,
             department: str | None, display_name: str | None) -> None:
    """Add a user. The password comes from BRANCHLINE_PASSWORD or stdin."""
    from server.config import load_settings
    from server.node import open_node
    from server.services.users import create_user

    settings = load_settings(data_dir)
    password = secret_from("BRANCHLINE_PASSWORD", "Password")

    async def go() -> dict[str, Any]:
        node = await open_node(settings)
        try:
            return await create_user(node, None, username=username, password=password,
                                     role=role, branch=branch, department=department,
                                     display_name=display_name)
        finally:
            await node.close()

    row = run(go())
    click.echo(f"Added user {row['username']} ({row['role']}) id {row['id']}")


@user.command("update")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.option("--username", required=True, help="The user to change.")
@click.option("--role", type=click.Choice(ROLES), help="A new role.")
@click.option("--branch", help="A new branch code; '-' for none (HQ staff).")
@click.option("--department", help="A new department; '-' for none.")
@click.option("--display-name", help="A new name shown in the app.")
@click.option("--active/--inactive", default=None,
              help="Reactivate, or deactivate (a departing employee).")
def user_update(data_dir: Path, username: str, role: str | None, branch: str | None,
                department: str | None, display_name: str | None,
                active: bool | None) -> None:
    """Change a user at headquarters. A new role, branch, department or --inactive ends
    their sessions and revokes their devices (they wipe themselves)."""
    from server.config import load_settings
    from server.node import open_node
    from server.services.users import update_user

    settings = load_settings(data_dir)
    given = {"role": role, "display_name": display_name, "active": active,
             "branch": branch, "department": department}
    change = {k: (None if v == "-" else v) for k, v in given.items() if v is not None}
    if not change:
        raise click.UsageError("nothing to change: give --role, --branch, --department, "
                               "--display-name or --active/--inactive")

    async def go() -> tuple[dict[str, Any], list[str]]:
        node = await open_node(settings)
        try:
            return await update_user(node, None, username, change)
        finally:
            await node.close()

    row, revoked = run(go())
    state = "active" if row["active"] else "inactive"
    click.echo(f"Updated user {row['username']} ({row['role']}, {row['branch'] or 'HQ'}, "
               f"{state}); {len(revoked)} device(s) revoked")


@main.command()
@click.option("--data", "data_dir", type=DataDir, default=Path("branchline-demo"),
              show_default=True, help="Where to keep the demo node.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--customers", default=2000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="How many customers to generate.")
@click.option("--no-serve", is_flag=True, help="Create the data and exit.")
def demo(data_dir: Path, host: str, port: int, customers: int, no_serve: bool) -> None:
    """Create a demo HQ (3 branches, a dozen users, thousands of customers) and serve it."""
    from server.config import load_settings
    from server.demo import DEMO_PASSWORD, build_demo
    from server.serving import serve_forever

    if not (data_dir / "node.json").exists():
        click.echo(f"Creating demo data in {data_dir.resolve()} …")
        logins = run(build_demo(data_dir, customers, os.environ))
    else:
        from server.demo import read_logins
        logins = run(read_logins(load_settings(data_dir)))
    click.echo(f"Logins (password for all: {DEMO_PASSWORD}):")
    for username, role, branch in logins:
        click.echo(f"  {username:<16} {role:<18} {branch or 'HQ'}")
    if no_serve:
        return
    click.echo(f"Branchline demo HQ at http://{host}:{port}/  (API docs: "
               f"http://{host}:{port}/schema)")
    serve_forever(load_settings(data_dir), host, port)


@main.command()
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
def rekey(data_dir: Path) -> None:
    """Re-encrypt the database under a new random key and replace the key file.

    With BRANCHLINE_DB_KEY set (no key file), the new key is printed once instead."""
    from server.config import load_settings
    from server.rekey import rekey_node

    settings = load_settings(data_dir)
    new_hex = run(rekey_node(settings))
    if new_hex is not None:
        click.echo(f"New database key (set BRANCHLINE_DB_KEY to it): {new_hex}")
    else:
        click.echo(f"Database re-encrypted; new key in {settings.node.key_file}")


@init.command("branch")
@click.option("--data", "data_dir", type=DataDir, required=True, help="Data directory to create.")
@click.option("--enrol", "enrol_file", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The enrolment file from `branchline branch add` at headquarters.")
@click.option("--upstream", help="Headquarters' URL (default: the one in the enrolment file).")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to keep the database key (default: outside the data directory).")
def init_branch(data_dir: Path, enrol_file: Path, upstream: str | None,
                key_file: Path | None) -> None:
    """Create a branch node from an enrolment file. The one-time passphrase comes
    from BRANCHLINE_ENROL_PASSPHRASE or stdin."""
    from branches import read_enrolment
    from crypto import NodeKey
    from schema import utcnow
    from server.node import init_node

    passphrase = secret_from("BRANCHLINE_ENROL_PASSPHRASE", "Enrolment passphrase",
                             confirm=False)
    try:
        enrolment = read_enrolment(enrol_file, passphrase)
    except BranchError as exc:
        raise click.ClickException(str(exc)) from None
    hq = {"id": enrolment.hq_node_id, "kind": "hq", "name": "headquarters", "branch": None,
          "public_key": enrolment.hq_public_key, "url": enrolment.hq_url,
          "box_public_key": enrolment.hq_box_public_key or None, "enrolled_at": utcnow()}

    async def go() -> Any:
        node, result = await init_node(
            data_dir, role="branch", name=enrolment.branch_name, environ=os.environ,
            key_file=key_file, branch_code=enrolment.branch_code, node_id=enrolment.node_id,
            node_key=NodeKey.from_hex(enrolment.node_key), trusted=[hq],
            hq_node_id=enrolment.hq_node_id, upstream_url=upstream or enrolment.hq_url,
            admin=False,
            grants=(enrolment.box_key, enrolment.grants) if enrolment.box_key else None)
        await node.close()
        return result

    result = run(go())
    click.echo(f"Created branch node {enrolment.branch_code} ({result.node.node_id}) in "
               f"{data_dir.resolve()}")
    if result.key_file:
        click.echo(f"Database key: {result.key_file} (back it up; without it the data is lost)")
    click.echo("Run `branchline sync --data DIR` (or `serve`) to fetch the branch's data.")


@main.group(cls=Group)
def branch() -> None:
    """Enrol branch nodes (at headquarters)."""


@branch.command("add")
@click.option("--data", "data_dir", type=DataDir, required=True, help="Headquarters' data dir.")
@click.option("--code", required=True, help="Branch code, e.g. S012 (never reused).")
@click.option("--name", required=True, help="Branch name, e.g. 深圳南山店.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the enrolment file.")
@click.option("--url", help="Headquarters' URL as the branch reaches it.")
@click.option("--classes", default="confidential",
              help="Field-key classes the branch's users need, comma-separated, from "
                   "confidential, secret, credit (default: confidential).")
def branch_add(data_dir: Path, code: str, name: str, out: Path, url: str | None,
               classes: str) -> None:
    """Enrol a branch: write its sealed enrolment file. The passphrase comes from
    BRANCHLINE_ENROL_PASSPHRASE, else one is generated and printed once."""
    from crypto import new_passphrase
    from server.services.nodes import add_branch

    passphrase = os.environ.get("BRANCHLINE_ENROL_PASSPHRASE") or new_passphrase()
    info = run(_with_node(data_dir, lambda node: add_branch(
        node, code=code.upper(), name=name, out=out, passphrase=passphrase, url=url,
        classes=[c.strip() for c in classes.split(",") if c.strip()])))
    click.echo(f"Enrolled branch {info['branch']} as node {info['node_id']}; file {out}")
    if not os.environ.get("BRANCHLINE_ENROL_PASSPHRASE"):
        click.echo(f"One-time passphrase (shown only once): {passphrase}")


@main.group(cls=Group)
def customer() -> None:
    """Customer archives."""


@customer.command("erase")
@click.option("--data", "data_dir", type=DataDir, required=True, help="HQ's data directory.")
@click.argument("customer_id")
@click.option("--reviewed-by", required=True, help="Username of the reviewing department head.")
@click.option("--approved-by", required=True, help="Username of the approving general manager.")
@click.option("--reason", required=True, help="Why the archive is destroyed (recorded).")
def customer_erase(data_dir: Path, customer_id: str, reviewed_by: str, approved_by: str,
                   reason: str) -> None:
    """Erase a customer's personal data (crypto-shredding): confidential and secret
    fields are cleared and the customer's data keys destroyed on every replica after
    the next sync; a destruction record is kept."""
    from server.services.erasure import erase_customer

    record = run(_with_node(data_dir, lambda node: erase_customer(
        node, customer_id, reviewed_by=reviewed_by, approved_by=approved_by, reason=reason)))
    click.echo(f"Erased {len(record['fields'])} fields of customer {customer_id}; "
               f"destruction record {record['id']}")


@main.group(cls=Group)
def keys() -> None:
    """Field-encryption keys (see crypto/THREATS.md)."""


def _at_hq(node: Any) -> None:
    if node.role != "hq" or node.settings.root_key is None or node.db.vault is None:
        raise NodeError("keys are managed at headquarters, with its root key "
                        "(key file, BRANCHLINE_ROOT_KEY or BRANCHLINE_ROOT_PASSPHRASE)")


@keys.command("rotate")
@click.option("--data", "data_dir", type=DataDir, required=True, help="HQ's data directory.")
@click.option("--class", "cls", required=True,
              type=click.Choice(["confidential", "secret", "credit"]),
              help="Which class key gets a new version.")
@click.option("--wait/--background", default=True, show_default=True,
              help="Rewrap and retire now, or leave it to the running HQ's key jobs.")
def keys_rotate(data_dir: Path, cls: str, wait: bool) -> None:
    """Add a version of a class key: new writes use it at once, nodes holding the class
    get it with their next sync, every data key of the class is rewrapped, and the old
    versions are destroyed once every holder has the new one."""
    from server.key_jobs import maintain
    from server.keys import rotate

    async def go(node: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        _at_hq(node)
        result = await rotate(node.db, hq_node_id=node.node_id,
                              root_key=node.settings.root_key, cls=cls)
        done = await maintain(node.db, node.node_id) if wait else {}
        return result, done

    result, done = run(_with_node(data_dir, go))
    click.echo(f"{cls} key now at version {result['version']}; {result['nodes_granted']} "
               "nodes granted")
    if done:
        click.echo(f"{done['rewrapped']} data keys rewrapped; destroyed: "
                   f"{', '.join(done['retired']) or 'none yet (a holder has not synced)'}")


@keys.command("policy")
@click.option("--data", "data_dir", type=DataDir, required=True, help="HQ's data directory.")
@click.option("--field", "field_name", help="An encrypted field, as table.column "
              "(e.g. customers.email).")
@click.option("--role", help="A role, e.g. finance.")
@click.option("--classes", required=True,
              help="Key class(es): one for a field; comma-separated for a role "
                   "(empty for none).")
@click.option("--wait/--background", default=True, show_default=True,
              help="Re-encrypt and grant now, or leave it to the running HQ's key jobs.")
def keys_policy(data_dir: Path, field_name: str | None, role: str | None, classes: str,
                wait: bool) -> None:
    """Change which class encrypts a field, or which classes a role reads. Every node
    applies it after its next sync; values of a moved field are re-encrypted."""
    from server.key_jobs import maintain, set_policy

    if (field_name is None) == (role is None):
        raise click.UsageError("give exactly one of --field and --role")
    kind, name = ("field", field_name) if field_name else ("role", role)

    async def go(node: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        _at_hq(node)
        result = await set_policy(node.db, hq_node_id=node.node_id, kind=kind,
                                  name=str(name),
                                  classes=[c.strip() for c in classes.split(",") if c.strip()])
        done = await maintain(node.db, node.node_id) if wait else {}
        return result, done

    result, done = run(_with_node(data_dir, go))
    click.echo(f"{kind} {name}: {', '.join(result['classes']) or 'no classes'}")
    if done:
        click.echo(f"{done['reencrypted']} values re-encrypted; {done['granted']} grants "
                   "made")


@keys.command("status")
@click.option("--data", "data_dir", type=DataDir, required=True, help="HQ's data directory.")
def keys_status(data_dir: Path) -> None:
    """Key versions, and what the background key jobs still have to do."""
    from server.key_jobs import pending

    async def go(node: Any) -> dict[str, Any]:
        _at_hq(node)
        return await pending(node.db)

    info = run(_with_node(data_dir, go))
    for cls, versions in info["versions"].items():
        click.echo(f"{cls}: versions {', '.join(map(str, versions))}")
    click.echo(f"to rewrap: {info['rewrap']}; to re-encrypt: {info['reencrypt']}")


@main.group(cls=Group)
def node() -> None:
    """Nodes headquarters trusts."""


@node.command("list")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data dir.")
def node_list(data_dir: Path) -> None:
    """List known nodes."""
    from server.services.nodes import list_nodes

    for n in run(_with_node(data_dir, list_nodes)):
        state = f"revoked ({n['revoked_reason']})" if n["revoked_at"] else "active"
        click.echo(f"{n['id']}  {n['kind']:<6} {n['branch'] or '-':<6} {n['name']}  {state}")


@node.command("revoke")
@click.option("--data", "data_dir", type=DataDir, required=True, help="Headquarters' data dir.")
@click.option("--node", "node_id", help="The node id to revoke.")
@click.option("--branch", "branch_code", help="Or: the branch whose node to revoke.")
@click.option("--reason", required=True, help="Why (shown to the node when refused).")
def node_revoke(data_dir: Path, node_id: str | None, branch_code: str | None,
                reason: str) -> None:
    """Revoke a node: its requests and changes are refused with the reason."""
    from server.services.nodes import revoke

    revoked = run(_with_node(data_dir, lambda n: revoke(n, node_id=node_id,
                                                        branch=branch_code, reason=reason)))
    click.echo(f"Revoked node {revoked}")


@main.command("sync")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The branch's data dir.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def sync_cmd(data_dir: Path, as_json: bool) -> None:
    """Sync once with headquarters; exits non-zero on failure."""
    from server.services.upstream import sync_now

    try:
        report = run(_with_node(data_dir, sync_now))
    except BranchError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        import json
        from dataclasses import asdict
        click.echo(json.dumps(asdict(report)))
        return
    click.echo(f"Pushed {report.pushed_rows} rows, pulled {report.pulled_rows} "
               f"(applied {report.applied}, conflicts {report.conflicts}, "
               f"evicted {report.evicted}, quarantined {report.quarantined})")
    for message in report.messages:
        click.echo(f"  {message}")


@main.command("gc")
@click.option("--data", "data_dir", type=DataDir, required=True, help="Headquarters' data dir.")
@click.option("--retention-days", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Collect tombstones older than this even if a peer has not seen them "
                   "(that peer then rebuilds from a snapshot).")
def gc_cmd(data_dir: Path, retention_days: float) -> None:
    """Collect delete tombstones every peer has acknowledged."""
    from server.services.sync import collect_garbage

    count = run(_with_node(data_dir, lambda n: collect_garbage(n, retention_days)))
    click.echo(f"Collected {count} tombstones")


@main.command("status")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data dir.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_cmd(data_dir: Path, as_json: bool) -> None:
    """Last sync, pending outbound changes, open conflicts, quarantined changes."""
    from server.services.upstream import status

    info = run(_with_node(data_dir, status))
    if as_json:
        import json
        click.echo(json.dumps(info, default=str))
        return
    for key, value in info.items():
        click.echo(f"{key:<17} {value if value is not None else '-'}")


from server.cli_bundle import bundle  # noqa: E402  (it builds on the helpers above)

main.add_command(bundle)

from server.cli_access import access  # noqa: E402

main.add_command(access)

from server.cli_audit import audit  # noqa: E402

main.add_command(audit)

from server.cli_retention import retention, subject_export_cmd  # noqa: E402

main.add_command(retention)
customer.add_command(subject_export_cmd)

from server.cli_reports import report  # noqa: E402

main.add_command(report)

from server.cli_transfer import export_group, import_group  # noqa: E402

main.add_command(import_group)
main.add_command(export_group)

from server.cli_analytics import analytics  # noqa: E402

main.add_command(analytics)
