"""?limit= and ?offset= on every list: capped, and out-of-range values are
a 400 in the error shape (a 500 from the database before)."""

import pytest

LISTS = ["/api/v1/sessions/", "/api/v1/clinic/members/", "/api/v1/clinic/api-keys/"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "query",
    [
        {"limit": "9223372036854775808"},
        {"limit": "1001"},
        {"limit": "0"},
        {"limit": "-5"},
        {"limit": "ten"},
        {"limit": "9" * 5000},
        {"offset": "9223372036854775808"},
        {"offset": "-1"},
        {"offset": "x"},
    ],
)
def test_it_refuses_absurd_paging_values(client_a_admin, path, query):
    response = client_a_admin.get(path, query)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert set(response.json()["error"]["details"]) == set(query)


def test_it_pages_with_sane_values(client_a_admin, session_a):
    response = client_a_admin.get("/api/v1/sessions/", {"limit": "1000", "offset": "0"})
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(session_a.pk)]


def test_it_states_the_bounds_in_the_schema(client_a_admin):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    params = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/sessions/"]["get"]["parameters"]}
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 1000)
