"""Variant fields, defaults, validation (mirroring the API's 400s) and the cost table."""

import pickle

import pytest

from bgcut_nb import BadRequestError, CostTable, Variant, parse_variants
from bgcut_nb.contract.errors import RateLimitError, error_for_status
from bgcut_nb.contract.variants import SPEC_EXAMPLE_VARIANTS

SPEC_EXAMPLE = [
    {"variant_name": "full", "max_resolution": 12000000, "format": "png", "quality": "high"},
    {
        "variant_name": "thumbnail",
        "max_resolution": 250000,
        "format": "webp",
        "quality": "medium",
        "autocrop": True,
    },
    {
        "variant_name": "white_bg",
        "max_resolution": 12000000,
        "format": "jpg",
        "background_color": "#ffffff",
        "output_compression": 85,
    },
]


def test_spec_example_constant_matches_the_spec():
    assert [v.to_dict() for v in SPEC_EXAMPLE_VARIANTS] == [
        v.to_dict() for v in parse_variants(SPEC_EXAMPLE)
    ]


def test_defaults_are_the_specs():
    v = Variant.from_dict({"variant_name": "initial"})
    assert v.to_dict() == {
        "variant_name": "initial",
        "max_resolution": 12_000_000,
        "format": "png",
        "quality": "high",
        "background_color": None,
        "output_compression": 85,
        "autocrop": False,
    }


def test_round_trip_of_spec_example():
    parsed = parse_variants(SPEC_EXAMPLE)
    assert [v.variant_name for v in parsed] == ["full", "thumbnail", "white_bg"]
    for raw, v in zip(SPEC_EXAMPLE, parsed, strict=True):
        assert Variant.from_dict(v.to_dict()) == v
        for key, value in raw.items():
            assert v.to_dict()[key] == value


def test_canonical_key_ignores_name_and_normalises_colour():
    a = Variant("a", background_color="#FFF", format="jpg")
    b = Variant.from_dict({"variant_name": "b", "background_color": "#ffffff", "format": "jpg"})
    assert a.background_color == "#ffffff"
    assert a.cache_key() == b.cache_key()
    assert a.cache_key() != Variant("a", format="jpg").cache_key()


BAD = [
    ({"variant_name": ""}, "variant_name"),
    ({"format": "png"}, "variant_name"),
    ({"variant_name": None}, "variant_name"),
    ({"variant_name": 7}, "variant_name"),
    ({"variant_name": "x", "format": "gif"}, "invalid format"),
    ({"variant_name": "x", "format": "PNG"}, "invalid format"),
    ({"variant_name": "x", "quality": "ultra"}, "invalid quality"),
    ({"variant_name": "x", "background_color": "white"}, "hex"),
    ({"variant_name": "x", "background_color": "#ggg"}, "hex"),
    ({"variant_name": "x", "background_color": "#fffff"}, "hex"),
    ({"variant_name": "x", "output_compression": 0}, "output_compression"),
    ({"variant_name": "x", "output_compression": 101}, "output_compression"),
    ({"variant_name": "x", "output_compression": 50.5}, "output_compression"),
    ({"variant_name": "x", "max_resolution": 0}, "max_resolution"),
    ({"variant_name": "x", "max_resolution": -5}, "max_resolution"),
    ({"variant_name": "x", "max_resolution": True}, "max_resolution"),
    ({"variant_name": "x", "autocrop": "yes"}, "autocrop"),
    ({"variant_name": "x", "colour": "#fff"}, "unknown field"),
]


@pytest.mark.parametrize(("data", "needle"), BAD)
def test_invalid_variants_are_400(data, needle):
    with pytest.raises(BadRequestError) as info:
        Variant.from_dict(data)
    assert info.value.status == 400
    assert needle in str(info.value.detail)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ({"fromat": "png"}, "unknown field(s) ['fromat']; did you mean 'format'?"),
        ({"format": "jpeg"}, "invalid format 'jpeg'. Options: png, jpg, webp; did you mean 'jpg'?"),
        ({"format": "PNG"}, "invalid format 'PNG'. Options: png, jpg, webp; did you mean 'png'?"),
        (
            {"quality": "hihg"},
            "invalid quality 'hihg'. Options: high, medium, low; did you mean 'high'?",
        ),
        (
            {"autocorp": True, "backgroundcolor": "#fff", "zzz": 1},
            "unknown field(s) ['autocorp', 'backgroundcolor', 'zzz']; did you mean 'autocrop' "
            "for 'autocorp', 'background_color' for 'backgroundcolor'?",
        ),
    ],
)
def test_near_misses_say_what_was_meant(data, detail):
    with pytest.raises(BadRequestError) as info:
        Variant.from_dict({"variant_name": "x", **data})
    assert info.value.detail == f"Variant 'x': {detail}"


@pytest.mark.parametrize(
    "data", [{"format": "gif"}, {"format": 1}, {"quality": "ultra"}, {"colour": "#fff"}]
)
def test_no_suggestion_without_a_near_miss(data):
    with pytest.raises(BadRequestError) as info:
        Variant.from_dict({"variant_name": "x", **data})
    assert "did you mean" not in info.value.detail


def test_duplicate_names_and_empty_list_are_400():
    with pytest.raises(BadRequestError, match="Duplicate variant_name: 'a'"):
        parse_variants([{"variant_name": "a"}, {"variant_name": "a", "format": "jpg"}])
    with pytest.raises(BadRequestError, match="at least one"):
        parse_variants([])
    with pytest.raises(BadRequestError, match="list"):
        parse_variants("full")


def test_cost_table_charges_autocrop_extra():
    costs = CostTable()
    assert costs.process_cost(SPEC_EXAMPLE) == 3.5
    assert CostTable(per_variant=2, autocrop=1).process_cost(SPEC_EXAMPLE) == 7


def test_error_for_status_maps_every_documented_status():
    for status in (400, 401, 402, 404, 413, 429):
        err = error_for_status(status, "boom")
        assert err.status == status and err.detail == "boom"
    assert isinstance(error_for_status(429, "slow", retry_after=3), RateLimitError)
    assert error_for_status(429, "slow", retry_after=3).retry_after == 3
    assert error_for_status(500, "x").status == 500
    err = pickle.loads(pickle.dumps(error_for_status(429, "slow", retry_after=2.5)))
    assert isinstance(err, RateLimitError) and err.retry_after == 2.5 and err.status == 429
