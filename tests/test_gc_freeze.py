import gc

from its_faust.app import freeze_long_lived_objects


def test_what_start_up_built_is_frozen_out_of_full_collections_and_kept():
    long_lived = [[i] for i in range(100_000)]  # what a worker builds at start-up, in miniature
    try:
        frozen = freeze_long_lived_objects()
        assert frozen >= len(long_lived)
        # A collection walks the generations; frozen objects are in none of them, and are not garbage.
        walked = {id(o) for o in gc.get_objects()}
        assert id(long_lived) not in walked and id(long_lived[500]) not in walked
        gc.collect()
        assert long_lived[-1] == [99_999]
        made_later = [[1]]
        assert id(made_later) in {id(o) for o in gc.get_objects()}  # new objects are collected as usual
    finally:
        gc.unfreeze()
