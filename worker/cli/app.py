"""The Typer application and its command groups; the commands register themselves on
import (`worker.cli` imports them all)."""

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="dunning: payment reminders by email, SMS and voice, within the rules.")
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
