"""The `review-press` command: parses arguments, shows progress, maps errors to exit codes.

No logic lives here: every command is a few lines over a function of the Python API.
A `PressError` prints as `path:line: message (hint)` on stderr and exits 1, without a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from . import __version__
from .errors import DeliveryError, PressError


def _plain_flags(params: list[Any]) -> list[Any]:
    """On/off options (our flags, --help, --install-completion) shown without a `<bool>` metavar.
    (Duck-typed: Typer builds its options from its own copy of click.)"""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class PlainCommand(TyperCommand):
    """A command whose flags take no metavar in --help."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


class PlainGroup(TyperGroup):
    """A group whose flags take no metavar in --help."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


app = typer.Typer(
    help="Publish Markdown posts as a static site, RSS/Atom/JSON feeds and an email newsletter.",
    cls=PlainGroup,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _site_option(ctx: typer.Context, param: typer.CallbackParam, value: Path) -> Path:
    """Which site a command runs on: its own --site if given; else the global one
    (`review-press --site DIR build`); else the first folder holding press.toml from the
    working directory up (as git finds its root), or exit 1 naming where the search began."""
    from .config import find_site

    source = ctx.get_parameter_source(param.name or "site")  # by name: Typer carries its own copy of click
    if ctx.resilient_parsing or getattr(source, "name", "DEFAULT") != "DEFAULT":
        return value
    given = ctx.find_root().params.get("site")
    if given is not None:
        return given
    try:
        return find_site()
    except PressError as exc:
        fail(f"error: {exc}")
        raise  # unreachable: fail exits


SiteOption = Annotated[
    Path,
    typer.Option(
        "--site",
        "-s",
        help="The site folder (holds press.toml); default: the global --site, else found from the working directory up.",
        file_okay=False,
        show_default=False,
        callback=_site_option,
    ),
]
DraftsOption = Annotated[bool, typer.Option("--drafts", help="Include posts marked draft: true.")]
FutureOption = Annotated[bool, typer.Option("--future", help="Include posts dated in the future.")]

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> None:
    """Print an error on stderr (never a traceback) and exit 1."""
    typer.echo(message, err=True)
    raise typer.Exit(1)


def severity(error: PressError) -> str:
    """How a problem is labelled: `warning` for one that stops nothing by itself (an email-lint
    warning, such as an http: link), else `error`."""
    return getattr(error, "severity", "error")


def reports_errors(fn: F) -> F:
    """Turn `PressError`s into `error: path:line: message (hint)` lines (`warning:` for a
    warning raised by a strict command) and exit code 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PressError as exc:
            errors = getattr(exc, "errors", (exc,))
            fail("\n".join(f"{severity(e)}: {e}" for e in errors) + (f"\n{len(errors)} problems found" if len(errors) > 1 else ""))
        except OSError as exc:  # a safety net: readers and writers raise PressErrors themselves
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"error: {where}{(exc.strerror or exc.__class__.__name__).lower()}")

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"review-press {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    site: Annotated[
        Path | None,
        typer.Option(
            "--site",
            "-s",
            file_okay=False,
            help="The site folder for any command (a command's own --site wins); default: found from here up.",
        ),
    ] = None,
) -> None:
    """review-press: write Markdown in posts/, run one command, publish to web, feeds and inboxes."""


@app.command(cls=PlainCommand)
@reports_errors
def build(
    site: SiteOption = Path("."),
    drafts: DraftsOption = False,
    future: FutureOption = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on any email-lint problem (warnings too): exit 1 and write nothing.")
    ] = False,
) -> None:
    """Build the site into out/ (only changed files are written).

    A newsletter post's email-lint problems are warnings (`path:line`): the site, the feeds and
    the email files are built all the same, and publish refuses only the posts with errors.
    """
    from .build import BuildOptions
    from .build import build as run_build

    plan, report = run_build(site, BuildOptions(drafts=drafts, future=future, strict=strict))
    typer.echo(
        f"built {len(plan.site.posts)} posts into {plan.config.out_dir}: "
        f"{len(report.written)} written, {report.unchanged} unchanged, {len(report.removed)} removed"
    )
    _email_notes(plan)
    _notes(plan)


