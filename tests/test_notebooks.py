"""Every planner notebook runs from top to bottom against a seeded database.

The notebooks run in a kernel on this interpreter (a kernel spec written to a temporary
folder), with ``ISSUEMAP_DATABASE_URL`` pointing at a database cloned from the test
template: the demo city for all of them, and the real Bangkok districts and Traffy tickets
for the overview and hot-spot notebooks. Any cell error fails the test.
"""

from __future__ import annotations

import html
import json
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import text

from geo.city.boundary_writes import import_boundaries
from geo.db.cluster import LocalCluster
from geo.db.engine import make_engine
from geo.demo.city import load_demo_city
from geo.reports.import_formats import TRAFFY_TYPES
from geo.reports.imports import import_reports

pytestmark = pytest.mark.long_running

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
KERNEL = "issuemap-test"


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Jupyter data folder whose only kernel runs this very interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "issuemap", "language": "python"})
    )
    return root


def clone_database(cluster: LocalCluster, template: str) -> DatabaseJanitor:
    name = f"nb_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user="postgres", host=cluster.host, port=5432, dbname=name, template_dbname=template
    )
    janitor.init()
    return janitor


@pytest.fixture(scope="module")
def demo_url(pg_cluster: LocalCluster, template_db: str) -> Iterator[str]:
    """One database holding the demo city, shared by the notebooks (which only read)."""
    janitor = clone_database(pg_cluster, template_db)
    url = pg_cluster.url(janitor.dbname)
    engine = make_engine(url, pool_size=1)
    try:
        load_demo_city(engine)
        yield url
    finally:
        engine.dispose()
        janitor.drop()


def run_notebook(
    name: str, *, url: str, kernel_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> nbformat.NotebookNode:
    """Execute ``notebooks/name`` against ``url``; a failing cell raises ``CellExecutionError``."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    monkeypatch.setenv("ISSUEMAP_DATABASE_URL", url)
    monkeypatch.setenv("MPLBACKEND", "agg")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        book,
        kernel_name=KERNEL,
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return book


def test_notebooks_are_all_here() -> None:
    assert ALL[:4] == [
        "01_city_overview.ipynb",
        "02_hotspots.ipynb",
        "03_sla_performance.ipynb",
        "04_zone_what_if.ipynb",
    ]


def test_committed_notebooks_carry_outputs_of_a_reasonable_size() -> None:
    for name in ALL:
        book = nbformat.read(NOTEBOOKS / name, as_version=4)
        code = [cell for cell in book.cells if cell.cell_type == "code"]
        assert all(cell.get("execution_count") for cell in code), f"{name} is not executed"
        assert not any(
            output.get("output_type") == "error" for cell in code for output in cell.outputs
        ), f"{name} was saved with an error"
        assert (NOTEBOOKS / name).stat().st_size < 2_000_000, f"{name} is too large"


@pytest.fixture(scope="module")
def executed() -> dict[str, nbformat.NotebookNode]:
    """Notebooks already run on the demo city in this module, by name."""
    return {}


@pytest.mark.parametrize("name", ALL)
def test_notebook_runs_on_the_demo_city(
    name: str,
    demo_url: str,
    kernel_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    executed: dict[str, nbformat.NotebookNode],
) -> None:
    engine = make_engine(demo_url, pool_size=1)
    query = text("SELECT count(*), sum(team_id), sum(coalesce(zone_id, 0)) FROM reports")
    try:
        with engine.connect() as conn:
            before = conn.execute(query).one()
        book = run_notebook(name, url=demo_url, kernel_path=kernel_path, monkeypatch=monkeypatch)
        with engine.connect() as conn:
            # Notebooks read; the what-if in particular re-routes in memory only.
            assert conn.execute(query).one() == before
    finally:
        engine.dispose()
    assert any(cell.get("outputs") for cell in book.cells if cell.cell_type == "code")
    executed[name] = book


def heat_layer(page: str) -> list[list[float]]:
    """The cells of the one heat layer on a map page: ``[lat, lon, count]``."""
    found = re.findall(r"L\.heatLayer\(\s*(\[\[.*?\]\])\s*,", page, re.S)
    assert len(found) == 1, "not one heat layer on the page"
    cells: list[list[float]] = json.loads(found[0])
    return cells


def test_overview_notebook_shows_the_city_maps_heat(
    demo_url: str,
    kernel_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    executed: dict[str, nbformat.NotebookNode],
) -> None:
    from fastapi.testclient import TestClient

    from api.app import AppSettings, create_app
    from geo.settings import DatabaseSettings

    name = "01_city_overview.ipynb"
    book = executed.get(name) or run_notebook(
        name, url=demo_url, kernel_path=kernel_path, monkeypatch=monkeypatch
    )
    shown = [
        html.unescape(output["data"]["text/html"])
        for cell in book.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "L.heatLayer" in output.get("data", {}).get("text/html", "")
    ]
    assert len(shown) == 1, "the overview notebook shows one heat map"
    settings = AppSettings(database=DatabaseSettings(database_url=demo_url))
    with TestClient(create_app(settings)) as client:
        page = client.get("/")
    assert page.status_code == 200
    served = heat_layer(page.text)
    # The same cells as the public city map: counted where the public sees each report.
    assert heat_layer(shown[0]) == served
    assert len(served) > 10


@pytest.mark.realdata
def test_overview_and_hotspots_run_on_bangkok(
    shared_data: Path,
    pg_cluster: LocalCluster,
    template_db: str,
    kernel_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    janitor = clone_database(pg_cluster, template_db)
    url = pg_cluster.url(janitor.dbname)
    engine = make_engine(url, pool_size=1)
    try:
        import_boundaries(
            engine,
            shared_data / "bkk-boundaries" / "bangkok_district.zip",
            layer="wards",
            id_field="dcode",
            name_field="dname",
        )
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO categories (code, name_th, name_en) VALUES (:c, :th, :en)"),
                [
                    {"c": code, "th": code, "en": code}
                    for code in sorted({*TRAFFY_TYPES.values(), "other"})
                ],
            )
        summary = import_reports(
            engine,
            shared_data / "bkk-traffy" / "traffy_teamchadchart.csv",
            file_format="traffy",
            default_category="other",
            rejects_path=tmp_path / "rejects.csv",
        )
        assert summary.inserted > 900
        for name in ("01_city_overview.ipynb", "02_hotspots.ipynb"):
            run_notebook(
                name,
                url=url,
                kernel_path=kernel_path,
                monkeypatch=monkeypatch,
                ISSUEMAP_NB_CELL_M="1000",
            )
    finally:
        engine.dispose()
        janitor.drop()
