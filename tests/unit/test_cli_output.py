"""What the command line prints is data, never console markup."""

from jobs import cli


def test_bracketed_text_such_as_a_stored_hint_is_printed_literally():
    with cli.console.capture() as captured:
        cli.console.print('no column for amount; name the headers, e.g. [orders] customer_id = "Customer" [bold]')
    assert '[orders] customer_id = "Customer" [bold]' in captured.get()
