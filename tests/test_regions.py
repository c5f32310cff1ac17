import pytest

from newsletter.regions import REGION_SLUGS, normalise_region, region_name


def test_twelve_regions() -> None:
    assert len(REGION_SLUGS) == 12 and len(set(REGION_SLUGS)) == 12


@pytest.mark.parametrize(
    ("given", "slug"),
    [
        ("South East", "south-east"), ("south-east", "south-east"), ("SE", "south-east"),
        (" South_East ", "south-east"), ("Yorkshire & the Humber", "yorkshire"), ("NI", "northern-ireland"),
        ("Cymru", "wales"), ("East of England", "east"), ("greater london", "london"), ("Southeast", "south-east"),
    ],
)
def test_aliases(given: str, slug: str) -> None:
    assert normalise_region(given) == slug


@pytest.mark.parametrize("given", ["", "  ", "Mars", None, "north"])
def test_unknown(given) -> None:
    assert normalise_region(given) is None


def test_names() -> None:
    assert region_name("yorkshire") == "Yorkshire and the Humber"