def _email_notes(plan: Any) -> None:
    """After a build: every email-lint problem as a warning, and the posts publish would refuse."""
    for problem in plan.email_problems:
        typer.echo(f"warning: {problem}", err=True)
    if plan.unmailable:
        typer.echo(
            f"warning: publish will not send {', '.join(plan.unmailable)}: its email breaks a lint rule (above);"
            " `review-press check` fails until it is fixed",
            err=True,
        )


def _notes(plan: Any) -> None:
    """After build and check: posts held back by date, and what in press.toml is still a placeholder."""
    from .config import placeholder_warnings

    for line in scheduled_lines(plan.scheduled):
        typer.echo(line)
    for warning in placeholder_warnings(plan.config):
        typer.echo(f"warning: {warning}", err=True)


@app.command(cls=PlainCommand)
@reports_errors
def check(site: SiteOption = Path("."), drafts: DraftsOption = False, future: FutureOption = False) -> None:
    """Run every validation (config, posts, templates, feeds, email lint) without writing out/.

    Stricter than build: any email-lint problem fails it (exit 1), a warning such as an http:
    link too (labelled `warning:`: publish sends that post all the same).
    """
    from .build import BuildOptions
    from .build import check as run_check
    from .letters import check_welcome

    plan = run_check(site, BuildOptions(drafts=drafts, future=future))
    welcome = check_welcome(plan.config, plan.theme)
    typer.echo(f"ok: {len(plan.site.posts)} posts, {len(plan.artifacts)} files would be written")
    _notes(plan)
    for warning in welcome:
        typer.echo(f"warning: {warning}", err=True)


@app.command(cls=PlainCommand)
@reports_errors
def new(
    title: Annotated[str, typer.Argument(help="The post's title.")],
    site: SiteOption = Path("."),
    draft: Annotated[
        bool,
        typer.Option("--draft/--ready", help="Mark the post as a draft (the default: publish skips it until you remove the line)."),
    ] = True,
) -> None:
    """Make posts/<date>-<slug>.md with front matter (a draft with a stable id), ready to write in."""
    from .scaffold import new_post

    path = new_post(site, title, now=dt.datetime.now(dt.UTC), draft=draft)
    typer.echo(f"created {path}" + (" (a draft: remove the line  draft: true  when it is ready)" if draft else ""))


@app.command(cls=PlainCommand)
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


@app.command(cls=PlainCommand)
@reports_errors
def preview(
    slug: Annotated[str, typer.Argument(help="The post's slug (any post: newsletter post, draft or future post).")],
    site: SiteOption = Path("."),
    open_: Annotated[
        bool,
        typer.Option("--open", help="Open the email's HTML in the browser, its images from out/ (or static/), not the public site."),
    ] = False,
) -> None:
    """Render a post's email edition into out/email/<slug>/ and print where the files are."""
    import webbrowser

    from .preview import preview as render_preview

    result = render_preview(site, slug)
    for path in result.paths:
        typer.echo(str(path))
    for problem in result.problems:
        typer.echo(f"warning: {problem}", err=True)
    if open_:
        from .config import load_config
        from .preview import browser_copy

        webbrowser.open(browser_copy(load_config(site), result.slug, result.html).resolve().as_uri())


@app.command(cls=PlainCommand)
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


@app.command(cls=PlainCommand)
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

