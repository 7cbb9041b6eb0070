"""Reports of what repeats with every record: the first at once, then one a period with a count."""

from its_faust.throttle import Throttle


def test_a_key_is_told_at_once_then_once_a_period_with_how_many_came_since():
    flags = Throttle(60.0)
    assert [flags.hit("blank", t) for t in (0.0, 0.04, 59.9, 60.0, 60.04)] == [1, None, None, 3, None]
    assert flags.hit("frozen", 60.08) == 1  # another key: told at once
    # Scene times made as t0 + n/fps: one a hair before the period's end in floats is due.
    due = Throttle(0.1)
    assert due.hit("k", 0.9) == 1 and due.hit("k", 1.0) == 1  # 1.0 - 0.9 is 0.09999999999999998 in floats


def test_what_was_held_back_is_told_once_its_period_is_over_with_the_last_note():
    quiet = Throttle(10.0)
    assert quiet.hit(("detect", b"cam-1"), 0.0, "a") == 1
    assert [quiet.hit(("detect", b"cam-1"), t, f"r{t}") for t in (1.0, 2.0, 9.9)] == [None, None, None]
    assert quiet.hit(("detect", b"cam-1"), 10.0) == 4  # the next period: told, with the three held back
    assert quiet.hit(("detect", b"cam-1"), 10.5, "late") is None
    assert quiet.overdue(19.9) == []
    assert quiet.overdue(20.0) == [(("detect", b"cam-1"), 1, "late")]  # the producer stopped: told anyway
    assert quiet.overdue(40.0) == []  # and only once
    assert quiet.hit(("detect", b"cam-1"), 40.0) == 1
    assert quiet.hit(("detect", b"cam-1"), 41.0, "at stop") is None
    assert quiet.overdue(42.0) == []
    assert quiet.overdue(42.0, whole_period=False) == [(("detect", b"cam-1"), 1, "at stop")]  # a process stopping
    assert quiet.overdue(42.0, whole_period=False) == []


def test_only_the_keys_heard_last_are_kept_when_keys_come_from_outside():
    invented = Throttle(10.0, keep=3)
    for i in range(100):
        assert invented.hit(f"key-{i}".encode(), 0.0) == 1
    assert len(invented._keys) == 3
    invented.hit(b"key-97", 1.0)  # heard again: kept over key-98
    invented.hit(b"new", 1.0)
    assert list(invented._keys) == [b"key-99", b"key-97", b"new"]
