"""The shipped sample CSV is exactly what the project's generator makes."""

from segmentation.sample import packaged_sample, write_sample


def test_packaged_sample_is_reproduced_by_the_generator(tmp_path):
    made = write_sample(tmp_path / "sample.csv", rows=300, seed=7)
    assert made.read_bytes() == packaged_sample().read_bytes()


def test_generator_writes_the_requested_number_of_customers_with_unique_ids(tmp_path):
    lines = write_sample(tmp_path / "s.csv", rows=1234, seed=1).read_text().splitlines()
    assert len(lines) == 1235
    ids = [line.split(",")[0] for line in lines[1:]]
    assert len(set(ids)) == 1234
