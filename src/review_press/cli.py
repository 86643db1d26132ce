"""The `review-press` command: parses arguments, shows progress, maps errors to exit codes.

No logic lives here: every command is a few lines over a function of the Python API.
A `PressError` prints as `path:line: message (hint)` on stderr and exits 1, without a traceback.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from . import __version__
from .errors import PressError

app = typer.Typer(
    help="Publish Markdown posts as a static site, RSS/Atom/JSON feeds and an email newsletter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SiteOption = Annotated[Path, typer.Option("--site", "-s", help="The site folder (holds press.toml).", file_okay=False)]
DraftsOption = Annotated[bool, typer.Option("--drafts", help="Include posts marked draft: true.")]
FutureOption = Annotated[bool, typer.Option("--future", help="Include posts dated in the future.")]

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> None:
    """Print an error on stderr (never a traceback) and exit 1."""
    typer.echo(message, err=True)
    raise typer.Exit(1)


def reports_errors(fn: F) -> F:
    """Turn `PressError`s into `path:line: message (hint)` lines and exit code 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PressError as exc:
            errors = getattr(exc, "errors", (exc,))
            fail("\n".join(f"error: {e}" for e in errors) + (f"\n{len(errors)} problems found" if len(errors) > 1 else ""))

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"review-press {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """review-press: write Markdown in posts/, run one command, publish to web, feeds and inboxes."""


@app.command()
@reports_errors
def build(site: SiteOption = Path("."), drafts: DraftsOption = False, future: FutureOption = False) -> None:
    """Build the site into out/ (only changed files are written)."""
    from .build import BuildOptions
    from .build import build as run_build

    plan, report = run_build(site, BuildOptions(drafts=drafts, future=future))
    typer.echo(
        f"built {len(plan.site.posts)} posts into {plan.config.out_dir}: "
        f"{len(report.written)} written, {report.unchanged} unchanged, {len(report.removed)} removed"
    )


@app.command()
@reports_errors
def check(site: SiteOption = Path("."), drafts: DraftsOption = False, future: FutureOption = False) -> None:
    """Run every validation (config, posts, templates, feeds, email lint) without writing out/."""
    from .build import BuildOptions
    from .build import check as run_check

    plan = run_check(site, BuildOptions(drafts=drafts, future=future))
    typer.echo(f"ok: {len(plan.site.posts)} posts, {len(plan.artifacts)} files would be written")


@app.command()
@reports_errors
def new(
    title: Annotated[str, typer.Argument(help="The post's title.")],
    site: SiteOption = Path("."),
    draft: Annotated[bool, typer.Option("--draft", help="Mark the post as a draft.")] = False,
) -> None:
    """Make posts/<date>-<slug>.md with front matter, ready to write in."""
    from .scaffold import new_post

    path = new_post(site, title, now=dt.datetime.now(dt.UTC), draft=draft)
    typer.echo(f"created {path}")


@app.command()
@reports_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Where to make the new site.", file_okay=False)],
    with_templates: Annotated[bool, typer.Option("--with-templates", help="Copy the default theme into DIR/templates to edit it.")] = False,
) -> None:
    """Make a new site: press.toml and posts/ with one example post."""
    from .scaffold import init_site

    path = init_site(directory, today=dt.date.today(), with_templates=with_templates)
    typer.echo(f"created a site in {path}; next: cd {path} && review-press build")


# --- commands of the email edition, publishing and the web endpoints go below ---------


@app.command()
@reports_errors
def preview(
    slug: Annotated[str, typer.Argument(help="The post's slug (any post: newsletter post, draft or future post).")],
    site: SiteOption = Path("."),
    open_: Annotated[bool, typer.Option("--open", help="Open the email's HTML in the browser.")] = False,
) -> None:
    """Render a post's email edition into out/email/<slug>/ and print where the files are."""
    import webbrowser

    from .edition.plan import preview as render_preview

    result = render_preview(site, slug)
    for path in result.paths:
        typer.echo(str(path))
    for problem in result.problems:
        typer.echo(f"warning: {problem}", err=True)
    if open_:
        webbrowser.open(result.html.resolve().as_uri())


@app.command()
@reports_errors
def serve(
    site: SiteOption = Path("."),
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="The port to listen on.")] = 8000,
    drafts: DraftsOption = False,
    future: FutureOption = False,
    open_: Annotated[bool, typer.Option("--open", help="Open the site in the browser.")] = False,
) -> None:
    """Serve out/ on localhost with live reload: rebuilt on changes in posts/, templates/ and press.toml."""
    from .serve import serve as run_serve

    run_serve(site, host=host, port=port, drafts=drafts, future=future, open_browser=open_, echo=typer.echo)


@app.command()
@reports_errors
def web(
    site: SiteOption = Path("."),
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
    forwarded_allow_ips: Annotated[
        str, typer.Option("--forwarded-allow-ips", help="Reverse proxies whose X-Forwarded-For is believed (comma-separated).")
    ] = "127.0.0.1",
) -> None:
    """Run the subscribe, confirm and one-click unsubscribe endpoints (uvicorn) until Ctrl-C."""
    from .web import run

    run(site, host, port, workers=workers, forwarded_allow_ips=forwarded_allow_ips)


# --- subscribers, publish, status (issue 4) -----------------------------------------------

