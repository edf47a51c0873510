"""Results kept in memory once read: read once, not kept when missing, the oldest forgotten past the limit."""
from neurocarto.store.kept import Kept


def test_values_are_read_once_missing_ones_again_and_the_oldest_forgotten():
    reads = []

    def reader(value):
        return lambda: reads.append(value) or value

    kept = Kept(2)
    assert kept.get("a", reader(1)) == 1 and kept.get("a", reader(9)) == 1 and reads == [1]
    assert kept.get("missing", reader(None)) is None and kept.get("missing", reader(None)) is None
    assert reads == [1, None, None]                       # not found: looked for each time
    kept.get("b", reader(2))
    kept.get("c", reader(3))                              # "a" is the oldest: forgotten
    assert kept.get("a", reader(4)) == 4 and reads == [1, None, None, 2, 3, 4]