subscribers_app = typer.Typer(help="Manage the subscriber list (kept in .review-press/press.db).", cls=PlainGroup, no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")
StatusOption = Annotated[list[str] | None, typer.Option("--status", help="Only subscribers with this status (repeatable).")]


def _store(site: Path) -> Any:
    from .config import load_config
    from .store import open_store

    return open_store(load_config(site))


def _store_and_secret(site: Path) -> tuple[Any, bytes]:
    """The site's store and its secret (which keys the hashes of erased addresses)."""
    _config, store, secret = _site_store(site)
    return store, secret


def _site_store(site: Path) -> tuple[Any, Any, bytes]:
    """The site's config, its store and its secret (which keys the hashes of erased addresses)."""
    from .config import load_config
    from .store import open_store
    from .tokens import site_secret

    config = load_config(site)
    secret = site_secret(config)
    return config, open_store(config), secret


def _topics(asked: list[str], offered: tuple[str, ...]) -> tuple[str, ...]:
    """The `--topic`s asked for, in the spelling of press.toml's `[newsletter] topics` (matched
    without regard to case); an unknown one is an error naming it (exit 1)."""
    spelling = {t.casefold(): t for t in offered}
    chosen: list[str] = []
    for name in asked:
        topic = spelling.get(name.strip().casefold())
        if topic is None:
            known = ", ".join(offered) if offered else "none: [newsletter] topics in press.toml lists no topics"
            fail(f"error: unknown topic {name!r} (the site's topics: {known})")
        elif topic not in chosen:
            chosen.append(topic)
    return tuple(chosen)


@subscribers_app.command("import", cls=PlainCommand)
@reports_errors
def subscribers_import(
    csv_file: Annotated[
        Path,
        typer.Argument(
            help="An export of Substack, Mailchimp, Ghost, listmonk, Buttondown or review-press (found from its header row),"
            " or any CSV with an 'email' column.",
            dir_okay=False,
        ),
    ],
    site: SiteOption = Path("."),
    strict: Annotated[bool, typer.Option("--strict", help="Import nothing if any row is bad.")] = False,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Read the file as this format: review-press, substack, mailchimp, ghost, listmonk, buttondown, csv."),
    ] = None,
    email_column: Annotated[str | None, typer.Option("--email-column", help="The column holding the address (a plain CSV).")] = None,
    name_column: Annotated[str | None, typer.Option("--name-column", help="The column holding the name (a plain CSV).")] = None,
    status_column: Annotated[
        str | None, typer.Option("--status-column", help="The column holding a status word, read by the README's table (a plain CSV).")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Give every row this status, e.g. unsubscribed for a file of readers who left; never one more mailable than the file says.",
        ),
    ] = None,
) -> None:
    """Import readers in one transaction, each with the status the file gives them.

    Readers who left, bounced or complained come in suppressed and are never mailed; unconfirmed
    ones come in pending. A reader already on the list keeps their status unless the file says
    they left (suppression wins). Addresses erased by `forget` are not re-added. Bad rows are
    reported by line and skipped (the command then exits 1); with --strict nothing is imported.
    A second header row (files concatenated) imports nothing: import each file on its own.
    """
    from .importers import ImportOptions, import_file

    config, store, secret = _site_store(site)
    options = ImportOptions(fmt, email_column, name_column, status_column, status, strict=strict, topics=config.newsletter.topics)
    with store:
        report = import_file(store, csv_file, options, secret=secret)
    for problem in report.problems:
        typer.echo(f"{csv_file}:{problem.line}: {problem.reason}", err=True)
    if report.bad_rows > len(report.problems):
        typer.echo(f"{csv_file}: ... and {report.bad_rows - len(report.problems)} more bad rows", err=True)
    for refused in report.refused:
        typer.echo(f"{csv_file}:{refused.line}: {refused.address} was erased at the reader's request: forgotten, not re-added", err=True)
    statuses = (("active", report.active), ("pending", report.pending), ("unsubscribed", report.unsubscribed))
    statuses += (("bounced", report.bounced), ("complained", report.complained))
    typer.echo(f"{csv_file}: {report.format}")
    typer.echo(f"new readers: {report.added}" + "".join(f", {n} {s}" for s, n in statuses if n))
    typer.echo(f"readers already on the list, now suppressed: {report.suppressed}")
    typer.echo(f"already on the list, unchanged: {report.already}")
    typer.echo(f"forgotten, not re-added: {report.forgotten}")
    typer.echo(f"bad rows: {report.bad_rows}")
    if report.ignored_labels:
        shown = ", ".join(repr(label) for label in report.ignored_labels[:20])
        more = f" and {len(report.ignored_labels) - 20} more" if len(report.ignored_labels) > 20 else ""
        typer.echo(f"labels that are not topics of this site, ignored: {shown}{more}")
    if report.bad_rows:
        fail(f"error: {report.bad_rows} bad rows skipped; the other rows are imported (fix those rows and import the file again)")


