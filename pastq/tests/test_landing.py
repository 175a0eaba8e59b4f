"""`/` is pastq's landing page (not Django's "install worked" page), with or without DEBUG."""

import pytest


@pytest.mark.parametrize("debug", [False, True], ids=["production", "development"])
def test_the_landing_page_links_the_admin_operations_and_health(client, settings, debug):
    settings.DEBUG = debug

    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    for href in ("/admin/", "/admin/operations/", "/health/"):
        assert f'href="{href}"' in html
    assert "install worked" not in html
