"""The public API is explicit: __all__ is sorted, complete and importable."""

import userstream


def test_all_is_sorted_and_importable() -> None:
    assert userstream.__all__ == sorted(userstream.__all__)
    for name in userstream.__all__:
        assert getattr(userstream, name) is not None


def test_every_public_exception_derives_from_the_root() -> None:
    for name in userstream.__all__:
        obj = getattr(userstream, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, userstream.UserStreamError), name
