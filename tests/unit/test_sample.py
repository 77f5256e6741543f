"""The shipped sample CSV is exactly what the project's generator makes."""

import pytest

from segmentation.sample import packaged_sample, write_sample


def test_packaged_sample_is_reproduced_by_the_generator(tmp_path):
    made = write_sample(tmp_path / "sample.csv", rows=300, seed=7)
    assert made.read_bytes() == packaged_sample().read_bytes()


def test_generator_writes_the_requested_number_of_customers_with_unique_ids(tmp_path):
    lines = write_sample(tmp_path / "s.csv", rows=1234, seed=1).read_text().splitlines()
    assert len(lines) == 1235
    ids = [line.split(",")[0] for line in lines[1:]]
    assert len(set(ids)) == 1234


@pytest.mark.slow  # writes and reads back a large order log
def test_order_generator_writes_the_requested_lines_reproducibly_with_refunds(tmp_path):
    from segmentation.sample import ORDER_HEADER, write_order_sample

    first = write_order_sample(tmp_path / "a.csv", rows=5000, seed=3).read_text()
    assert first == write_order_sample(tmp_path / "b.csv", rows=5000, seed=3).read_text()
    lines = first.splitlines()
    assert lines[0] + "\n" == ORDER_HEADER and len(lines) == 5001
    amounts = [float(line.rsplit(",", 1)[1]) for line in lines[1:]]
    assert any(amount < 0 for amount in amounts) and sum(amount < 0 for amount in amounts) < 0.05 * len(amounts)
    assert len({line.split(",")[0] for line in lines[1:]}) == 5000  # order ids are unique