@subscribers_app.command("add", cls=PlainCommand)
@reports_errors
def subscribers_add(
    address: Annotated[str, typer.Argument(help="The email address.")],
    name: Annotated[str, typer.Option("--name", help="The subscriber's name.")] = "",
    force: Annotated[
        bool,
        typer.Option("--force", help="Add an address erased by forget: only with the reader's new consent (clears the record)."),
    ] = False,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", help="A topic of [newsletter] topics they get (repeat for more; none: every post)."),
    ] = None,
    weekly: Annotated[bool, typer.Option("--weekly", help="A weekly digest instead of an email for each post.")] = False,
    welcome: Annotated[bool, typer.Option("--welcome", help="Send them the welcome email (at the next publish).")] = False,
    site: SiteOption = Path("."),
) -> None:
    """Add one subscriber, active (you vouch for their consent); an address erased by forget is refused."""
    config, store, secret = _site_store(site)
    with store:
        topics = _topics(topic or [], config.newsletter.topics)
        sub = store.add(
            address,
            name,
            secret=secret,
            forgotten="clear" if force else "refuse",
            topics=topics,
            frequency="weekly" if weekly else "each",
            welcome=welcome,
        )
    chose = (f" (topics: {', '.join(sub.topics)})" if sub.topics else "") + (" (weekly digest)" if sub.frequency == "weekly" else "")
    typer.echo(f"added {sub.address}{chose}" + ("; the welcome email is queued" if welcome else ""))


@subscribers_app.command("list", cls=PlainCommand)
@reports_errors
def subscribers_list(site: SiteOption = Path("."), status: StatusOption = None) -> None:
    """Print one subscriber a line: address, name, status, since when, why, how often (each post
    or weekly) and their topics (comma-separated; none: every post), tab-separated."""
    with _store(site) as store:
        for s in store.iter_subscribers(status or ()):
            topics = ", ".join(s.topics)
            typer.echo(f"{s.address}\t{s.name}\t{s.status}\t{s.status_at or ''}\t{s.status_reason}\t{s.frequency}\t{topics}")


@subscribers_app.command("count", cls=PlainCommand)
@reports_errors
def subscribers_count(site: SiteOption = Path(".")) -> None:
    """How many subscribers have each status."""
    with _store(site) as store:
        counts = store.count()
    typer.echo("  ".join(f"{k} {v}" for k, v in counts.items()) + f"  total {sum(counts.values())}")


@subscribers_app.command("unsubscribe", cls=PlainCommand)
@reports_errors
def subscribers_unsubscribe(
    addresses: Annotated[list[str], typer.Argument(help="The addresses to unsubscribe.")], site: SiteOption = Path(".")
) -> None:
    """Mark readers unsubscribed: kept on the list, never mailed again, never re-activated by an
    import; their messages not sent yet are skipped. An address not on the list is reported (exit 1)."""
    from .store import parse_address

    missing = 0
    with _store(site) as store:
        for address in addresses:
            try:
                parse_address(address)
            except ValueError as exc:
                typer.echo(f"error: {address!r}: {exc}", err=True)
                missing += 1
                continue
            sub = store.find(address)
            if sub is None:
                typer.echo(f"error: {address} is not on the list", err=True)
                missing += 1
            elif store.unsubscribe(sub.id):
                typer.echo(f"unsubscribed {sub.address}")
            else:
                typer.echo(f"{sub.address} was already {sub.status}")
    if missing:
        raise typer.Exit(1)


