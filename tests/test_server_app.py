"""The server as a FastAPI app: its lifespan, the engine pool awaited without threads, and the
request body models built from ``Variant``'s rules (one source)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import anyio.to_thread
import pytest

from bgcut_nb.backends.local import LocalBackend
from bgcut_nb.contract.errors import BadRequestError
from bgcut_nb.contract.variants import RULES, Variant, parse_variants
from bgcut_nb.server import create_app
from bgcut_nb.server.pool import EnginePool, ServerBusyError
from bgcut_nb.server.schemas import OutputVariant, ProcessRequest


def test_the_lifespan_starts_and_stops_the_sweeper_and_the_pool(tmp_path):
    app = create_app(LocalBackend(tmp_path / "engine"), api_keys={"k": 1.0}, storage_dir=tmp_path)
    service = app.state.service
    assert not _sweepers()  # building the app starts nothing

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            assert len(_sweepers()) == 1
            assert service.pool._executor is not None

    asyncio.run(serve())
    assert not _sweepers() and service.pool._executor is None
    service.close()  # the test harness may close it again


def _sweepers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bgcut-sweeper" and t.is_alive()]


def test_admitted_calls_wait_for_the_pool_without_holding_a_thread():
    pool = EnginePool(workers=2, queue=0)
    gate = threading.Event()

    async def one() -> bool:
        with pool.slot() as slot:
            return await slot.run(gate.wait, 30)

    async def main() -> None:
        calls = [asyncio.create_task(one()) for _ in range(2)]
        await asyncio.sleep(0)  # both admitted, their work on the workers, both awaiting it
        assert pool.admitted == 2
        assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
        with pytest.raises(ServerBusyError), pool.slot():
            pass
        gate.set()
        assert await asyncio.gather(*calls) == [True, True]
        assert pool.admitted == 0

    try:
        asyncio.run(main())
    finally:
        gate.set()
        pool.close()


def test_an_abandoned_wait_keeps_the_slot_until_its_work_is_done():
    pool = EnginePool(workers=1, queue=0)
    gate, done = threading.Event(), threading.Event()

    def work() -> None:
        gate.wait(30)
        done.set()

    async def main() -> None:
        async def one() -> None:
            with pool.slot() as slot:
                await slot.run(work)

        call = asyncio.create_task(one())
        await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert pool.admitted == 1 and not done.is_set()  # the work goes on, and holds its slot

    try:
        asyncio.run(main())
        gate.set()
        pool.close()  # waits for the work
        assert done.is_set() and pool.admitted == 0
    finally:
        gate.set()
        pool.close()


def test_the_body_schema_is_variant_s_fields():
    schema = OutputVariant.model_json_schema()
    assert list(schema["properties"]) == [f.name for f in dataclasses.fields(Variant)]
    for item in dataclasses.fields(Variant):
        field = schema["properties"][item.name]
        if item.default is not dataclasses.MISSING:
            assert field["default"] == item.default
        rules = item.metadata.get(RULES, {})
        if "description" in rules:
            assert field["description"] == rules["description"]
    assert schema["required"] == ["variant_name"]


@pytest.mark.parametrize(
    "variant",
    [
        {"variant_name": "a", "fromat": "png"},
        {"variant_name": "a", "format": "jp"},
        {"variant_name": "a", "output_compression": 101},
        {"variant_name": "a", "background_color": "#fff\n"},
        {"variant_name": "  "},
        {"max_resolution": 5},
    ],
)
def test_the_body_is_validated_by_variant_s_own_rules(variant):
    with pytest.raises(BadRequestError) as expected:
        parse_variants([variant])
    with pytest.raises(BadRequestError) as answered:
        ProcessRequest.model_validate({"unique_filename": "x", "output_variants": [variant]})
    assert str(answered.value) == str(expected.value)


def test_a_valid_body_gives_the_contract_s_variants():
    body = ProcessRequest.from_json(
        b'{"unique_filename": "x", "output_variants": '
        b'[{"variant_name": "a", "background_color": "#ABC", "format": null}]}'
    )
    assert body.variants() == [Variant("a", background_color="#aabbcc")]
