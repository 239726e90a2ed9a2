"""The Typer application and its command groups; the commands register themselves on
import (`worker.cli` imports them all)."""

import typer
from typer import _click  # typer's own click, whose help formatter `_Sections` writes to
from typer.core import TyperGroup

# The commands by what a person is doing, as `git` and `kubectl` group theirs.
SECTIONS = {
    "Jobs": ("validate", "decide", "enqueue", "register", "simulate"),
    "Events from billing and people": ("paid", "writeoff", "dispute", "promise", "optout", "cease", "pause",
                                       "resume"),
    "Running": ("demo", "worker", "serve", "migrate", "forewarn", "escalations", "webhooks"),
    "The log and records": ("log", "records"),
    "Templates and profiles": ("templates", "profiles"),
    "People and keys": ("users", "keys"),
}


class _Sections(TyperGroup):
    """`dunning --help` lists the commands in `SECTIONS`, in that order."""

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        commands = {name: found for name in self.list_commands(ctx)
                    if (found := self.get_command(ctx, name)) is not None and not found.hidden}
        width = formatter.width - 6 - max(len(name) for name in commands)
        placed: set[str] = set()
        for section, names in [*SECTIONS.items(), ("Other", tuple(sorted(commands)))]:
            rows = [(name, commands[name].get_short_help_str(width))
                    for name in names if name in commands and name not in placed]
            placed.update(name for name, _ in rows)
            if rows:
                with formatter.section(section):
                    formatter.write_dl(rows)


app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  cls=_Sections, help="dunning: payment reminders by email, SMS and voice, within the rules.")
profiles_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Policy profiles (TOML).")
app.add_typer(profiles_app, name="profiles")
templates_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Message templates (Jinja2).")
app.add_typer(templates_app, name="templates")
log_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="The contact log.")
app.add_typer(log_app, name="log")
keys_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="API keys for the billing API (/v1).")
app.add_typer(keys_app, name="keys")
webhooks_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Webhooks to the billing system (DUNNING_WEBHOOK_URL).")
app.add_typer(webhooks_app, name="webhooks")
users_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="People of the console (/console).")
app.add_typer(users_app, name="users")
records_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="Records: legal holds, erasure, purge, subject-access exports, the master key.")
app.add_typer(records_app, name="records")
