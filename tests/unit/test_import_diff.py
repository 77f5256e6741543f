"""Which lines of a file differ from the last imported file: only byte-equal lines are unchanged."""

import hashlib
import random

import numpy as np
import pytest

from segmentation.ingest import diff

HEADER = "ID,Income,Score\n"


def lines(n=3000, seed=1):
    rng = random.Random(seed)
    return [f"{number},{rng.randint(10, 150)},{rng.randint(1, 99)}\n" for number in range(1, n + 1)]


def compared(tmp_path, old, new, header=HEADER, new_header=None):
    old_path, new_path = tmp_path / "old.csv", tmp_path / "new.csv"
    old_path.write_text(header + "".join(old))
    new_path.write_text((new_header or header) + "".join(new))
    difference = diff.compare(old_path, new_path)
    if difference is not None:  # every line called unchanged equals the old line it is paired with
        pairs = difference.paired()
        for index, paired in enumerate(pairs):
            if paired >= 0:
                assert new[index] == old[paired]
        assert set(difference.new_changed) == {index for index, paired in enumerate(pairs) if paired < 0}
        # what the import reads and what is gone come with their bytes
        assert [line.decode() for line in difference.read_bytes] == [new[index] for index in difference.read]
        assert [line.decode() for line in difference.gone_bytes] == [old[index] for index in difference.gone]
        assert difference.digest.hexdigest() == hashlib.sha256(new_path.read_bytes()).hexdigest()
    return difference


def sets(difference):
    return sorted(difference.new_changed.tolist()), sorted(difference.old_changed.tolist())


def test_the_same_file_has_no_changed_line(tmp_path):
    assert sets(compared(tmp_path, lines(), lines())) == ([], [])


def test_lines_edited_in_place_are_the_changed_ones(tmp_path):
    old = lines()
    new = list(old)
    new[5] = "6,11,12\n"  # the same length
    new[70] = "71,150,99\n" if old[70] != "71,150,99\n" else "71,1,1\n"
    assert sets(compared(tmp_path, old, new)) == ([5, 70], [5, 70])


def test_lines_added_at_the_end_or_removed_or_inserted_in_the_middle(tmp_path):
    old = lines()
    new = old[:100] + ["9001,10,10\n"] + old[100:2000] + old[2001:] + ["9002,20,20\n"]
    difference = compared(tmp_path, old, new)
    assert sets(difference) == ([100, len(new) - 1], [2000])


def test_many_lines_removed_from_the_middle_realign_on_their_signatures(tmp_path):
    old = lines()
    new = old[:10] + old[400:]
    assert sets(compared(tmp_path, old, new)) == ([], list(range(10, 400)))


def test_a_line_repeated_in_the_new_file_is_changed_once_more(tmp_path):
    old = lines()
    new = old + [old[3]]
    assert sets(compared(tmp_path, old, new)) == ([len(old)], [])


@pytest.mark.parametrize("case", ["header", "quoted line break", "cr only", "shuffled", "mostly changed"])
def test_files_that_cannot_be_compared_line_by_line_are_left_to_the_whole_merge(tmp_path, case):
    old = lines()
    new, header = list(old), None
    if case == "header":
        header = "ID,Income,Score,Extra\n"
    elif case == "quoted line break":
        new[10] = '11,"1\n2",3\n'
    elif case == "cr only":
        new = [line.replace("\n", "\r") for line in new]
    elif case == "shuffled":
        random.Random(2).shuffle(new)
    else:
        new = [f"{index},1,1\n" for index in range(1, len(old) + 1)]
    assert compared(tmp_path, old, new, new_header=header) is None


def test_crlf_files_compare_like_lf_ones(tmp_path):
    old = [line.replace("\n", "\r\n") for line in lines()]
    new = list(old)
    new[7] = "8,1,1\r\n"
    assert sets(compared(tmp_path, old, new, header=HEADER.replace("\n", "\r\n"))) == ([7], [7])


def test_lines_sharing_a_signature_are_never_taken_for_each_other(tmp_path):
    # same length, same first and last eight bytes: only the middle differs
    old = [f"{number:08d},{'a' * 5}{number % 7}{'b' * 5},00000000\n" for number in range(1, 2000)]
    new = old[:500] + old[501:]  # one removed: everything after shifts, realigned on signatures
    new[900] = new[900][:14] + ("x" if new[900][14] != "x" else "y") + new[900][15:]
    difference = compared(tmp_path, old, new)
    assert 900 in difference.new_changed.tolist() and 500 in difference.old_changed.tolist()


def test_the_kept_copy_is_used_only_while_it_is_the_last_imported_file(tmp_path):
    source = tmp_path / "export.csv"
    source.write_text(HEADER + "".join(lines(10)))
    kept = diff.Kept(tmp_path / "kept")
    kept.keep(source, 7, "abc")
    assert kept.matching(7, "abc") == kept.file
    assert kept.matching(8, "abc") is None and kept.matching(7, "abd") is None
    kept.file.write_text(kept.file.read_text() + "11,1,1\n")  # touched since: not trusted
    assert kept.matching(7, "abc") is None
    kept.forget()
    assert not kept.file.exists() and kept.matching(7, "abc") is None
    assert np.array_equal(diff._Lines(np.frombuffer(b"a\nb", dtype=np.uint8)).lengths, [2, 1])


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64 bytes: every file is compared over many blocks, lines across their edges."""
    monkeypatch.setattr(diff, "CHUNK_BYTES", 64)


def test_streamed_in_small_blocks_the_changes_are_the_same(tmp_path, small_blocks):
    old = lines(500)
    new = list(old)
    new[0], new[250] = "1,1,1\n", "251,150,99\n" if old[250] != "251,150,99\n" else "251,1,1\n"
    new = new[:-3] + ["9001,10,10\n"]  # three gone at the end, one added
    assert sets(compared(tmp_path, old, new)) == ([0, 250, 497], [0, 250, 497, 498, 499])
    longer = new + ["x" * 300 + "\n"]  # a line longer than a block
    assert sets(compared(tmp_path, old, longer)) == ([0, 250, 497, 498], [0, 250, 497, 498, 499])


def test_lines_rejected_last_time_are_read_again_and_never_gone(tmp_path, small_blocks):
    old = lines(300)
    new = list(old)
    new[10] = "11,1,2\n" if old[10] != "11,1,2\n" else "11,2,1\n"
    (tmp_path / "old.csv").write_text(HEADER + "".join(old))
    (tmp_path / "new.csv").write_text(HEADER + "".join(new[:-1]))  # the last line gone
    difference = diff.compare(tmp_path / "old.csv", tmp_path / "new.csv", np.array([5, 10, 299]))
    assert difference.read.tolist() == [5, 10]  # 5 unchanged but rejected last time: read again
    assert difference.gone.tolist() == []  # 10 and 299 were rejected last time: nobody to deactivate
    assert difference.old_changed.tolist() == [10, 299]


def test_realignment_in_memory_only_for_small_files(tmp_path, monkeypatch):
    old = lines()
    new = old[:10] + old[400:]
    monkeypatch.setattr(diff, "IN_MEMORY_MAX_BYTES", 1000)
    assert compared(tmp_path, old, new) is None  # too big to hold: merged whole