@subscribers_app.command("forget", cls=PlainCommand)
@reports_errors
def subscribers_forget(
    addresses: Annotated[list[str], typer.Argument(help="The addresses to erase.")], site: SiteOption = Path(".")
) -> None:
    """Erase readers at their request (GDPR): their data and delivery records are deleted, and only
    a keyed hash of each address is kept, so that an import or add of it later is refused and
    reported. An address not on the list is reported (exit 1)."""
    from .store import Forget

    missing = 0
    store, secret = _store_and_secret(site)
    with store:
        for address in addresses:
            try:
                outcome = store.forget(address, secret)
            except DeliveryError as exc:
                typer.echo(f"error: {exc}", err=True)
                missing += 1
                continue
            if outcome is Forget.ERASED:
                typer.echo(f"forgot {address.strip()}: erased, and kept from coming back")
            elif outcome is Forget.ALREADY:
                typer.echo(f"{address.strip()} was already forgotten")
            else:
                typer.echo(f"error: {address} is not on the list", err=True)
                missing += 1
    if missing:
        raise typer.Exit(1)


subscribers_app.command(
    "remove",
    cls=PlainCommand,
    help="Alias of forget: erase readers at their request, keeping only a keyed hash of each address"
    " so that it is not re-added. An address not on the list is reported (exit 1).",
)(subscribers_forget)


@subscribers_app.command("export", cls=PlainCommand)
@reports_errors
def subscribers_export(
    output: Annotated[Path | None, typer.Argument(help="The CSV file to write; standard output if left out.", dir_okay=False)] = None,
    site: SiteOption = Path("."),
) -> None:
    """Write every subscriber as CSV (email, name, status, consent, dates).

    A FILE is written whole or not at all (a temporary file beside it, then a rename), readable
    by its owner only (0600): it holds every address and consent IP.
    """
    with _store(site) as store:
        count = store.export_csv(sys.stdout) if output is None else store.export_csv_file(output)
    typer.echo(f"exported {count} subscribers", err=True)


@app.command(cls=PlainCommand)
@reports_errors
def publish(
    slug: Annotated[str | None, typer.Argument(help="Send only this post.")] = None,
    site: SiteOption = Path("."),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List who would get what; send and record nothing.")] = False,
    test_to: Annotated[str | None, typer.Option("--test-to", help="Send the post to this one address; the ledger is untouched.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Give failed (not bounced) messages another go.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Go on with campaigns the guard rails paused (too many complaints or bounces).")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, help="Send with this many processes, each with [smtp] concurrency connections (README: Scaling out)."
        ),
    ] = 1,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", help="Keep running: publish each post when its date comes, until SIGTERM (README: Publishing as a service)."
        ),
    ] = False,
    poll: Annotated[float, typer.Option("--poll", min=0.1, metavar="SECONDS", help="With --follow: look for new posts this often.")] = 60.0,
    correction: Annotated[
        str | None,
        typer.Option(
            "--correction",
            metavar="NOTE",
            help='With SLUG: send the edited post, once, to everyone who got it, subject "Correction: ...", NOTE above its text.',
        ),
    ] = None,
) -> None:
    """Build, then email every newsletter post to everyone due it, exactly once (resumes after a crash).

    A post whose email breaks a lint rule is refused (named with the rule, at its file:line) and
    the others are sent; an http: link is a warning, never a refusal. Exits 0 when done (deferred
    messages are retried by the next run), 1 when a message failed permanently, a post was refused
    or the server refused everything, 130 after Ctrl-C and 143 after SIGTERM (both stop after the
    messages in flight; run it again to send the rest).
    """
    from .build import build as run_build
    from .identity import Refusal
    from .publish import PublishOptions, SendingStopped, send_test
    from .publish import dry_run as plan_sends
    from .publish import publish as run_publish

    options = PublishOptions(slug=slug, retry_failed=retry_failed, resume=resume, workers=workers, correction=correction)
    if correction is not None and (slug is None or dry_run or test_to or follow):
        raise DeliveryError(
            "--correction needs the slug of the post it corrects, and goes with no --dry-run, --test-to or --follow",
            hint='review-press publish SLUG --correction "what changed"',
        )
    if dry_run:
        count, refused = 0, []
        for planned in plan_sends(site, slug):
            if isinstance(planned, Refusal):
                refused.append(planned)
                continue
            typer.echo(f"{planned.slug}\t{planned.address}\t{planned.name}")
            count += 1
        typer.echo(f"{count} messages would be sent", err=True)
        _refusals(refused)
        return
    if test_to:
        typer.echo(f"sent a test to {test_to}: {send_test(site, test_to, options)}")
        return
    if follow:
        from .follow import follow as follow_posts

        signum = follow_posts(site, options, poll_seconds=poll, on_round=_report_round)
        typer.echo(f"stopped by {'Ctrl-C' if signum == 2 else 'SIGTERM'}", err=True)
        raise typer.Exit(128 + signum)
    plan, _ = run_build(site)
    _notes(plan)  # not the build's email verdicts: the run reports its own, for the posts it sends or refuses
    stopped: SendingStopped | None = None
    with _sending_bar() as show:
        try:
            report = run_publish(site, options, progress=show)
        except SendingStopped as exc:  # the breaker: say what was done, then the error (exit 1)
            if exc.report is None:
                raise
            stopped, report = exc, exc.report
    _report_sending(report, stopped, again="review-press publish")


