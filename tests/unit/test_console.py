"""How the command writes durations: rounded down, so a token never shows more life than it has
(the same figure as the status page)."""

import datetime as dt

from qbo_sync.console import duration


def test_durations_are_rounded_down_in_each_unit():
    days = dt.timedelta(days=100, hours=23, minutes=50)
    assert duration(days) == "100 days"
    assert duration(dt.timedelta(minutes=59, seconds=58)) == "59 min"
    assert duration(dt.timedelta(hours=47, minutes=59)) == "47 h"
    assert duration(dt.timedelta(seconds=119.9)) == "119 s"
    assert duration(-dt.timedelta(days=3, hours=20)) == "-3 days"


def test_a_piped_table_keeps_its_columns_without_trailing_spaces():
    import io

    from qbo_sync.console import make_console, show_table

    out = io.StringIO()
    show_table(
        make_console(out), "Jobs", ["entity", "status"], [["customers", "ok"], ["items", ""]]
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "Jobs" and all(line == line.rstrip() for line in lines)
    assert lines[1].split() == ["entity", "status"] and lines[2].split() == ["customers", "ok"]
    assert lines[2].index("ok") == lines[1].index("status")  # still aligned
