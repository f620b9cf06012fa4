"""userstream.validation: the one reading of a msgspec ValidationError (its reason, the path it points at,
the field it names), and the declared constraints of the config Structs said in the project's words, the
same whether a Struct is built by keyword or converted from a table."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest

from userstream.errors import ConfigurationError
from userstream.validation import (
    Count,
    Failure,
    Seconds,
    Wording,
    check_fields,
    converted,
    default_of,
    failure,
    must,
    translate,
    wording,
)


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    q: int


class _Doc(msgspec.Struct, forbid_unknown_fields=True):
    data: list[_Item]


def _error(document: Any, kind: type = _Doc) -> msgspec.ValidationError:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(document, kind)
    return caught.value


@pytest.mark.parametrize(
    ("document", "parts", "path", "key"),
    [
        (
            {"data": [{"q": "x"}]},
            Failure("Expected `int`, got `str`", "$.data[0].q", None, None),
            "$.data[0].q",
            "data[0].q",
        ),
        (
            {"data": [{}]},
            Failure("Object missing required field `q`", "$.data[0]", "q", None),
            "$.data[0].q",
            "data[0]",
        ),
        (
            {"data": [{"q": 1, "z": 2}]},
            Failure("Object contains unknown field `z`", "$.data[0]", None, "z"),
            "$.data[0]",
            "data[0]",
        ),
        ({}, Failure("Object missing required field `data`", None, "data", None), "$.data", None),
        ([], Failure("Expected `object`, got `array`", None, None, None), "$", None),
    ],
)
def test_failure_reads_the_reason_the_path_and_the_field_named(
    document: Any, parts: Failure, path: str, key: str | None
) -> None:
    error = _error(document)
    assert failure(error) == parts
    assert failure(str(error)) == parts  # the text alone reads the same
    assert (failure(error).path, failure(error).key) == (path, key)


class _Knobs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    timeout: Seconds = 10.0
    size: Count | None = None
    path: Annotated[str, msgspec.Meta(min_length=1, extra=must("be a file's path", quiet=True))] = "x"
    label: str = "plain"  # no declared wording: not checked by check_fields

    def __post_init__(self) -> None:
        check_fields(self)


def test_a_declared_wording_is_read_from_the_type() -> None:
    assert wording(Seconds) == Wording("be a positive number of seconds")
    assert wording(Count | None) == Wording("be a positive integer")
    assert wording(int) is None
    assert Wording("be in 0..9").refuse("port", 10) == "port must be in 0..9, not 10"
    assert Wording("be a file's path", quiet=True).refuse("ca_file", 5) == "ca_file must be a file's path"


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive number of seconds, not 0"),
        ({"timeout": "5"}, "timeout must be a positive number of seconds, not '5'"),
        ({"timeout": True}, "timeout must be a positive number of seconds, not True"),
        ({"size": 0}, "size must be a positive integer, not 0"),
        ({"path": ""}, "path must be a file's path"),
    ],
)
def test_keyword_construction_and_conversion_refuse_alike(keywords: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as by_keyword:
        _Knobs(**keywords)
    assert str(by_keyword.value) == message
    with pytest.raises(ConfigurationError) as by_convert:
        converted(keywords, _Knobs)
    assert str(by_convert.value) == message


def test_what_no_wording_covers_keeps_msgspecs_reason_with_the_key() -> None:
    assert _Knobs(label=5) == _Knobs(label=5)  # type: ignore[arg-type]  # keyword: only declared checks
    with pytest.raises(ConfigurationError) as caught:
        converted({"label": 5}, _Knobs)
    assert str(caught.value) == "label: Expected `str`, got `int`"
    error = _error({"labl": "x"}, _Knobs)
    assert translate(error, _Knobs, {"labl": "x"}) == "unknown key 'labl'"
    assert translate(_error({"size": 0}, _Knobs), _Knobs, {"size": 0}, spell=str.upper) == (
        "SIZE must be a positive integer, not 0"
    )


def test_default_of_reads_a_fields_default() -> None:
    assert default_of(_Knobs, "timeout") == 10.0
    assert default_of(_Knobs, "size") is None
    with pytest.raises(LookupError, match=r"^_Doc\.data has no default$"):
        default_of(_Doc, "data")
    with pytest.raises(LookupError, match="_Knobs has no field 'nope'"):
        default_of(_Knobs, "nope")