@contextlib.contextmanager
def _sending_bar() -> Iterator[Callable[[Any], None]]:
    """A progress bar per campaign on stderr (results go to stdout) while `publish` or `worker`
    sends; yields the progress callback that moves it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed  {task.fields[deferred]} deferred  {task.fields[rate]:.0f}/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def show(p: Any) -> None:
            if p.slug not in tasks:
                tasks[p.slug] = bar.add_task(p.slug, total=p.total, failed=0, deferred=0, rate=0.0)
            bar.update(tasks[p.slug], completed=p.done, failed=p.failed + p.bounced, deferred=p.deferred, rate=p.rate)

        yield show


@app.command(cls=PlainCommand)
@reports_errors
def worker(
    site: SiteOption = Path("."),
    follow: Annotated[bool, typer.Option("--follow", help="Keep running: join each new campaign as a publish starts it.")] = False,
) -> None:
    """Join the campaigns in progress as one more sender (PostgreSQL; on this host or any other).

    Never starts a campaign: a `publish` does. Exits when no message is left pending or in flight
    (or, with --follow, waits for new ones until SIGTERM/Ctrl-C), with publish's exit codes.
    """
    from .publish import PublishOptions, SendingStopped, join

    stopped: SendingStopped | None = None
    with _sending_bar() as show:
        try:
            report = join(site, PublishOptions(follow=follow), progress=show)
        except SendingStopped as exc:
            if exc.report is None:
                raise
            stopped, report = exc, exc.report
    _report_sending(report, stopped, again="review-press worker")


store_app = typer.Typer(help="The subscriber store: SQLite (default) or PostgreSQL (\\[store] url).", cls=PlainGroup, no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("upgrade", cls=PlainCommand)
@reports_errors
def store_upgrade(site: SiteOption = Path(".")) -> None:
    """Create the store's tables, or bring them to this version's schema (stop every sender first)."""
    from .config import load_config
    from .store import upgrade

    where, before, after = upgrade(load_config(site))
    if before == after:
        typer.echo(f"{where}: schema version {after}, up to date")
    else:
        typer.echo(f"{where}: schema version {before or 'none'} -> {after}")


@store_app.command("migrate", cls=PlainCommand)
@reports_errors
def store_migrate(
    to: Annotated[str, typer.Option("--to", metavar="URL", help="An empty PostgreSQL database: postgresql://user@host:5432/press")],
    site: SiteOption = Path("."),
) -> None:
    """Copy the SQLite store (subscribers, consent, suppression, campaigns, ledger) into PostgreSQL.

    Refuses a database that already holds subscribers or campaigns; counts every table on both
    sides. Then set \\[store] url (or REVIEW_PRESS_DATABASE_URL) to use it. The password comes from
    PGPASSWORD or ~/.pgpass, never from the URL you type here.
    """
    from .config import load_config
    from .store import migrate
    from .store.postgres import safe_url, without_password

    counts = migrate(load_config(site), to)
    for table, n in counts.items():
        typer.echo(f"{table}: {n}")
    typer.echo(f'copied into {safe_url(to)}; now set [store] url = "{without_password(to)}" in press.toml')


def _report_sending(report: Any, stopped: Any, again: str) -> None:
    """Print what a publish or worker run did, then exit with its code: 1 for a permanent failure,
    a refused post or a tripped breaker; 128 + the signal after SIGINT/SIGTERM."""
    import signal

    if lost := sum(p.lost for p in report.posts):
        typer.echo(
            f"{lost} results not recorded: another sender had taken those messages over (this one was paused past its lease)", err=True
        )
    if report.resumed:
        typer.echo(f"resumed {report.resumed} messages left in flight by an interrupted run")
    if report.retried:
        typer.echo(f"retried {report.retried} messages deferred by an earlier run")
    for p in report.posts:
        typer.echo(_post_line(p))
    if not report.posts and stopped is None and not report.interrupted and not report.refused:
        typer.echo("nothing to send: every newsletter post has gone to everyone due it")
    if report.failed:
        example = next(p.failure for p in report.posts if p.failed)
        typer.echo(
            f"{report.failed} failed permanently ({example[:80]}): see `review-press status`;"
            " `review-press publish --retry-failed` tries them again",
            err=True,
        )
    if report.deferred:
        typer.echo(f"{report.deferred} deferred (temporary failures): run `review-press publish` again to retry them", err=True)
    paused = [p for p in report.posts if p.paused]
    for p in paused:
        typer.echo(
            f"paused {p.slug}: {p.paused}. The rest waits: look at `review-press status` and the reports"
            f" (README: Bounces and complaints), then `{_resume_command(p.slug)}` goes on",
            err=True,
        )
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    _refusals(report.refused, exit_now=False)
    if stopped is not None:
        raise stopped
    if report.interrupted:
        signum = report.signum or signal.SIGINT
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        typer.echo(f"stopped by {name} after the messages in flight; run `{again}` again to send the rest", err=True)
        raise typer.Exit(128 + signum)
    if report.failed or report.refused or paused:
        raise typer.Exit(1)


def _post_line(p: Any) -> str:
    """One post's line of a publish report."""
    return (
        f"{p.slug}: {p.sent} sent, {p.failed} failed, {p.bounced} bounced, {p.deferred} deferred, {p.skipped} skipped in {p.seconds:.1f} s"
    )


