"""The bundled FastAPI shop, end to end through real uvicorn, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.shopflows import Shop, ShopFlows, postgres_database, running_shop

SPEC = "examples.fastapi_shop.app:app"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    folder: Path = tmp_path_factory.mktemp(f"fastapi-shop-{request.param}")
    if request.param == "sqlite":
        with running_shop(SPEC, folder, None) as shop:
            yield shop
    else:
        with postgres_database() as url, running_shop(SPEC, folder, url) as shop:
            yield shop


class TestFastAPIShop(ShopFlows):
    pass
