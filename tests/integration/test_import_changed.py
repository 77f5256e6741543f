"""Re-importing a full export whose lines changed here and there: only the changed lines are read,
and the result is exactly what reading the whole file stores (compared against a second database
where every import reads the whole file)."""

import sqlalchemy as sa

from segmentation.ingest import import_file
from tests.integration.test_import_prefix import both, customers, settings, stored, whole_engine, write  # noqa: F401

HEADER = "CustomerID,Gender,Age,Annual Income (k$),Spending Score (1-100)\n"
LINES = [f"{n},{'Male' if n % 2 else 'Female'},{20 + n % 50},{10 + n},{1 + n % 99}\n" for n in range(1, 201)]
REJECTED = ["201,Male,abc,10,10\n"]  # age is not a number


def export(tmp_path, lines, name):
    return write(tmp_path, HEADER + "".join(lines), name)


def test_changed_added_and_removed_lines_are_read_alone_and_store_what_the_whole_file_stores(
    engine, whole_engine, tmp_path, monkeypatch,
):
    first = export(tmp_path, LINES + REJECTED, "first.csv")
    changed = list(LINES)
    changed[4] = "5,Female,24,15,90\n"  # in place
    changed[9] = "10,Female,30,200,1\n"  # another length
    del changed[50]  # customer 51 left
    changed.insert(120, "5000,Male,40,50,50\n")  # a new customer in the middle
    changed.append("6000,Female,20,20,20\n")  # and one at the end
    changed.insert(150, "7000,Female,abc,1,1\n")  # a new line that is rejected
    second = export(tmp_path, changed + REJECTED, "second.csv")
    results = both(engine, whole_engine, monkeypatch, [customers(first), customers(second)])
    assert results[1].method == "changed lines"
    assert (results[1].rows_inserted, results[1].rows_updated, results[1].rows_deactivated) == (2, 2, 1)
    # the line rejected last time is rejected again, with its line number in the new file
    with engine.connect() as connection:
        lines = connection.execute(sa.text(
            "select line_number from segmentation_internal.import_rejects where batch_id = :b order by 1"),
            {"b": results[1].batch_id}).scalars().all()
    assert lines == [152, len(changed) + 2]


def test_a_second_line_for_a_customer_makes_the_import_read_the_whole_file(engine, whole_engine, tmp_path, monkeypatch):
    first = export(tmp_path, LINES, "first.csv")
    second = export(tmp_path, LINES + ["7,Male,99,99,99\n"], "second.csv")  # customer 7 twice: the later wins
    results = both(engine, whole_engine, monkeypatch, [customers(first), customers(second)])
    assert results[1].method == "merge" and results[1].rows_rejected == 1


def test_without_the_kept_copy_of_the_last_file_the_whole_file_is_read(engine, whole_engine, tmp_path, monkeypatch, data_dir):
    first = export(tmp_path, LINES, "first.csv")
    changed = list(LINES)
    changed[3] = "4,Male,44,44,44\n"
    second = export(tmp_path, changed, "second.csv")
    import_file(engine, first, settings(), 1)
    for kept in data_dir.rglob("customers.json"):
        kept.unlink()  # another machine, a cleaned data folder: nothing to compare with
    result = import_file(engine, second, settings(), 1)
    assert result.method == "merge" and result.rows_updated == 1
    again = import_file(engine, export(tmp_path, LINES, "third.csv"), settings(), 1)
    assert again.method == "changed lines" and again.rows_updated == 1  # the second file was kept


def test_the_same_file_without_a_final_line_end_changes_nothing(engine, whole_engine, tmp_path, monkeypatch):
    path = write(tmp_path, (HEADER + "".join(LINES)).rstrip("\n"), "no_final_newline.csv")
    results = both(engine, whole_engine, monkeypatch, [customers(path), customers(path)])
    assert results[1].method == "changed lines"
    assert (results[1].rows_unchanged, results[1].rows_inserted, results[1].rows_updated) == (200, 0, 0)