def _report_round(done: Any) -> None:
    """What one round of `publish --follow` did, and when the next one is (nothing exits)."""
    stamp = _when(dt.datetime.now(dt.UTC))
    if done.report is not None:
        for p in done.report.posts:
            typer.echo(f"{stamp} {_post_line(p)}")
            if p.paused:
                typer.echo(f"{stamp} paused {p.slug}: {p.paused} ({_resume_command(p.slug)} goes on)", err=True)
        _refusals(done.report.refused, exit_now=False)
    if done.error is not None:
        for line in str(done.error).splitlines():
            typer.echo(f"{stamp} error: {line}", err=True)
    typer.echo(f"{stamp} next round at {_when(done.next_at)}", err=True)


def _refusals(refused: Any, exit_now: bool = True) -> None:
    """Print the posts publish will not send, because their identity is in doubt or their email
    breaks a lint rule (each problem at its own line), and exit 1 if `exit_now`."""
    for r in refused:
        for problem in getattr(r, "problems", ()):
            typer.echo(f"error: {problem.where()}: not sent: {problem.message} ({problem.hint})", err=True)
        if not getattr(r, "problems", ()):
            typer.echo(f"error: {r.post.source}:{r.post.line_of('id')}: not sent: {r.message} ({r.hint})", err=True)
    if refused and exit_now:
        raise typer.Exit(1)


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


bounces_app = typer.Typer(
    help="Bounces and complaints that arrive after sending (see README: Bounces and complaints).", cls=PlainGroup, no_args_is_help=True
)
app.add_typer(bounces_app, name="bounces")