subscribers_app = typer.Typer(help="Manage the subscriber list (kept in .review-press/press.db).", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")
StatusOption = Annotated[list[str] | None, typer.Option("--status", help="Only subscribers with this status (repeatable).")]


def _store(site: Path) -> Any:
    from .config import load_config
    from .store import Store

    return Store.for_site(load_config(site))


@subscribers_app.command("import")
@reports_errors
def subscribers_import(
    csv_file: Annotated[
        Path, typer.Argument(help="CSV with a header row naming an 'email' column (and optionally 'name').", dir_okay=False)
    ],
    site: SiteOption = Path("."),
    strict: Annotated[bool, typer.Option("--strict", help="Import nothing if any row is bad.")] = False,
) -> None:
    """Import subscribers in one transaction: bad rows are reported by line, duplicates skipped."""
    with _store(site) as store:
        report = store.import_csv(csv_file, strict=strict)
    for problem in report.problems:
        typer.echo(f"{csv_file}:{problem.line}: {problem.reason}", err=True)
    typer.echo(f"imported {report.added}; skipped {report.duplicates} duplicates and {len(report.problems)} bad rows")


@subscribers_app.command("add")
@reports_errors
def subscribers_add(
    address: Annotated[str, typer.Argument(help="The email address.")],
    name: Annotated[str, typer.Option("--name", help="The subscriber's name.")] = "",
    site: SiteOption = Path("."),
) -> None:
    """Add one subscriber, active (you vouch for their consent)."""
    with _store(site) as store:
        sub = store.add(address, name)
    typer.echo(f"added {sub.address}")


@subscribers_app.command("list")
@reports_errors
def subscribers_list(site: SiteOption = Path("."), status: StatusOption = None) -> None:
    """Print one subscriber a line: address, name, status (tab-separated)."""
    with _store(site) as store:
        for s in store.iter_subscribers(status or ()):
            typer.echo(f"{s.address}\t{s.name}\t{s.status}")


@subscribers_app.command("count")
@reports_errors
def subscribers_count(site: SiteOption = Path(".")) -> None:
    """How many subscribers have each status."""
    with _store(site) as store:
        counts = store.count()
    typer.echo("  ".join(f"{k} {v}" for k, v in counts.items()) + f"  total {sum(counts.values())}")


@subscribers_app.command("remove")
@reports_errors
def subscribers_remove(address: Annotated[str, typer.Argument(help="The address to erase.")], site: SiteOption = Path(".")) -> None:
    """Erase a subscriber and their delivery records."""
    with _store(site) as store:
        removed = store.remove(address)
    if not removed:
        fail(f"error: {address} is not on the list")
    typer.echo(f"removed {address}")


@subscribers_app.command("export")
@reports_errors
def subscribers_export(
    output: Annotated[Path | None, typer.Argument(help="The CSV file to write; standard output if left out.", dir_okay=False)] = None,
    site: SiteOption = Path("."),
) -> None:
    """Write every subscriber as CSV (email, name, status, consent, dates)."""
    with _store(site) as store:
        if output is None:
            count = store.export_csv(sys.stdout)
        else:
            with output.open("w", newline="", encoding="utf-8") as f:
                count = store.export_csv(f)
    typer.echo(f"exported {count} subscribers", err=True)


@app.command()
@reports_errors
def publish(
    slug: Annotated[str | None, typer.Argument(help="Send only this post.")] = None,
    site: SiteOption = Path("."),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List who would get what; send and record nothing.")] = False,
    test_to: Annotated[str | None, typer.Option("--test-to", help="Send the post to this one address; the ledger is untouched.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Give failed (not bounced) messages another go.")] = False,
) -> None:
    """Build, then email every newsletter post to everyone due it, exactly once (resumes after a crash)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .build import build as run_build
    from .publish import PublishOptions, send_test
    from .publish import dry_run as plan_sends
    from .publish import publish as run_publish

    options = PublishOptions(slug=slug, retry_failed=retry_failed)
    if dry_run:
        count = 0
        for planned in plan_sends(site, slug):
            typer.echo(f"{planned.slug}\t{planned.address}\t{planned.name}")
            count += 1
        typer.echo(f"{count} messages would be sent", err=True)
        return
    if test_to:
        typer.echo(f"sent a test to {test_to}: {send_test(site, test_to, options)}")
        return
    run_build(site)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed  {task.fields[rate]:.0f}/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:  # results go to stdout, the bar to stderr
        tasks: dict[str, Any] = {}

        def show(p: Any) -> None:
            if p.slug not in tasks:
                tasks[p.slug] = bar.add_task(p.slug, total=p.total, failed=0, rate=0.0)
            bar.update(tasks[p.slug], completed=p.done, failed=p.failed + p.bounced, rate=p.rate)

        report = run_publish(site, options, progress=show)
    if report.resumed:
        typer.echo(f"resumed {report.resumed} messages left in flight by an interrupted run")
    for p in report.posts:
        typer.echo(f"{p.slug}: {p.sent} sent, {p.failed} failed, {p.bounced} bounced, {p.skipped} skipped in {p.seconds:.1f} s")
    if not report.posts:
        typer.echo("nothing to send: every newsletter post has gone to everyone due it")
    if report.interrupted:
        typer.echo("stopped by Ctrl-C after the messages in flight; run publish again to send the rest", err=True)
        raise typer.Exit(130)


@app.command()
@reports_errors
def status(site: SiteOption = Path(".")) -> None:
    """Per post: sent / pending / failed / bounced / skipped."""
    from .publish import publish_status

    rows = publish_status(site)
    if not rows:
        typer.echo("nothing published yet")
    for s in rows:
        typer.echo(
            f"{s.slug}: {s.sent} sent, {s.pending + s.sending} pending, {s.failed} failed, {s.bounced} bounced, {s.skipped} skipped (started {s.started_at})"
        )


def main() -> None:
    """The console script's entry point."""
    app(prog_name="review-press")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
