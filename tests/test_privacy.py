"""Public outputs never carry a reporter's name or contact.

Every GET route in the OpenAPI document is called as the public (no key, and with a public
app key); a route whose path parameters the test does not know how to fill fails the test,
so a new public endpoint cannot slip past this check.
"""

import io
import re

from PIL import Image

NAME = "Somchai Secretname"
EMAIL = "secret-reporter@example.org"
PHONE = "+66-81-555-0199"
SECRETS = (NAME, EMAIL, PHONE, "Secretname", "secret-reporter", "555-0199")


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(out, format="PNG")
    return out.getvalue()


def fill(path: str, values: dict[str, str]) -> list[str]:
    names = re.findall(r"{([^}]+)}", path)
    unknown = [n for n in names if n not in values]
    assert not unknown, f"{path}: teach test_privacy how to fill {unknown}"
    filled = path
    for n in names:
        filled = filled.replace("{" + n + "}", values[n])
    return [filled]


def test_no_public_output_contains_reporter_name_or_contact(city_app) -> None:
    client, city, keys = city_app
    created = client.post(
        "/api/reports",
        data={
            "category": "road",
            "description": "ทางเท้าแตก",
            "lat": "8.405",
            "lon": "100.011",
            "reporter_name": NAME,
            "reporter_contact": f"{EMAIL} / {PHONE}",
        },
        files={"photo": ("p.png", png(), "image/png")},
    ).json()
    report_id = str(created["id"])
    photo_id = str(created["photo_ids"][0])
    # A crew's note may quote the reporter; only the public note is for residents.
    moved = client.post(
        f"/api/reports/{report_id}/status",
        json={
            "status": "acknowledged",
            "note": f"called {NAME} on {PHONE}",
            "public_note": "A crew is on its way.",
        },
        headers={"X-API-Key": keys.t1},
    )
    assert moved.status_code == 200, moved.text
    staff = client.get(f"/api/reports/{report_id}", headers={"X-API-Key": keys.planner})
    assert NAME in staff.text, "staff do see the reporter, so the seed really is stored"
    trail = client.get(f"/api/reports/{report_id}/events", headers={"X-API-Key": keys.planner})
    assert PHONE in trail.text, "staff read their own note in the audit trail"
    published = client.get(f"/open311/v2/requests/{report_id}.json")
    assert published.json()[0]["status_notes"] == "A crew is on its way."
    values = {
        "report_id": report_id,
        "photo_id": photo_id,
        "team_id": str(city.teams["T1"]),
        "service_request_id": report_id,
        "service_code": "road",
        "fmt": "json",
        "format": "json",
    }
    # Event streams never end; test_live checks their payloads carry no personal data.
    paths = [
        path
        for path, operations in client.app.openapi()["paths"].items()
        if "get" in operations
        and "text/event-stream"
        not in operations["get"].get("responses", {}).get("200", {}).get("content", {})
    ]
    checked = 0
    for path in paths:
        for url in fill(path, values):
            variants = [url]
            if url == "/api/reports":
                variants += [f"{url}?format=csv", f"{url}?format=gpkg"]
            if url.endswith(".json"):
                variants.append(url[: -len(".json")] + ".xml")
            for variant in variants:
                for headers in ({}, {"X-API-Key": keys.app}):
                    answer = client.get(variant, headers=headers)
                    checked += 1
                    for secret in SECRETS:
                        assert secret.encode() not in answer.content, (variant, secret)
    assert checked >= 10