@bounces_app.command("fetch", cls=PlainCommand)
@reports_errors
def bounces_fetch(
    site: SiteOption = Path("."),
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            metavar="SOURCE",
            help="Read this mailbox instead of [bounces] source: maildir:PATH, imaps://user@host/INBOX, pop3s://user@host.",
        ),
    ] = None,
) -> None:
    """Read the bounce mailbox: hard bounces and complaints stop a reader at once, soft bounces
    count; each message is moved (or removed) only after its outcome is recorded. Exits 1 when
    some messages could not be read or attributed (they are kept aside, never lost)."""
    from .bounces.inbox import fetch_bounces

    report = fetch_bounces(site, source)
    c = report.count
    typer.echo(
        f"{report.messages} messages from {report.source}: {c('bounced')} readers bounced, {c('complained')} complained,"
        f" {c('soft')} soft bounces counted, {c('unchanged')} already stopped, {c('duplicate')} read before,"
        f" {c('ignored')} ignored (delays, notices), {c('unknown')} for readers no longer on the list"
    )
    kept = c("unreadable") + c("unmatched")
    if kept:
        typer.echo(
            f"{kept} kept aside: {c('unreadable')} not a bounce or complaint we can read, {c('unmatched')} about no message we sent",
            err=True,
        )
    if c("too_large"):
        typer.echo(f"{c('too_large')} left on the server: over 20 MB, too large to read (POP3 cannot read a part)", err=True)
    if kept or c("too_large"):
        raise typer.Exit(1)


def scheduled_lines(posts: Any) -> list[str]:
    """`N scheduled:` and one line per post dated in the future, for build, check and status."""
    if not posts:
        return []
    return [f"{len(posts)} scheduled:"] + [f"  {p.slug} at {_when(p.date)} ({p.source})" for p in posts]


@app.command(cls=PlainCommand)
@reports_errors
def status(site: SiteOption = Path(".")) -> None:
    """Per post: sent / pending / failed / bounced / skipped; posts not sent yet, scheduled ones, refused ones."""
    from .publish import publish_status

    report = publish_status(site)
    if not report.sent and not report.letters:
        typer.echo("nothing published yet")
    for s in report.sent:
        c = s.ledger
        name = s.post.slug if s.post else c.slug
        notes = [f"started {c.started_at}"]
        if s.post is None:
            notes.append("its post is gone")
        if s.old_slugs:
            notes.append("was " + ", ".join(s.old_slugs))
        if s.edited:
            notes.append("edited after sending")
        if s.paused:
            notes.append(f"PAUSED: {s.paused}; {_resume_command(name)} goes on")
        f = s.feedback
        typer.echo(
            f"{name}: {c.sent} sent, {c.pending + c.sending} pending, {c.deferred} deferred, {c.failed} failed,"
            f" {c.bounced} bounced, {c.skipped} skipped ({'; '.join(notes)})"
        )
        if f is not None and (f.bounced or f.soft or f.complaints):
            typer.echo(
                f"  readers who bounced (in the session or after): {f.bounced} ({f.bounce_rate:.2%}), {f.soft} soft,"
                f" who complained: {f.complaints} ({f.complaint_rate:.2%} of {f.sent} sent)"
            )
    for letter in report.letters:
        m, c = letter.mailing, letter.ledger
        notes = [f"started {c.started_at}"]
        if m.kind == "digest":
            notes.append(f"{len(m.posts)} posts")
        if m.note:
            notes.append(f"note: {m.note}")
        if letter.paused:
            notes.append(f"PAUSED: {letter.paused}; {_resume_command(letter.label)} goes on")
        typer.echo(
            f"{letter.label}: {c.sent} sent, {c.pending + c.sending} pending, {c.deferred} deferred, {c.failed} failed,"
            f" {c.bounced} bounced, {c.skipped} skipped ({'; '.join(notes)})"
        )
    if report.unsent:
        typer.echo(f"{len(report.unsent)} not sent yet (run review-press publish):")
        for p in report.unsent:
            typer.echo(f"  {p.slug} ({p.source}, dated {_when(p.date)})")
    for line in scheduled_lines(report.scheduled):
        typer.echo(line)
    for r in report.refused:
        typer.echo(f"refused: {r.message} ({r.hint})")


def _resume_command(name: str) -> str:
    """The command that lifts the guard rails' pause of a post (by slug) or of a welcome, digest or
    correction (named with a space, which no slug holds: a plain --resume covers them)."""
    return "review-press publish --resume" if " " in name else f"review-press publish {name} --resume"


def main() -> None:
    """The console script's entry point."""
    app(prog_name="review-press")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
