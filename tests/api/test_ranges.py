import pytest

from sessions.api.ranges import RangeNotSatisfiable, parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-0", (0, 0)),
        ("bytes=0-", (0, 99)),
        ("bytes=90-200", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("bytes=5-2", None),
        ("bytes=0-1,5-6", None),
        ("items=0-5", None),
        ("bytes=-", None),
    ],
)
def test_it_parses_single_byte_ranges(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-200", "bytes=-0"])
def test_it_refuses_ranges_outside_the_body(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-" + "9" * 5000, (0, 99)),
        ("bytes=-" + "9" * 5000, (0, 99)),
        ("bytes=10-99999999999999999999", (10, 99)),
    ],
)
def test_it_reads_positions_of_any_length(header, expected):
    assert parse_range(header, 100) == expected


def test_it_refuses_a_start_of_thousands_of_digits():
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=" + "9" * 5000 + "-", 100)


def test_it_answers_a_huge_range_over_the_api(client_a, session_a, audio_a):
    response = client_a.get(f"/api/v1/sessions/{session_a.pk}/audio/", HTTP_RANGE="bytes=0-" + "9" * 5000)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 0-{len(audio_a) - 1}/{len(audio_a)}"
